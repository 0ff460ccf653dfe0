import type { ConfideClient, Me } from "./contract.js";
import { field, h } from "./dom.js";
import { type Announcer, describe } from "./status.js";

export function loginView(client: ConfideClient, say: Announcer, done: (me: Me) => void): HTMLElement {
  const email = field("email", "Email", { type: "email", autocomplete: "username", required: true });
  const password = field("password", "Password", { type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h("form", { "aria-labelledby": "login-heading" }, email.row, password.row, submit);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit.disabled = true;
    say.clear();
    say.status("Logging in…");
    client
      .login(email.input.value, password.input.value)
      .then(done, (error: unknown) => {
        say.status("");
        say.error(`Could not log in: ${describe(error)}`);
        submit.disabled = false;
        password.input.focus();
      });
  });
  return h("section", { class: "view", "aria-labelledby": "login-heading" }, h("h2", { id: "login-heading" }, "Log in"), form);
}
