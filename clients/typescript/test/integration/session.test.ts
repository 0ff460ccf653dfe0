/**
 * End to end against a real `confide serve`: a counselor and two clients,
 * each an SDK client with its own store, run a group session over the room
 * socket with MLS.
 */

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import WebSocket from "ws";

import { ConfideClient } from "../../src/client.js";
import { fromBase64Url } from "../../src/bytes.js";
import { RoomGroup } from "../../src/group.js";
import { keyLogAuthenticationService } from "../../src/mls.js";
import type { Room } from "../../src/room.js";
import type { WebSocketLike } from "../../src/socket.js";
import { MemoryStore, sealedStore } from "../../src/store.js";
import { type TestServer, startServer } from "../support/server.js";
import { type Member, joinReady, member, openRoom, texts, until, waitFor } from "../support/session.js";

let server: TestServer;
before(async () => {
  server = await startServer();
  await server.publishConsent();
});
after(async () => {
  await server?.stop();
});

test("a group session: admission, messages all ways, a removal the removed device cannot read past, a rejoin after lost state", async () => {
  const counselor = await member(server, await server.person("counselor"));
  const alice = await member(server, await server.person("client"));
  const bob = await member(server, await server.person("client"));
  const roomId = await openRoom(counselor, [alice, bob], { title: "Tuesday group", kind: "group", waitingRoom: true });

  const host = await joinReady(counselor, roomId);
  const heardByHost = texts(host);

  const aliceRoom = await alice.client.joinRoom(roomId);
  const bobRoom = await bob.client.joinRoom(roomId);
  assert.equal(aliceRoom.state, "waiting");
  assert.equal(bobRoom.state, "waiting");
  assert.equal(aliceRoom.secure, false);

  const aliceReady = waitFor(aliceRoom, "ready");
  const bobReady = waitFor(bobRoom, "ready");
  await counselor.client.admit(roomId, alice.person.id);
  await counselor.client.admit(roomId, bob.person.id);
  await Promise.all([aliceReady, bobReady]);
  await until(() => aliceRoom.state === "admitted" && bobRoom.state === "admitted", "both to be told they are admitted");
  const heardByAlice = texts(aliceRoom);
  const heardByBob = texts(bobRoom);

  await host.send("welcome, both of you");
  const ownAtAlice = waitFor(aliceRoom, "message", (e) => e.own);
  await aliceRoom.send("hello from alice");
  const own = await ownAtAlice;
  assert.equal(own.text, "hello from alice");
  assert.equal(own.sender.accountId, alice.person.id);
  await bobRoom.send("hello from bob");
  const c = counselor.person.id;
  const a = alice.person.id;
  const b = bob.person.id;
  await until(() => heardByAlice.length === 2 && heardByBob.length === 2 && heardByHost.length === 2, "every message");
  assert.deepEqual(new Set(heardByAlice), new Set([`${c}:welcome, both of you`, `${b}:hello from bob`]));
  assert.deepEqual(new Set(heardByBob), new Set([`${c}:welcome, both of you`, `${a}:hello from alice`]));
  assert.deepEqual(new Set(heardByHost), new Set([`${a}:hello from alice`, `${b}:hello from bob`]));

  // Bytes arrive as bytes; a signal goes to one device only.
  const bytesAtHost = waitFor(host, "message", (e) => e.bytes !== undefined);
  await aliceRoom.send(new Uint8Array([0, 1, 2, 255]));
  assert.deepEqual((await bytesAtHost).bytes, new Uint8Array([0, 1, 2, 255]));
  const signals: Uint8Array[] = [];
  bobRoom.on("signal", (e) => signals.push(e.bytes));
  const signalAtHost = waitFor(host, "signal");
  await aliceRoom.sendTo(counselor.client.deviceId ?? "", new TextEncoder().encode('{"sdp":"offer"}'));
  const signal = await signalAtHost;
  assert.equal(new TextDecoder().decode(signal.bytes), '{"sdp":"offer"}');
  assert.deepEqual(signal.from, { accountId: a, deviceId: alice.client.deviceId });

  // Remove Bob: the host's SDK commits the Remove; what follows is beyond Bob's keys.
  const bobRemoved = waitFor(bobRoom, "removed");
  const bobDevice = bob.client.deviceId ?? "";
  await counselor.person.api.removeParticipant(roomId, b);
  await bobRemoved;
  await until(() => !host.groupDevices().includes(bobDevice), "the host to remove Bob's device from the group");
  await until(() => !aliceRoom.groupDevices().includes(bobDevice), "Alice to apply the removal");
  assert.equal(signals.length, 0, "a signal for the host never reached Bob");

  const sentBefore = alice.sent.length;
  const heard = waitFor(host, "message", (e) => e.text === "after bob left");
  await aliceRoom.send("after bob left");
  await heard;
  const frame = alice.sent
    .slice(sentBefore)
    .map((s) => JSON.parse(s) as { type: string; ciphertext?: string })
    .find((f) => f.type === "send" && f.ciphertext !== undefined);
  assert.ok(frame?.ciphertext);
  const bobState = await (await sealedStore(bob.store)).get(`room/${b}/${bobDevice}/${roomId}`);
  assert.ok(bobState, "Bob's device kept its last group state");
  const bobGroup = await RoomGroup.decode(
    bobState,
    keyLogAuthenticationService(async () => undefined),
  );
  const result = await bobGroup.process({
    seq: Number.MAX_SAFE_INTEGER,
    sender: { account_id: a, device_id: alice.client.deviceId ?? "" },
    ciphertext: fromBase64Url(frame.ciphertext),
  });
  assert.notEqual(result.kind, "application", "Bob's old state cannot read a message sent after his removal");

  // Alice loses her group state (not her device keys) and rejoins by an external commit.
  aliceRoom.close();
  const sealed = await sealedStore(alice.store);
  const key = `room/${a}/${alice.client.deviceId ?? ""}/${roomId}`;
  assert.ok(await sealed.get(key));
  await sealed.delete(key);
  const aliceAgain = await joinReady(alice, roomId);
  const heardAgain = texts(aliceAgain);
  const backAtHost = waitFor(host, "message", (e) => e.text === "alice is back");
  await aliceAgain.send("alice is back");
  await backAtHost;
  await host.send("welcome back");
  await until(() => heardAgain.includes(`${c}:welcome back`), "Alice to read the host after her rejoin");

  host.close();
  aliceAgain.close();
  bobRoom.close();
});

