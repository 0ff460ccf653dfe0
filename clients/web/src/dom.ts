/** A few DOM helpers: elements with attributes and children, no templating. */

export type Attrs = Record<string, string | boolean | undefined>;
export type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.filter((c): c is Node | string => c !== null && c !== undefined && c !== false));
  return element;
}

export function button(label: string, onClick: () => void | Promise<void>, attrs: Attrs = {}): HTMLButtonElement {
  const element = h("button", { type: "button", ...attrs }, label);
  element.addEventListener("click", () => void onClick());
  return element;
}

/** A labelled input: the label wraps nothing, it points at the input by id. */
export function field(id: string, label: string, attrs: Attrs = {}): { row: HTMLElement; input: HTMLInputElement } {
  const input = h("input", { id, name: id, ...attrs });
  return { row: h("p", { class: "field" }, h("label", { for: id }, label), input), input };
}

/** Replace the main area with a view and move focus to its heading, for screen readers and keyboards. */
export function show(main: HTMLElement, view: HTMLElement): void {
  main.replaceChildren(view);
  const heading = view.querySelector<HTMLElement>("h1, h2");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus();
  }
}
