import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Api } from "../../src/api.js";
import { fromBase64Url, toBase64Url } from "../../src/bytes.js";
import { Contacts } from "../../src/contacts.js";
import { Device } from "../../src/device.js";
import { JwksCache, JwsError } from "../../src/jws.js";
import { LogBroken } from "../../src/keylog.js";
import { deviceCredential, keyLogAuthenticationService } from "../../src/mls.js";
import { groups } from "../../src/safety.js";
import { MemoryStore } from "../../src/store.js";
import { type Person, type TestServer, pythonSafetyNumber, startServer } from "../support/server.js";

let server: TestServer;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

interface Pair {
  counselor: Person;
  client: Person;
  counselorDevice: Device;
  clientDevice: Device;
}

/** A counselor and a client who share a room, each with a device. */
async function pair(): Promise<Pair> {
  const counselor = await server.person("counselor");
  const client = await server.person("client");
  const counselorDevice = await Device.register(counselor.api, new MemoryStore(), counselor.id, "office");
  const clientDevice = await Device.register(client.api, new MemoryStore(), client.id, "phone");
  const room = await counselor.api.createRoom({ title: "Weekly", kind: "individual" });
  await counselor.api.addParticipant(room.id, { account_id: client.id });
  const [invitation] = await client.api.invitations();
  await client.api.acceptInvitation(invitation?.id ?? "");
  return { counselor, client, counselorDevice, clientDevice };
}

function contactsOf(person: Person, api: Api = person.api, store = new MemoryStore()): Contacts {
  return new Contacts(api, store, new JwksCache(() => person.api.jwks()));
}

/** The same log-in, through a fetch that rewrites key-log answers with `edit`. */
function tampering(person: Person, edit: (body: Record<string, unknown>) => void): Api {
  const wrapped: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    if (!String(input).includes("/key-log")) return response;
    const body = (await response.json()) as Record<string, unknown>;
    edit(body);
    return new Response(JSON.stringify(body), { status: response.status, headers: response.headers });
  };
  const tokens = person.api.tokens;
  return new Api({ baseUrl: server.baseUrl, fetch: wrapped, ...(tokens === null ? {} : { tokens }) });
}

test("a contact's key log is read, checked against the signed head, and its device keys serve MLS", async () => {
  const { counselor, client, clientDevice } = await pair();
  const contacts = contactsOf(counselor);
  const state = await contacts.log(client.id);
  assert.equal(state.seq, 2);
  assert.deepEqual(state.devices.get(clientDevice.deviceId), clientDevice.signing.publicKey);
  assert.deepEqual(await contacts.deviceKey(client.id, clientDevice.deviceId), clientDevice.signing.publicKey);

  // A device added later is found by refreshing the log once.
  const store = new MemoryStore();
  const link = await Device.linkRequest(store, client.id, "tablet");
  await clientDevice.approveLink(client.api, link.code);
  const tablet = await link.finish(client.api);
  assert.deepEqual(await contacts.deviceKey(client.id, tablet.deviceId), tablet.signing.publicKey);
  assert.equal(await contacts.deviceKey(client.id, "00000000-0000-4000-8000-000000000000"), undefined);

  const service = keyLogAuthenticationService((a, d) => contacts.deviceKey(a, d));
  assert.equal(await service.validateCredential(deviceCredential(client.id, tablet.deviceId), tablet.signing.publicKey), true);
  assert.equal(await service.validateCredential(deviceCredential(client.id, tablet.deviceId), clientDevice.signing.publicKey), false);

  // Someone who shares no room with the client cannot read the log.
  const stranger = await server.person("client");
  await assert.rejects(contactsOf(stranger).log(client.id), /not_found/);
});

