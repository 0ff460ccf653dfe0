/** Confide's reference web client: boot, session restore and moving between screens. */
import type { ConfideClient as Client, Me } from "./contract.js";
import { button, h, show } from "./dom.js";
import { homeView } from "./home.js";
import { loginView } from "./login.js";
import { type RoomScreen, roomView } from "./room.js";
import { ConfideClient } from "./sdk.js";
import { announcer, describe } from "./status.js";

const OPEN_ROOM = "confide.openRoom";

function element(id: string): HTMLElement {
  const found = document.getElementById(id);
  if (!found) throw new Error(`index.html has no #${id}`);
  return found;
}

async function boot(): Promise<void> {
  const main = element("main");
  const account = element("account");
  const say = announcer(element("status"), element("alert"));
  const client: Client = await ConfideClient.open({ baseUrl: location.origin });
  let screen: RoomScreen | null = null;

  const signedIn = async (me: Me, restoring: boolean) => {
    try {
      await client.ensureDevice(navigator.userAgent.slice(0, 100));
    } catch (error) {
      say.error(`This browser could not be set up for encryption: ${describe(error)}`);
      return;
    }
    account.replaceChildren(
      h("span", {}, `Signed in as ${me.display_name}`),
      " ",
      button("Log out", async () => {
        leaveRoom();
        await client.logout().catch(() => undefined);
        account.replaceChildren();
        say.status("Logged out.");
        showLogin();
      }),
    );
    const open = restoring ? sessionStorage.getItem(OPEN_ROOM) : null;
    if (open !== null) await enterRoom(open);
    else await showHome();
  };

  const showLogin = () => show(main, loginView(client, say, (me) => void signedIn(me, false)));

  const showHome = async () => {
    try {
      show(main, await homeView(client, say, (id) => void enterRoom(id)));
    } catch (error) {
      say.error(describe(error));
    }
  };

  const leaveRoom = () => {
    screen?.close();
    screen = null;
    sessionStorage.removeItem(OPEN_ROOM);
  };

  const enterRoom = async (roomId: string) => {
    say.clear();
    say.status("Joining the session…");
    try {
      const title = (await client.rooms()).find((r) => r.id === roomId)?.title ?? "Session";
      const room = await client.joinRoom(roomId);
      sessionStorage.setItem(OPEN_ROOM, roomId);
      room.on("ended", () => sessionStorage.removeItem(OPEN_ROOM));
      screen = roomView(client, room, title, say, () => {
        leaveRoom();
        void showHome();
      });
      show(main, screen.element);
      // The room's first events came while joining, before the screen listened.
      if (room.state === "waiting") say.status("You are in the waiting room.");
      else if (room.state === "admitted") say.status("You are in the session.");
      else say.status("");
    } catch (error) {
      sessionStorage.removeItem(OPEN_ROOM);
      say.error(`Could not join: ${describe(error)}`);
      await showHome();
    }
  };

  window.addEventListener("pagehide", () => screen?.close());
  const me = await client.resume().catch(() => null);
  if (me) await signedIn(me, true);
  else showLogin();
}

boot().catch((error: unknown) => {
  const alert = document.getElementById("alert");
  if (alert) {
    alert.hidden = false;
    alert.textContent = `Confide could not start: ${describe(error)}`;
  }
});
