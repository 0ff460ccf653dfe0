import assert from "node:assert/strict";
import { test } from "node:test";

import { type Payload, PayloadError, decodePayload, encodePayload } from "../src/payload.js";

/** A small seeded generator (mulberry32), so that a failure names the seed that reproduces it. */
function generator(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (below: number) => Math.floor(next() * below);
  const bytes = () => {
    const out = new Uint8Array(int(4) === 0 ? 0 : int(600));
    for (let i = 0; i < out.length; i++) out[i] = int(256);
    return out;
  };
  const codePoint = () => {
    switch (int(4)) {
      case 0:
        return int(0x80);
      case 1:
        return 0x80 + int(0x800 - 0x80);
      case 2: {
        const c = 0x800 + int(0x10000 - 0x800);
        return c >= 0xd800 && c <= 0xdfff ? 0xfeff : c;
      }
      default:
        return 0x10000 + int(0x110000 - 0x10000);
    }
  };
  const text = () => {
    let out = "";
    const length = int(4) === 0 ? 0 : int(200);
    for (let i = 0; i < length; i++) out += String.fromCodePoint(codePoint());
    return out;
  };
  const payload = (): Payload => {
    switch (int(3)) {
      case 0:
        return { kind: "text", text: text() };
      case 1:
        return { kind: "bytes", bytes: bytes() };
      default:
        return { kind: "signal", bytes: bytes() };
    }
  };
  return { int, bytes, payload };
}

const RUNS = 2000;

test("every payload survives the round trip, with its kind byte first", () => {
  const seed = Date.now();
  const gen = generator(seed);
  for (let run = 0; run < RUNS; run++) {
    const payload = gen.payload();
    const encoded = encodePayload(payload);
    assert.equal(encoded[0], { text: 0x01, bytes: 0x02, signal: 0x03 }[payload.kind], `seed ${seed}`);
    assert.deepEqual(decodePayload(encoded), payload, `seed ${seed}`);
  }
});

test("any bytes decode to a payload that encodes back to them, or to a PayloadError", () => {
  const seed = Date.now();
  const gen = generator(seed);
  for (let run = 0; run < RUNS; run++) {
    const bytes = gen.bytes();
    if (gen.int(2) === 0 && bytes.length > 0) bytes[0] = 1 + gen.int(3);
    let payload: Payload;
    try {
      payload = decodePayload(bytes);
    } catch (error) {
      assert.ok(error instanceof PayloadError, `seed ${seed}`);
      continue;
    }
    assert.deepEqual(encodePayload(payload), bytes, `seed ${seed}`);
  }
});

test("empty bytes, unknown kinds and invalid UTF-8 are refused with stable codes", () => {
  const code = (bytes: number[]) => {
    try {
      decodePayload(new Uint8Array(bytes));
    } catch (error) {
      return error instanceof PayloadError ? error.code : "other";
    }
    return "accepted";
  };
  assert.equal(code([]), "empty");
  assert.equal(code([0x00]), "unknown_kind");
  assert.equal(code([0x04, 1, 2]), "unknown_kind");
  assert.equal(code([0xff]), "unknown_kind");
  assert.equal(code([0x01, 0xff]), "invalid_utf8");
  assert.equal(code([0x01, 0xc0, 0x80]), "invalid_utf8"); // overlong NUL
  assert.equal(code([0x01, 0xed, 0xa0, 0x80]), "invalid_utf8"); // an encoded surrogate
  assert.equal(code([0x01, 0xe2, 0x82]), "invalid_utf8"); // truncated
  assert.equal(code([0x01]), "accepted");
  assert.deepEqual(decodePayload(new Uint8Array([0x01, 0xef, 0xbb, 0xbf, 0x41])), { kind: "text", text: "\ufeffA" });
  assert.throws(
    () => encodePayload({ kind: "text", text: "a\ud800b" }),
    (e: unknown) => e instanceof PayloadError && e.code === "invalid_utf8",
  );
  assert.deepEqual(encodePayload({ kind: "text", text: "é" }), new Uint8Array([0x01, 0xc3, 0xa9]));
});