test("a rewritten entry is detected and the stored state is kept", async () => {
  const { counselor, client, clientDevice } = await pair();
  const store = new MemoryStore();
  const honest = contactsOf(counselor, counselor.api, store);
  assert.equal((await honest.log(client.id)).seq, 2);

  const link = await Device.linkRequest(new MemoryStore(), client.id, "tablet");
  await clientDevice.approveLink(client.api, link.code);
  const tablet = await link.finish(client.api);

  // The server swaps the new device's signing key for one it holds.
  const forged = tampering(counselor, (body) => {
    const entries = body["entries"] as { signing_key: string | null; public_key: string | null }[];
    const entry = entries[0];
    if (entry) entry.signing_key = toBase64Url(clientDevice.signing.publicKey);
  });
  const fooled = contactsOf(counselor, forged, store);
  await assert.rejects(fooled.log(client.id), (e: unknown) => e instanceof LogBroken && e.seq === 3);
  // The failed check kept the old state: the tablet is still unknown there.
  assert.equal(await fooled.deviceKey(client.id, tablet.deviceId).catch(() => "refused"), "refused");
  const state = await honest.log(client.id);
  assert.equal(state.seq, 3);
  assert.deepEqual(state.devices.get(tablet.deviceId), tablet.signing.publicKey);

  // A fresh reader to whom the whole log is rewritten fails at the first entry.
  const rewritten = tampering(counselor, (body) => {
    const entries = body["entries"] as { identity_key: string | null }[];
    const first = entries[0];
    if (first) first.identity_key = toBase64Url(clientDevice.signing.publicKey);
  });
  await assert.rejects(contactsOf(counselor, rewritten).log(client.id), (e: unknown) => e instanceof LogBroken && e.seq === 1);
});

test("a head whose signature is respelled with a high s, or names another seq, is refused", async () => {
  const { counselor, client } = await pair();
  const order = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
  const highS = tampering(counselor, (body) => {
    const head = body["head"] as { jws: string };
    const [h, p, sig] = head.jws.split(".") as [string, string, string];
    const bytes = fromBase64Url(sig);
    const s = BigInt(`0x${Buffer.from(bytes.subarray(32)).toString("hex")}`);
    const flipped = Buffer.from((order - s).toString(16).padStart(64, "0"), "hex");
    head.jws = `${h}.${p}.${toBase64Url(new Uint8Array([...bytes.subarray(0, 32), ...flipped]))}`;
  });
  await assert.rejects(contactsOf(counselor, highS).log(client.id), (e: unknown) => e instanceof JwsError && e.reason === "high_s");

  const dropped = tampering(counselor, (body) => {
    const entries = body["entries"] as unknown[];
    entries.pop();
    const head = body["head"] as { seq: number; hash: string };
    head.seq -= 1;
  });
  await assert.rejects(contactsOf(counselor, dropped).log(client.id), LogBroken);
});

test("safety numbers are equal on both sides and equal to the Python reference", async () => {
  const { counselor, client } = await pair();
  const fromCounselor = await contactsOf(counselor).safetyNumber(counselor.id, client.id);
  const fromClient = await contactsOf(client).safetyNumber(client.id, counselor.id);
  assert.match(fromCounselor, /^[0-9]{60}$/);
  assert.equal(fromCounselor, fromClient);
  const counselorKey = (await contactsOf(counselor).log(counselor.id)).identityKey as Uint8Array;
  const clientKey = (await contactsOf(counselor).log(client.id)).identityKey as Uint8Array;
  assert.equal(await pythonSafetyNumber(counselorKey, counselor.id, clientKey, client.id), fromCounselor);
  assert.equal(groups(fromCounselor).length, 12);
});

test("a verified contact whose identity key changes is reported, and the mark is dropped", async () => {
  const { counselor, client } = await pair();
  const contacts = contactsOf(counselor);
  assert.equal(await contacts.isVerified(client.id), false);
  await contacts.markVerified(client.id);
  assert.equal(await contacts.isVerified(client.id), true);
  const initial = await contacts.checkChanges();
  assert.ok(initial.some((c) => c.accountId === client.id && c.kind === "device_added"));
  assert.ok(initial.every((c) => !c.identityChanged));
  assert.deepEqual(await contacts.checkChanges(), []);

  const fresh = await Device.resetIdentity(client.api, new MemoryStore(), client.id, "new phone");
  const changes = await contacts.checkChanges();
  const reset = changes.find((c) => c.kind === "identity_reset");
  assert.ok(reset, JSON.stringify(changes));
  assert.equal(reset.accountId, client.id);
  assert.equal(reset.identityChanged, true);
  assert.equal(reset.wasVerified, true);
  assert.ok(changes.some((c) => c.kind === "device_added" && c.deviceId === fresh.deviceId));
  assert.equal(await contacts.isVerified(client.id), false);
  assert.deepEqual(await contacts.deviceKey(client.id, fresh.deviceId), fresh.signing.publicKey);
  assert.deepEqual(await contacts.checkChanges(), []);
});
