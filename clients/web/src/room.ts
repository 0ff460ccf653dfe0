/**
 * One session: the waiting room, the participants (with "Admit" for the host),
 * the encrypted chat, safety numbers and the one-to-one video call.
 */
import { VideoCall } from "./call.js";
import type { ConfideClient, Participant, Room } from "./contract.js";
import { button, field, h } from "./dom.js";
import { safetyGroups } from "./safety.js";
import { type Announcer, describe } from "./status.js";

const CALL_STATES: Record<string, string> = {
  idle: "No call.",
  ringing: "Incoming call.",
  new: "Calling…",
  connecting: "Connecting the call…",
  connected: "The call is connected.",
  disconnected: "The call lost its connection; trying again…",
  failed: "The call failed.",
  closed: "The call ended.",
};

export interface RoomScreen {
  element: HTMLElement;
  close(): void;
}

export function roomView(client: ConfideClient, room: Room, title: string, say: Announcer, leave: () => void): RoomScreen {
  const self = room.self.accountId;
  /** Messages go out only once admitted and the group's keys are agreed (`secure`). */
  const canSend = () => room.state === "admitted" && room.secure;
  const isHost = () => room.participants().some((p) => p.accountId === self && p.role === "host");
  const fail = (error: unknown) => say.error(describe(error));
  const off: (() => void)[] = [];

  const state = h("p", { class: "room-state", "data-testid": "room-state" });
  const waiting = h("p", { class: "waiting", hidden: true }, "Waiting for the counselor to let you in.");
  const keyWarning = h("p", { class: "warning", role: "alert", hidden: true, "data-testid": "key-warning" });

  // Participants
  const people = h("ul", { class: "people" });
  const renderPeople = () => {
    const host = isHost();
    people.replaceChildren(
      ...room.participants().map((p) =>
        h(
          "li",
          {},
          `${p.displayName} (${p.role}, ${p.online ? "online" : "offline"}${p.admitted ? "" : ", waiting"}) `,
          host && !p.admitted
            ? button(`Admit ${p.displayName}`, () => client.admit(room.id, p.accountId).then(() => say.status(`Admitted ${p.displayName}.`), fail))
            : null,
        ),
      ),
    );
  };

  // Chat
  const messages = h("ol", { class: "messages", "aria-live": "polite", "aria-label": "Messages", "data-testid": "messages" });
  const message = field("message", "Message", { type: "text", autocomplete: "off", maxlength: "4000" });
  const send = h("button", { type: "submit", disabled: true }, "Send");
  const chat = h("form", { class: "chat", "aria-label": "Send a message" }, message.row, send);
  chat.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = message.input.value.trim();
    if (text === "") return;
    send.disabled = true;
    room
      .send(text)
      .then(() => {
        message.input.value = "";
      }, fail)
      .finally(() => {
        send.disabled = !canSend();
        message.input.focus();
      });
  });

  // Safety numbers
  const safety = h("ul", { class: "safety" });
  const renderSafety = async () => {
    const others = room.participants().filter((p) => p.accountId !== self);
    const items = await Promise.all(others.map(async (p) => safetyItem(p)));
    safety.replaceChildren(...items);
  };
  const safetyItem = async (p: Participant): Promise<HTMLElement> => {
    const [digits, verified] = await Promise.all([client.safetyNumber(p.accountId), client.isVerified(p.accountId)]);
    const badge = h("span", { class: "badge", "data-testid": `verified-${p.accountId}`, hidden: !verified }, "Verified");
    const mark = button(`Mark ${p.displayName} verified`, async () => {
      try {
        await client.markVerified(p.accountId);
        badge.hidden = false;
        mark.hidden = true;
        say.status(`${p.displayName} is verified.`);
      } catch (error) {
        fail(error);
      }
    });
    mark.hidden = verified;
    return h(
      "li",
      { "data-account": p.accountId },
      h("span", { class: "who" }, p.displayName),
      " ",
      h("code", { class: "digits", "data-testid": "safety-number", "aria-label": `Safety number with ${p.displayName}` }, safetyGroups(digits).join(" ")),
      " ",
      badge,
      mark,
    );
  };

  // Video call
  const localVideo = h("video", { "data-testid": "local-video", autoplay: true, muted: true, playsinline: true, "aria-label": "Your camera" });
  const remoteVideo = h("video", { "data-testid": "remote-video", autoplay: true, playsinline: true, "aria-label": "The other person's camera" });
  localVideo.muted = true;
  const callState = h("p", { class: "call-state" }, "No call.");
  const startCall = button("Start video call", () => {
    const peer = room.participants().find((p) => p.accountId !== self && p.online && p.devices.length > 0);
    const device = peer?.devices[0];
    if (device === undefined) return say.error("Nobody else is here to call.");
    return call.start(device).catch(fail);
  });
  const acceptCall = button("Accept", () => call.accept().catch(fail), { hidden: true });
  const hangUp = button("Hang up", () => call.hangUp().catch(fail), { hidden: true });
  const callSection = h(
    "section",
    { class: "call", "aria-labelledby": "call-heading", "data-testid": "call", "data-peer-state": "idle" },
    h("h3", { id: "call-heading" }, "Video"),
    callState,
    h("div", { class: "controls" }, startCall, acceptCall, hangUp),
    h("div", { class: "videos" }, localVideo, remoteVideo),
  );
  const call = new VideoCall(room, () => client.iceServers(room.id), {
    state(s) {
      callSection.dataset["peerState"] = s;
      const live = s !== "idle" && s !== "closed";
      startCall.hidden = live;
      hangUp.hidden = !live;
      if (s !== "ringing") acceptCall.hidden = true;
      callState.textContent = CALL_STATES[s] ?? `Call ${s}.`;
      if (s === "connected") say.status("The video call is connected.");
    },
    incoming(device) {
      const who = room.participants().find((p) => p.devices.includes(device));
      acceptCall.hidden = false;
      say.status(`${who?.displayName ?? "Someone"} is calling.`);
    },
    local(stream) {
      localVideo.srcObject = stream;
    },
    remote(stream) {
      remoteVideo.srcObject = stream;
    },
    problem: (text) => say.error(text),
  });

  const render = () => {
    waiting.hidden = room.state !== "waiting";
    send.disabled = !canSend();
    startCall.disabled = room.state !== "admitted";
    state.textContent = {
      connecting: "Connecting…",
      waiting: "In the waiting room.",
      admitted: room.secure ? "In the session. Messages are end-to-end encrypted." : "In the session. Agreeing on encryption keys…",
      ended: "The session has ended.",
    }[room.state];
    element.dataset["roomState"] = room.state;
    renderPeople();
    void renderSafety().catch(fail);
  };

  off.push(
    room.on("waiting", () => {
      render();
      say.status("You are in the waiting room.");
    }),
    room.on("admitted", () => {
      render();
      say.status("You are in the session.");
    }),
    room.on("ready", () => render()),
    room.on("participants", () => render()),
    room.on("presence", () => render()),
    room.on("message", (event) => {
      const text = event.text ?? (event.bytes ? `(${event.bytes.length} bytes)` : "");
      messages.append(
        h("li", { class: event.own ? "own" : "theirs", "data-seq": String(event.seq) }, h("strong", {}, event.own ? "You" : event.sender.displayName), ": ", text),
      );
    }),
    room.on("signal", (event) => void call.receive(event.from.deviceId, event.bytes).catch(fail)),
    room.on("keyChanged", (event) => {
      const who = room.participants().find((p) => p.accountId === event.accountId)?.displayName ?? "Someone";
      keyWarning.textContent = `${who}'s security keys changed${event.wasVerified ? " since you verified them" : ""}. Compare your safety number again before sharing anything private.`;
      keyWarning.hidden = false;
      void renderSafety().catch(fail);
    }),
    room.on("ending", (event) => say.status(`The session ends at ${new Date(event.endsAt).toLocaleTimeString()}.`)),
    room.on("ended", () => {
      void call.hangUp(false);
      render();
      say.status("The session has ended.");
    }),
    room.on("removed", () => {
      void call.hangUp(false);
      say.error("You were removed from this session.");
      leave();
    }),
    room.on("error", (event) => say.error(`${event.detail} (${event.code})`)),
  );

  const element = h(
    "section",
    { class: "view room", "aria-labelledby": "room-heading" },
    h("h2", { id: "room-heading" }, title),
    state,
    waiting,
    keyWarning,
    button("Leave room", leave),
    h("section", { "aria-labelledby": "people-heading" }, h("h3", { id: "people-heading" }, "Participants"), people),
    h("section", { "aria-labelledby": "chat-heading" }, h("h3", { id: "chat-heading" }, "Messages"), messages, chat),
    h(
      "section",
      { "aria-labelledby": "safety-heading" },
      h("h3", { id: "safety-heading" }, "Safety numbers"),
      h("p", {}, "Compare these numbers with the other person, by voice or in person. If they match, mark them verified."),
      safety,
    ),
    callSection,
  );
  render();

  return {
    element,
    close() {
      for (const stop of off) stop();
      void call.hangUp().finally(() => room.close());
    },
  };
}
