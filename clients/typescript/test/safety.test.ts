import assert from "node:assert/strict";
import { test } from "node:test";

import { fromHex } from "../src/bytes.js";
import { GROUPS, groups, safetyNumber } from "../src/safety.js";
import { vectors } from "./vectors.js";

test("the safety number of PROTOCOL.md's test vector", async () => {
  const a = new Uint8Array([4, ...Array.from({ length: 64 }, (_, i) => i)]);
  const b = new Uint8Array([4, ...Array.from({ length: 64 }, (_, i) => 64 + i)]);
  const number = await safetyNumber(a, "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11", b, "5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10");
  assert.equal(
    groups(number).join(" "),
    "16303 91880 36754 24548 25302 13564 75408 11999 90577 79418 65233 38369",
  );
});

test("safety numbers equal the Python reference's, from either side", async () => {
  for (const v of vectors.safety_numbers) {
    const a = fromHex(v.identity_key);
    const b = fromHex(v.other_identity_key);
    const number = await safetyNumber(a, v.account_id, b, v.other_account_id);
    assert.deepEqual(groups(number), v.groups);
    assert.equal(groups(number).length, GROUPS);
    assert.equal(await safetyNumber(b, v.other_account_id, a, v.account_id), number);
  }
});

test("a changed identity key changes the safety number", async () => {
  const v = vectors.safety_numbers[0];
  assert.ok(v);
  const a = fromHex(v.identity_key);
  const b = fromHex(v.other_identity_key);
  const changed = Uint8Array.from(a);
  changed[64] = (changed[64] ?? 0) ^ 1;
  const number = await safetyNumber(a, v.account_id, b, v.other_account_id);
  assert.notEqual(await safetyNumber(changed, v.account_id, b, v.other_account_id), number);
});
