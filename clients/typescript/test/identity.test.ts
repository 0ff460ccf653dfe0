import assert from "node:assert/strict";
import { test } from "node:test";

import { fromHex, toHex } from "../src/bytes.js";
import {
  deviceStatement,
  exportP256,
  generateSigningKeyPair,
  isValidP256,
  signDevice,
  verify,
} from "../src/identity.js";
import { vectors } from "./vectors.js";

test("device statements are the Python reference's bytes", () => {
  assert.ok(vectors.device_statements.length > 0);
  for (const v of vectors.device_statements) {
    const statement = deviceStatement(v.account_id, v.device_id, fromHex(v.signing_key), fromHex(v.public_key));
    assert.equal(toHex(statement), v.statement);
  }
});

test("a statement starts with its framed label and account id", () => {
  const v = vectors.device_statements[0];
  assert.ok(v);
  const statement = deviceStatement(v.account_id, v.device_id, fromHex(v.signing_key), fromHex(v.public_key));
  const head = new TextDecoder().decode(statement.subarray(4, 21));
  assert.deepEqual([...statement.subarray(0, 4)], [0, 0, 0, 17]);
  assert.equal(head, "confide device v1");
  assert.deepEqual([...statement.subarray(21, 25)], [0, 0, 0, 36]);
  assert.equal(new TextDecoder().decode(statement.subarray(25, 61)), v.account_id);
});

test("signatures made by the Python reference verify, either s; a changed one does not", async () => {
  for (const v of vectors.device_statements) {
    const key = fromHex(v.identity_key);
    const statement = fromHex(v.statement);
    assert.equal(await verify(key, statement, fromHex(v.signature)), true);
    assert.equal(await verify(key, statement, fromHex(v.signature_high_s)), true);
    assert.equal(await verify(key, statement, fromHex(v.signature_tampered)), false);
    const other = statement.slice();
    other[other.length - 1] = (other[other.length - 1] ?? 0) ^ 1;
    assert.equal(await verify(key, other, fromHex(v.signature)), false);
  }
});

test("a device signed here verifies; malformed keys and signatures are refused", async () => {
  const identity = await generateSigningKeyPair();
  const device = await generateSigningKeyPair();
  const identityKey = await exportP256(identity.publicKey);
  const signingKey = await exportP256(device.publicKey);
  assert.equal(identityKey.length, 65);
  const accountId = "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11";
  const deviceId = "3f9d1c2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f";
  const publicKey = new Uint8Array(32).fill(7);
  const signature = await signDevice(identity.privateKey, accountId, deviceId, signingKey, publicKey);
  assert.equal(signature.length, 64);
  const statement = deviceStatement(accountId, deviceId, signingKey, publicKey);
  assert.equal(await verify(identityKey, statement, signature), true);
  assert.equal(await verify(signingKey, statement, signature), false);
  assert.equal(await verify(identityKey, statement, signature.subarray(0, 63)), false);
  assert.equal(await verify(identityKey, statement, new Uint8Array(64)), false);
  assert.equal(await verify(identityKey.subarray(1), statement, signature), false);
  const offCurve = identityKey.slice();
  offCurve[64] = (offCurve[64] ?? 0) ^ 1;
  assert.equal(await isValidP256(offCurve), false);
  assert.equal(await isValidP256(identityKey), true);
  assert.throws(() => deviceStatement("é", deviceId, signingKey, publicKey), RangeError);
});
