import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { fromHex, toBase64Url, toHex } from "../../src/bytes.js";
import { Device, LinkError, NeedsLink } from "../../src/device.js";
import { IDENTITY_RESET, IDENTITY_SET, DEVICE_ADDED } from "../../src/keylog.js";
import { cipherSuite, decodeKeyPackage, keyPackageRef } from "../../src/mls.js";
import { MemoryStore } from "../../src/store.js";
import { FileStore } from "../../src/store-node.js";
import { type Person, type TestServer, startServer } from "../support/server.js";

let server: TestServer;
let dir: string;
before(async () => {
  server = await startServer();
  dir = await mkdtemp(join(tmpdir(), "confide-device-"));
});
after(async () => {
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function kinds(person: Person): Promise<string[]> {
  return (await person.api.keyLog(person.id)).entries.map((e) => e.kind);
}

test("the first device makes the identity key; a later device from the same store is signed by it", async () => {
  const client = await server.person("client");
  const store = new FileStore(join(dir, "first"));
  assert.equal(await Device.load(store, client.id), null);
  const device = await Device.register(client.api, store, client.id, "laptop");
  const [listed] = await client.api.devices();
  assert.equal(listed?.device_id, device.deviceId);
  assert.equal(listed?.signing_key, toBase64Url(device.signing.publicKey));
  assert.equal(listed?.public_key, listed?.signing_key);
  assert.deepEqual(await kinds(client), [IDENTITY_SET, DEVICE_ADDED]);

  const loaded = await Device.load(new FileStore(join(dir, "first")), client.id);
  assert.equal(loaded?.deviceId, device.deviceId);
  assert.deepEqual(loaded?.signing, device.signing);

  const later = await Device.register(client.api, new FileStore(join(dir, "first")), client.id, "laptop again");
  assert.notEqual(later.deviceId, device.deviceId);
  assert.equal((await client.api.devices()).length, 2);
  assert.deepEqual(await kinds(client), [IDENTITY_SET, DEVICE_ADDED, DEVICE_ADDED]);
});

test("a store without the identity key cannot register a second device: NeedsLink, nothing changes", async () => {
  const client = await server.person("client");
  await Device.register(client.api, new MemoryStore(), client.id, "phone");
  await assert.rejects(Device.register(client.api, new MemoryStore(), client.id, "tablet"), NeedsLink);
  assert.equal((await client.api.devices()).length, 1);
  assert.deepEqual(await kinds(client), [IDENTITY_SET, DEVICE_ADDED]);
});

test("a second device is linked by a code that a device holding the identity key approves", async () => {
  const client = await server.person("client");
  const first = await Device.register(client.api, new MemoryStore(), client.id, "phone");
  const newStore = new MemoryStore();
  const { code, finish } = await Device.linkRequest(newStore, client.id, "tablet");
  assert.match(code, /^[A-Za-z0-9_-]+$/);
  await assert.rejects(finish(client.api), (e: unknown) => e instanceof LinkError && e.reason === "not_approved");
  await assert.rejects(first.approveLink(client.api, "bm90IGEgY29kZQ"), (e: unknown) => e instanceof LinkError && e.reason === "bad_code");

  await first.approveLink(client.api, code);
  const linked = await finish(client.api);
  assert.deepEqual(
    (await client.api.devices()).map((d) => d.device_id).sort(),
    [first.deviceId, linked.deviceId].sort(),
  );
  assert.equal((await Device.load(newStore, client.id))?.deviceId, linked.deviceId);
  // The identity key stayed on the first device.
  const third = await Device.linkRequest(new MemoryStore(), client.id, "watch");
  await assert.rejects(linked.approveLink(client.api, third.code), NeedsLink);
});

test("resetting the identity revokes every other device and starts a new identity", async () => {
  const client = await server.person("client");
  const old = await Device.register(client.api, new MemoryStore(), client.id, "lost phone");
  const store = new MemoryStore();
  const fresh = await Device.resetIdentity(client.api, store, client.id, "new phone");
  assert.deepEqual((await client.api.devices()).map((d) => d.device_id), [fresh.deviceId]);
  assert.notEqual(fresh.deviceId, old.deviceId);
  assert.equal((await kinds(client)).at(-2), IDENTITY_RESET);
  // The new store holds the new identity key: it can register further devices.
  await Device.register(client.api, store, client.id, "new laptop");
  assert.equal((await client.api.devices()).length, 2);
});

test("topUp keeps the KeyPackage stock; a claim hands out packages whose private parts the device keeps", async () => {
  await server.publishConsent();
  const counselor = await server.person("counselor");
  const client = await server.person("client");
  const device = await Device.register(client.api, new MemoryStore(), client.id, "phone");

  assert.equal(await device.topUp(client.api, { target: 2 }), 3);
  assert.deepEqual(await client.api.keyPackageStock(device.deviceId), { count: 2, last_resort: true });
  assert.equal(await device.topUp(client.api, { target: 2, low: 2 }), 0);
  assert.equal((await device.packageRefs()).length, 3);

  const room = await counselor.api.createRoom({ title: "Claims", kind: "individual", waiting_room: false });
  await counselor.api.addParticipant(room.id, { email: client.email });
  const [invitation] = await client.api.invitations();
  await client.api.acceptInvitation(invitation?.id ?? "");

  const cs = await cipherSuite();
  const refs: Uint8Array[] = [];
  for (const lastResort of [false, false, true]) {
    const [claimed] = await counselor.api.claimKeyPackages(room.id, [device.deviceId]);
    assert.equal(claimed?.deviceId, device.deviceId);
    assert.equal(claimed?.lastResort, lastResort);
    const keyPackage = decodeKeyPackage(claimed?.keyPackage ?? new Uint8Array());
    assert.deepEqual(keyPackage.leafNode.signaturePublicKey, device.signing.publicKey);
    const ref = await keyPackageRef(keyPackage, cs);
    const kept = await device.packageFor(ref);
    assert.ok(kept, "the device keeps the private part of a claimed package");
    assert.deepEqual(kept.privatePackage.signaturePrivateKey, device.signing.signKey);
    refs.push(ref);
  }
  assert.deepEqual(await client.api.keyPackageStock(device.deviceId), { count: 0, last_resort: true });

  const [used, , lastResort] = refs as [Uint8Array, Uint8Array, Uint8Array];
  await device.forgetPackage(used);
  assert.equal(await device.packageFor(used), undefined);
  await device.forgetPackage(lastResort);
  assert.ok(await device.packageFor(lastResort), "the last-resort package is never forgotten");
  assert.ok((await device.packageRefs()).includes(toHex(lastResort)));
  assert.deepEqual(fromHex(toHex(lastResort)), lastResort);

  // Below the low mark, topUp refills to the target; the last-resort one is in place already.
  assert.equal(await device.topUp(client.api, { target: 4, low: 1 }), 4);
  assert.deepEqual(await client.api.keyPackageStock(device.deviceId), { count: 4, last_resort: true });
});
