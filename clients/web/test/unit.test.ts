/** The pure modules: safety number groups and call signals, over many generated inputs. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { type Signal, decodeSignal, encodeSignal } from "../src/call.js";
import { safetyGroups } from "../src/safety.js";

/** A small seeded generator (mulberry32), so that a failure repeats. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const RUNS = 500;

function digits(next: () => number, length: number): string {
  return Array.from({ length }, () => String(Math.floor(next() * 10))).join("");
}

function text(next: () => number, length: number): string {
  return Array.from({ length }, () => String.fromCharCode(32 + Math.floor(next() * 0x2000))).join("");
}

test("a safety number splits into 12 groups of 5 that join back to it", () => {
  const next = random(1);
  for (let i = 0; i < RUNS; i++) {
    const number = digits(next, 60);
    const groups = safetyGroups(number);
    assert.equal(groups.length, 12);
    assert.ok(groups.every((g) => /^[0-9]{5}$/.test(g)));
    assert.equal(groups.join(""), number);
  }
});

test("anything but 60 digits is refused", () => {
  const next = random(2);
  for (let i = 0; i < RUNS; i++) {
    const length = Math.floor(next() * 120);
    if (length !== 60) assert.throws(() => safetyGroups(digits(next, length)), RangeError);
    const spoiled = digits(next, 60).split("");
    spoiled[Math.floor(next() * 60)] = "x";
    assert.throws(() => safetyGroups(spoiled.join("")), RangeError);
  }
});

function signal(next: () => number): Signal {
  switch (Math.floor(next() * 4)) {
    case 0:
      return { type: "offer", sdp: text(next, Math.floor(next() * 200)) };
    case 1:
      return { type: "answer", sdp: text(next, Math.floor(next() * 200)) };
    case 2:
      return { type: "candidate", candidate: { candidate: text(next, 40), sdpMid: "0", sdpMLineIndex: 0 } };
    default:
      return { type: "hangup" };
  }
}

test("every signal decodes to itself", () => {
  const next = random(3);
  for (let i = 0; i < RUNS; i++) {
    const sent = signal(next);
    assert.deepEqual(decodeSignal(encodeSignal(sent)), sent);
  }
});

test("random bytes never throw and never pass for a signal unless they are one", () => {
  const next = random(4);
  for (let i = 0; i < RUNS; i++) {
    const bytes = Uint8Array.from({ length: Math.floor(next() * 64) }, () => Math.floor(next() * 256));
    const decoded = decodeSignal(bytes);
    if (decoded !== null) assert.deepEqual(decodeSignal(encodeSignal(decoded)), decoded);
  }
});

test("malformed signals are null", () => {
  const bad = [
    "null",
    "[]",
    "42",
    '"offer"',
    '{"type":"offer"}',
    '{"type":"answer","sdp":7}',
    '{"type":"candidate"}',
    '{"type":"candidate","candidate":{"candidate":1}}',
    '{"type":"ring"}',
    "{",
  ];
  for (const json of bad) assert.equal(decodeSignal(new TextEncoder().encode(json)), null, json);
});
