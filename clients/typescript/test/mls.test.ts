import assert from "node:assert/strict";
import { test } from "node:test";

import { exportP256, generateSigningKeyPair, signDevice } from "../src/identity.js";
import { DEVICE_ADDED, IDENTITY_SET, type LogState, emptyState, extend, makeEntry } from "../src/keylog.js";
import {
  MlsRefused,
  type SigningKeyPair,
  addMembers,
  cipherSuite,
  clientConfig,
  credentialDevice,
  decodeKeyPackage,
  decrypt,
  deviceCredential,
  deviceKeyPackage,
  encodeKeyPackage,
  encrypt,
  generateDeviceSigningKey,
  joinFromWelcome,
  keyLogAuthenticationService,
  keyPackageRef,
  newGroup,
} from "../src/mls.js";

const ALICE = "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11";
const BOB = "5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10";
const ALICE_DEVICE = "3f9d1c2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f";
const BOB_DEVICE = "a1b2c3d4-e5f6-4789-8abc-def012345678";

/** A verified key log of one account with one device whose signing key is `device`. */
async function logWith(accountId: string, deviceId: string, device: SigningKeyPair): Promise<LogState> {
  const identity = await generateSigningKeyPair();
  const identityKey = await exportP256(identity.publicKey);
  const first = await makeEntry(accountId, 1, IDENTITY_SET, new Uint8Array(32), { identityKey });
  const publicKey = new Uint8Array(32).fill(1);
  const signature = await signDevice(identity.privateKey, accountId, deviceId, device.publicKey, publicKey);
  const second = await makeEntry(accountId, 2, DEVICE_ADDED, first.hash, {
    deviceId,
    signingKey: device.publicKey,
    publicKey,
    signature,
  });
  return extend(emptyState(accountId), [first, second]);
}

/** The device keys of verified logs, as `keyLogAuthenticationService` asks for them. */
function keysOf(lookup: (accountId: string) => LogState | undefined) {
  return async (accountId: string, deviceId: string): Promise<Uint8Array | undefined> => {
    const log = lookup(accountId);
    return log?.accountId === accountId ? log.devices.get(deviceId) : undefined;
  };
}

test("device credentials name an account and a device", () => {
  assert.deepEqual(credentialDevice(deviceCredential(ALICE, ALICE_DEVICE)), { accountId: ALICE, deviceId: ALICE_DEVICE });
  assert.equal(credentialDevice({ credentialType: "basic", identity: new TextEncoder().encode("alice") }), null);
});

test("two devices make a group, add by KeyPackage and Welcome, and exchange a message", async () => {
  const cs = await cipherSuite();
  const aliceKey = generateDeviceSigningKey();
  const bobKey = generateDeviceSigningKey();
  assert.equal(aliceKey.publicKey.length, 65);
  const logs = new Map([
    [ALICE, await logWith(ALICE, ALICE_DEVICE, aliceKey)],
    [BOB, await logWith(BOB, BOB_DEVICE, bobKey)],
  ]);
  const config = clientConfig(keyLogAuthenticationService(keysOf((id) => logs.get(id))));

  const alicePackage = await deviceKeyPackage(ALICE, ALICE_DEVICE, aliceKey, cs);
  const bobPackage = await deviceKeyPackage(BOB, BOB_DEVICE, bobKey, cs);
  let alice = await newGroup(new TextEncoder().encode("room"), alicePackage, config, cs);
  const added = await addMembers(alice, [bobPackage.publicPackage], cs);
  alice = added.state;
  let bob = await joinFromWelcome(added.welcome, bobPackage, config, cs);

  const sent = await encrypt(alice, new TextEncoder().encode("hello, Bob"), cs);
  alice = sent.state;
  const received = await decrypt(bob, sent.message, cs);
  bob = received.state;
  assert.equal(new TextDecoder().decode(received.plaintext), "hello, Bob");

  const reply = await encrypt(bob, new TextEncoder().encode("hello, Alice"), cs);
  const back = await decrypt(alice, reply.message, cs);
  assert.equal(new TextDecoder().decode(back.plaintext), "hello, Alice");
});

test("a member whose signature key is not in the verified key log is refused", async () => {
  const cs = await cipherSuite();
  const aliceKey = generateDeviceSigningKey();
  const bobKey = generateDeviceSigningKey();
  const aliceLog = await logWith(ALICE, ALICE_DEVICE, aliceKey);
  // Bob's log vouches for another key than the one his KeyPackage carries.
  const bobLog = await logWith(BOB, BOB_DEVICE, generateDeviceSigningKey());
  const logs = new Map([
    [ALICE, aliceLog],
    [BOB, bobLog],
  ]);
  const service = keyLogAuthenticationService(keysOf((id) => logs.get(id)));
  assert.equal(await service.validateCredential(deviceCredential(ALICE, ALICE_DEVICE), aliceKey.publicKey), true);
  assert.equal(await service.validateCredential(deviceCredential(BOB, BOB_DEVICE), bobKey.publicKey), false);
  assert.equal(await service.validateCredential(deviceCredential(ALICE, BOB_DEVICE), aliceKey.publicKey), false);

  const bobPackage = await deviceKeyPackage(BOB, BOB_DEVICE, bobKey, cs);
  const alicePackage = await deviceKeyPackage(ALICE, ALICE_DEVICE, aliceKey, cs);
  const alice = await newGroup(new TextEncoder().encode("room"), alicePackage, clientConfig(service), cs);
  // The committer checks the credential of each KeyPackage it adds.
  await assert.rejects(addMembers(alice, [bobPackage.publicPackage], cs), /credential/);

  // A device that joins checks the tree: Alice's leaf is refused by a reader without her log.
  const goodBobLog = await logWith(BOB, BOB_DEVICE, bobKey);
  const both = clientConfig(keyLogAuthenticationService(keysOf((id) => (id === ALICE ? aliceLog : goodBobLog))));
  const group = await newGroup(new TextEncoder().encode("room 2"), alicePackage, both, cs);
  const added = await addMembers(group, [bobPackage.publicPackage], cs);
  const noAlice = clientConfig(keyLogAuthenticationService(keysOf((id) => (id === BOB ? goodBobLog : undefined))));
  await assert.rejects(joinFromWelcome(added.welcome, bobPackage, noAlice, cs), /credential/);
  // With her log, the same Welcome is accepted.
  await joinFromWelcome(added.welcome, bobPackage, both, cs);
});

test("a lookup that fails refuses the credential", async () => {
  const key = generateDeviceSigningKey();
  const service = keyLogAuthenticationService(async () => {
    throw new Error("the key log could not be checked");
  });
  assert.equal(await service.validateCredential(deviceCredential(ALICE, ALICE_DEVICE), key.publicKey), false);
});

test("a KeyPackage travels as an MLSMessage and keeps its ref", async () => {
  const cs = await cipherSuite();
  const pkg = await deviceKeyPackage(ALICE, ALICE_DEVICE, generateDeviceSigningKey(), cs);
  const bytes = encodeKeyPackage(pkg.publicPackage);
  assert.deepEqual([bytes[0], bytes[1], bytes[2], bytes[3]], [0, 1, 0, 5]); // mls10, wire_format 5
  const decoded = decodeKeyPackage(bytes);
  const ref = await keyPackageRef(pkg.publicPackage, cs);
  assert.equal(ref.length, 32);
  assert.deepEqual(await keyPackageRef(decoded, cs), ref);
  assert.throws(() => decodeKeyPackage(bytes.subarray(0, bytes.length - 1)), MlsRefused);
  assert.throws(() => decodeKeyPackage(new Uint8Array([...bytes, 0])), MlsRefused);
});
