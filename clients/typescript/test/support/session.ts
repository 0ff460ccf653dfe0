/** Helpers for the SDK's end-to-end tests: SDK clients over `ws`, events awaited with a deadline. */

import assert from "node:assert/strict";

import WebSocket from "ws";

import { ConfideClient } from "../../src/client.js";
import type { Room, RoomEvents } from "../../src/room.js";
import type { WebSocketFactory, WebSocketLike } from "../../src/socket.js";
import { MemoryStore, type Store } from "../../src/store.js";
import type { Person, TestServer } from "./server.js";

const WAIT_MS = 20_000;

export function factory(sent?: string[]): WebSocketFactory {
  return (url, protocols) => {
    const ws = new WebSocket(url, protocols);
    if (sent !== undefined) {
      const send = ws.send.bind(ws);
      ws.send = ((data: string) => {
        sent.push(data);
        send(data);
      }) as typeof ws.send;
    }
    return ws as unknown as WebSocketLike;
  };
}

export interface Member {
  person: Person;
  client: ConfideClient;
  store: Store;
  sent: string[];
}

export async function member(server: TestServer, person: Person): Promise<Member> {
  const store = new MemoryStore();
  const sent: string[] = [];
  const client = await ConfideClient.open({ baseUrl: server.baseUrl, store, webSocket: factory(sent), backoff: () => 50 });
  await client.login(person.email, person.password);
  await client.ensureDevice("node");
  return { person, client, store, sent };
}

export function waitFor<K extends keyof RoomEvents>(
  room: Room,
  type: K,
  accept: (event: RoomEvents[K]) => boolean = () => true,
): Promise<RoomEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${type} event within ${WAIT_MS} ms`));
    }, WAIT_MS);
    const off = room.on(type, (event) => {
      if (!accept(event)) return;
      clearTimeout(timer);
      off();
      resolve(event);
    });
  });
}

export async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function texts(room: Room): string[] {
  const seen: string[] = [];
  room.on("message", (event) => {
    if (event.text !== undefined && !event.own) seen.push(`${event.sender.accountId}:${event.text}`);
  });
  return seen;
}

/** Joins a room and waits until this device is in its encrypted group. */
export async function joinReady(m: Member, roomId: string): Promise<Room> {
  const room = await m.client.joinRoom(roomId);
  if (!room.secure) await waitFor(room, "ready");
  return room;
}

/** Makes `guest` a participant: the host invites by email, the guest accepts it and every consent. */
async function invite(host: Person, roomId: string, guest: Member): Promise<void> {
  await host.api.addParticipant(roomId, { email: guest.person.email });
  const [invitation] = await guest.client.invitations();
  assert.ok(invitation, "the invitation reaches the client");
  await guest.client.acceptInvitation(invitation.id);
  for (const document of await guest.client.consentsToAccept()) await guest.client.acceptConsent(document.id);
}

/** A room of `host`'s from a minute ago for an hour, with `guests` as its participants; its id. */
export async function openRoom(
  host: Member,
  guests: readonly Member[],
  room: { title: string; kind: "individual" | "group"; waitingRoom: boolean },
): Promise<string> {
  const created = await host.person.api.createRoom({
    title: room.title,
    kind: room.kind,
    starts_at: soon(-1),
    ends_at: soon(60),
    waiting_room: room.waitingRoom,
  });
  for (const guest of guests) await invite(host.person, created.id, guest);
  return created.id;
}

function soon(minutes: number): string {
  return new Date(Date.now() + minutes * 60_000).toISOString();
}

