/** After logging in: consents to read and accept, invitations, and the rooms one is in. */
import type { ConfideClient } from "./contract.js";
import { button, h } from "./dom.js";
import { type Announcer, describe } from "./status.js";

function when(iso: string | null): string {
  return iso === null ? "unscheduled" : new Date(iso).toLocaleString();
}

export async function homeView(client: ConfideClient, say: Announcer, enter: (roomId: string) => void): Promise<HTMLElement> {
  const [consents, invitations, rooms] = await Promise.all([
    client.consentsToAccept(),
    client.invitations(),
    client.rooms(),
  ]);
  const view = h("section", { class: "view", "aria-labelledby": "home-heading" }, h("h2", { id: "home-heading" }, "Your sessions"));
  const refresh = async (): Promise<void> => {
    const next = await homeView(client, say, enter);
    view.replaceWith(next);
    next.querySelector<HTMLElement>("h2")?.focus();
  };
  const act = (work: () => Promise<unknown>, done: string) => async () => {
    say.clear();
    try {
      await work();
      say.status(done);
      await refresh();
    } catch (error) {
      say.error(describe(error));
    }
  };

  if (consents.length > 0) {
    view.append(
      h(
        "section",
        { "aria-labelledby": "consents-heading" },
        h("h3", { id: "consents-heading" }, "Please read and accept"),
        ...consents.map((doc) =>
          h(
            "article",
            { class: "consent", "aria-labelledby": `consent-${doc.id}` },
            h("h4", { id: `consent-${doc.id}` }, doc.title),
            h("p", { class: "consent-body" }, doc.body),
            button(`Accept ${doc.title}`, act(() => client.acceptConsent(doc.id), `Accepted ${doc.title}.`)),
          ),
        ),
      ),
    );
  }

  view.append(
    h(
      "section",
      { "aria-labelledby": "invitations-heading" },
      h("h3", { id: "invitations-heading" }, "Invitations"),
      invitations.length === 0
        ? h("p", {}, "No invitations.")
        : h(
            "ul",
            {},
            ...invitations.map((inv) =>
              h(
                "li",
                {},
                `${inv.title} with ${inv.host.display_name}, ${when(inv.starts_at)} `,
                button(`Accept invitation to ${inv.title}`, act(() => client.acceptInvitation(inv.id), `You joined ${inv.title}.`)),
              ),
            ),
          ),
    ),
    h(
      "section",
      { "aria-labelledby": "rooms-heading" },
      h("h3", { id: "rooms-heading" }, "Rooms"),
      rooms.length === 0
        ? h("p", {}, "No rooms yet.")
        : h(
            "ul",
            {},
            ...rooms.map((room) =>
              h(
                "li",
                {},
                `${room.title} (${room.status}), ${when(room.starts_at)} `,
                room.status === "ended" ? null : button(`Enter ${room.title}`, () => enter(room.id)),
              ),
            ),
          ),
    ),
  );
  return view;
}
