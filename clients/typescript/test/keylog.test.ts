import assert from "node:assert/strict";
import { test } from "node:test";

import { fromHex, toHex } from "../src/bytes.js";
import {
  DEVICE_ADDED,
  type Entry,
  LogBroken,
  type LogState,
  checkHead,
  emptyState,
  entryFromWire,
  extend,
  makeEntry,
} from "../src/keylog.js";
import { vectors } from "./vectors.js";

const log = vectors.key_log;
const entries: Entry[] = log.entries.map(entryFromWire);
const head = fromHex(log.head.hash);

async function brokenAt(seq: number, run: () => Promise<unknown>): Promise<void> {
  await assert.rejects(run, (error: unknown) => {
    assert.ok(error instanceof LogBroken, String(error));
    assert.equal(error.seq, seq, error.message);
    return true;
  });
}

test("the Python reference's log verifies and ends at its head", async () => {
  const state = await extend(emptyState(log.account_id), entries);
  checkHead(state, log.head.seq, head);
  assert.equal(state.seq, entries.length);
  assert.equal(toHex(state.identityKey ?? new Uint8Array()), log.identity_key);
  assert.deepEqual(
    Object.fromEntries([...state.devices].map(([id, key]) => [id, toHex(key)])),
    log.devices,
  );
});

test("entry hashes are recomputed as the reference does", async () => {
  for (const entry of entries) {
    const again = await makeEntry(log.account_id, entry.seq, entry.kind, entry.prevHash, entry);
    assert.equal(toHex(again.hash), toHex(entry.hash));
  }
});

test("the log verifies in any split, from a known state", async () => {
  for (let cut = 0; cut <= entries.length; cut++) {
    const known: LogState = await extend(emptyState(log.account_id), entries.slice(0, cut));
    const state = await extend(known, entries.slice(cut));
    checkHead(state, log.head.seq, head);
  }
});

test("a changed entry fails at that entry", async () => {
  const changes: ((e: Entry) => Entry)[] = [
    (e) => ({ ...e, deviceId: e.deviceId ? "00000000-0000-4000-8000-00000000ffff" : "x" }),
    (e) => ({ ...e, kind: e.kind === DEVICE_ADDED ? "device_revoked" : DEVICE_ADDED }),
    (e) => ({ ...e, hash: flip(e.hash) }),
    (e) => ({ ...e, publicKey: Uint8Array.from([...e.publicKey, 0]) }),
  ];
  for (let i = 0; i < entries.length; i++) {
    for (const change of changes) {
      const changed = entries.map((e, j) => (j === i ? change(e) : e));
      await brokenAt(i + 1, () => extend(emptyState(log.account_id), changed));
    }
  }
});

test("a rewritten device entry with a recomputed hash fails at its signature", async () => {
  const i = 1;
  const original = entries[i];
  assert.ok(original);
  const rewritten = await makeEntry(log.account_id, original.seq, original.kind, original.prevHash, {
    ...original,
    publicKey: new Uint8Array(32).fill(9),
  });
  await brokenAt(i + 1, () => extend(emptyState(log.account_id), entries.map((e, j) => (j === i ? rewritten : e))));
});

test("a dropped entry fails", async () => {
  for (let i = 0; i < entries.length; i++) {
    const dropped = entries.filter((_, j) => j !== i);
    if (i === entries.length - 1) {
      const state = await extend(emptyState(log.account_id), dropped);
      assert.throws(() => checkHead(state, log.head.seq, head), LogBroken);
    } else {
      await brokenAt(i + 1, () => extend(emptyState(log.account_id), dropped));
    }
  }
});

test("reordered entries fail", async () => {
  for (let i = 0; i + 1 < entries.length; i++) {
    const swapped = entries.slice();
    [swapped[i], swapped[i + 1]] = [entries[i + 1] as Entry, entries[i] as Entry];
    await brokenAt(i + 1, () => extend(emptyState(log.account_id), swapped));
  }
});

test("a fork: a different entry after a shared prefix fails for a reader who saw the first", async () => {
  const cut = 3;
  const known = await extend(emptyState(log.account_id), entries.slice(0, cut));
  const base = entries[cut - 1];
  assert.ok(base);
  // The server shows another reader a log where the device is revoked instead.
  const fork = await makeEntry(log.account_id, cut, "device_revoked", base.prevHash, {
    deviceId: vectors.device_statements[0]?.device_id ?? "",
  });
  const forked = await extend(emptyState(log.account_id), [...entries.slice(0, cut - 1), fork]);
  checkHead(forked, cut, forked.head); // consistent on its own
  // The first reader, at seq 3, is served the fork's continuation or its head.
  const next = await makeEntry(log.account_id, cut + 1, "device_revoked", fork.hash, {
    deviceId: entries[1]?.deviceId ?? "",
  });
  await brokenAt(cut + 1, () => extend(known, [next]));
  assert.throws(() => checkHead(known, cut, forked.head), LogBroken);
});

test("a head that is not where the entries led fails", async () => {
  const state = await extend(emptyState(log.account_id), entries);
  assert.throws(() => checkHead(state, log.head.seq + 1, head), (e: unknown) => e instanceof LogBroken && e.seq === log.head.seq + 1);
  assert.throws(() => checkHead(state, log.head.seq, flip(head)), LogBroken);
  assert.throws(() => checkHead(state, log.head.seq - 1, entries[entries.length - 2]?.hash ?? head), LogBroken);
});

test("kind rules: a device revoked twice, or added without the identity key, fails", async () => {
  const state = await extend(emptyState(log.account_id), entries);
  const revokedAgain = await makeEntry(log.account_id, state.seq + 1, "device_revoked", state.head, {
    deviceId: entries[1]?.deviceId ?? "",
  });
  await brokenAt(state.seq + 1, () => extend(state, [revokedAgain]));
  // Entry 2 (signed by the first identity key) replayed after the reset.
  const e2 = entries[1];
  assert.ok(e2);
  const replayed = await makeEntry(log.account_id, state.seq + 1, DEVICE_ADDED, state.head, {
    ...e2,
    deviceId: "00000000-0000-4000-8000-0000000000aa",
  });
  await brokenAt(state.seq + 1, () => extend(state, [replayed]));
});

function flip(bytes: Uint8Array): Uint8Array {
  const out = Uint8Array.from(bytes);
  out[0] = (out[0] ?? 0) ^ 1;
  return out;
}