test("a dropped socket reconnects by itself and resumes: nothing sent meanwhile is lost", async () => {
  const counselor = await member(server, await server.person("counselor"));
  const sockets: WebSocket[] = [];
  const store = new MemoryStore();
  const person = await server.person("client");
  const client = await ConfideClient.open({
    baseUrl: server.baseUrl,
    store,
    webSocket: (url, protocols) => {
      const ws = new WebSocket(url, protocols);
      sockets.push(ws);
      return ws as unknown as WebSocketLike;
    },
    backoff: () => 300,
  });
  await client.login(person.email, person.password);
  await client.ensureDevice("node");
  const guest: Member = { person, client, store, sent: [] };
  const roomId = await openRoom(counselor, [guest], { title: "One to one", kind: "individual", waitingRoom: false });
  const host = await joinReady(counselor, roomId);
  const room = await joinReady(guest, roomId);
  const heard = texts(room);
  await host.send("before the drop");
  await until(() => heard.length === 1, "the first message");

  const socket = sockets.at(-1);
  assert.ok(socket);
  socket.terminate();
  await host.send("while you were away");
  await until(() => sockets.length === 2, "a new socket");
  await until(() => heard.length === 2, "the message sent during the drop");
  await host.send("after the drop");
  await until(() => heard.length === 3, "the message after the drop");
  const c = counselor.person.id;
  assert.deepEqual(heard, [`${c}:before the drop`, `${c}:while you were away`, `${c}:after the drop`]);
  host.close();
  room.close();
});

/** Client in a room with the host, both in the group; the client withdraws a consent, accepts it again and returns. */
async function withdrawAndReturn(waitingRoom: boolean): Promise<void> {
  const counselor = await member(server, await server.person("counselor"));
  const client = await member(server, await server.person("client"));
  const roomId = await openRoom(counselor, [client], { title: "One to one", kind: "individual", waitingRoom });
  const host = await joinReady(counselor, roomId);
  let first: Room;
  if (waitingRoom) {
    first = await client.client.joinRoom(roomId);
    const firstReady = waitFor(first, "ready");
    await counselor.client.admit(roomId, client.person.id);
    await firstReady;
  } else {
    first = await joinReady(client, roomId);
  }
  const clientDevice = client.client.deviceId ?? "";
  await until(() => host.groupDevices().includes(clientDevice), "the client's device in the host's group");

  // The client withdraws its telehealth consent: its room closes, the host hears `waiting`.
  const document = (await client.client.api.consentDocuments()).find((d) => d.kind === "telehealth");
  assert.ok(document);
  const removed = waitFor(first, "removed");
  const waiting = waitFor(host, "presence", (e) => e.event === "waiting" && e.accountId === client.person.id);
  const withdrawn = await fetch(`${server.baseUrl}/v1/me/consents/${document.id}`, {
    method: "DELETE",
    headers: { authorization: `Bearer ${client.client.api.tokens?.accessToken ?? ""}` },
  });
  assert.equal(withdrawn.status, 204);
  await removed;
  await waiting;
  await until(() => !host.groupDevices().includes(clientDevice), "the host to remove the client's device from the group");
  assert.equal(host.participants().find((p) => p.accountId === client.person.id)?.admitted, false);
  await host.send("while you were out");

  // Accepted again: back through the waiting room (or straight in, without one), back in the group.
  await client.client.acceptConsent(document.id);
  const again = await client.client.joinRoom(roomId);
  assert.equal(again.state, waitingRoom ? "waiting" : "admitted");
  const heard = texts(again);
  if (waitingRoom) {
    const ready = waitFor(again, "ready");
    await counselor.client.admit(roomId, client.person.id);
    await ready;
  }
  await until(() => host.groupDevices().includes(clientDevice), "the host to add the client's device again");
  await until(() => again.groupDevices().includes(host.self.deviceId), "the client to be in the host's epoch");
  await host.send("welcome back");
  const c = counselor.person.id;
  await until(() => heard.includes(`${c}:welcome back`), "the client to read the host after its return");
  assert.ok(!heard.includes(`${c}:while you were out`), "nothing said while it was out");
  host.close();
  again.close();
}

test("a consent withdrawn sends the client back to the waiting room: the host removes its device, and adds it again once admitted", async () => {
  await withdrawAndReturn(true);
});

test("a consent withdrawn in a room without a waiting room: the device is removed, and added again when the client rejoins", async () => {
  await withdrawAndReturn(false);
});
