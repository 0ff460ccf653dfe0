import assert from "node:assert/strict";
import { test } from "node:test";

import { type Jwks, JwksCache, JwsError, KEY_LOG_AUDIENCE, KEY_LOG_TYP, verifyCompact, verifyKeyLogHead } from "../src/jws.js";
import { vectors } from "./vectors.js";

const v = vectors.key_log_head;
const EXPECT = { typ: KEY_LOG_TYP, aud: KEY_LOG_AUDIENCE };

async function refused(promise: Promise<unknown>, reason: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => error instanceof JwsError && error.reason === reason);
}

test("the Python reference's signed key log head verifies", async () => {
  assert.deepEqual(await verifyCompact(v.head.jws, v.jwks, EXPECT), v.claims);
  await verifyKeyLogHead(new JwksCache(async () => v.jwks), v.account_id, v.head);
});

test("a high-s spelling of the same signature is refused", async () => {
  await refused(verifyCompact(v.high_s, v.jwks, EXPECT), "high_s");
});

test("a wrong typ, a wrong aud, alg none and a changed payload are refused", async () => {
  await refused(verifyCompact(v.wrong_typ, v.jwks, EXPECT), "typ");
  await refused(verifyCompact(v.wrong_aud, v.jwks, EXPECT), "aud");
  await refused(verifyCompact(v.alg_none, v.jwks, EXPECT), "malformed");
  await refused(verifyCompact(v.tampered, v.jwks, EXPECT), "signature");
  await refused(verifyCompact(v.head.jws, v.jwks, { typ: KEY_LOG_TYP, aud: "confide:api" }), "aud");
});

test("malformed tokens are refused", async () => {
  const [h, p, s] = v.head.jws.split(".") as [string, string, string];
  for (const bad of ["", "a.b", `${h}.${p}`, `${h}.${p}.${s}.x`, `${h}.${p}.${s}=`, `${h}.${p}.${s.slice(0, -4)}`, `e30.${p}.${s}`]) {
    await assert.rejects(verifyCompact(bad, v.jwks, EXPECT), JwsError, bad);
  }
});

test("an unknown kid is refused, and the cache fetches the JWKS once more before it refuses", async () => {
  await refused(verifyCompact(v.unknown_kid, v.jwks, EXPECT), "kid");
  let loads = 0;
  const cache = new JwksCache(async () => {
    loads += 1;
    return v.jwks;
  });
  await cache.verify(v.head.jws, EXPECT);
  assert.equal(loads, 1);
  await refused(cache.verify(v.unknown_kid, EXPECT), "kid");
  assert.equal(loads, 2);
});

test("a key published after the cache was filled is found by the refetch", async () => {
  const sets: Jwks[] = [{ keys: [] }, v.jwks];
  const cache = new JwksCache(async () => sets.shift() ?? { keys: [] });
  await cache.verify(v.head.jws, EXPECT);
});

test("a JWK whose kid is not its thumbprint is not used", async () => {
  const [key] = v.jwks.keys;
  assert.ok(key);
  const other = { ...key, y: key.x ?? "" };
  await refused(verifyCompact(v.head.jws, { keys: [other] }, EXPECT), "kid");
});

test("a head whose claims name another account, seq or hash is refused", async () => {
  const cache = new JwksCache(async () => v.jwks);
  await refused(verifyKeyLogHead(cache, "5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10", v.head), "claims");
  await refused(verifyKeyLogHead(cache, v.account_id, { ...v.head, seq: v.head.seq - 1 }), "claims");
  await refused(verifyKeyLogHead(cache, v.account_id, { ...v.head, hash: "00".repeat(32) }), "claims");
});
