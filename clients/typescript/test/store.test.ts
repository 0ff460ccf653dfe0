import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { MemoryStore, SEAL_KEY, SealError, type Store, sealedStore } from "../src/store.js";
import { FileStore } from "../src/store-node.js";

const bytes = (text: string): Uint8Array<ArrayBuffer> => new TextEncoder().encode(text);

async function withDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "confide-store-"));
  try {
    await run(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function basics(store: Store): Promise<void> {
  assert.equal(await store.get("a/1"), undefined);
  await store.put("a/1", bytes("one"));
  await store.put("a/2", bytes("two"));
  await store.put("b/1", bytes("three"));
  assert.deepEqual(await store.get("a/1"), bytes("one"));
  assert.deepEqual(await store.keys("a/"), ["a/1", "a/2"]);
  await store.put("a/1", bytes("uno"));
  assert.deepEqual(await store.get("a/1"), bytes("uno"));
  await store.delete("a/1");
  await store.delete("a/1");
  assert.equal(await store.get("a/1"), undefined);
  assert.deepEqual(await store.keys("a/"), ["a/2"]);
}

test("the memory store keeps values and keys", async () => {
  const store = new MemoryStore();
  await basics(store);
  const pair = await globalThis.crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
  await store.putKey("identity", pair.privateKey);
  assert.equal(await store.getKey("identity"), pair.privateKey);
});

test("the file store keeps values in 0600 files and keys as JWK across instances", async () => {
  await withDir(async (dir) => {
    const store = new FileStore(join(dir, "device"));
    assert.deepEqual(await store.keys(""), []);
    await basics(store);
    for (const name of await readdir(join(dir, "device"))) {
      assert.equal((await stat(join(dir, "device", name))).mode & 0o777, 0o600, name);
      assert.ok(!name.endsWith(".tmp"));
    }
    const pair = await globalThis.crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
    await store.putKey("identity", pair.privateKey);
    const again = new FileStore(join(dir, "device"));
    assert.deepEqual(await again.get("a/2"), bytes("two"));
    const loaded = await again.getKey("identity");
    assert.ok(loaded);
    const message = bytes("statement");
    const signature = await globalThis.crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, loaded, message);
    assert.ok(await globalThis.crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, pair.publicKey, signature, message));
    // Non-extractable keys cannot be written as JWK.
    const fixed = await globalThis.crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
    await assert.rejects(store.putKey("fixed", fixed.privateKey), TypeError);
    // Odd key names are safe file names.
    await store.put("../../etc/x", bytes("x"));
    assert.deepEqual(await again.get("../../etc/x"), bytes("x"));
  });
});

test("a sealed store keeps no plaintext, and opens its values again with the stored key", async () => {
  await withDir(async (dir) => {
    const inner = new FileStore(dir);
    const sealed = await sealedStore(inner);
    await basics(sealed);
    await sealed.put("secret", bytes("the private key"));
    const raw = await inner.get("secret");
    assert.ok(raw);
    assert.equal(raw.length, 12 + "the private key".length + 16);
    assert.ok(!Buffer.from(raw).includes(Buffer.from("private")));
    const reopened = await sealedStore(new FileStore(dir));
    assert.deepEqual(await reopened.get("secret"), bytes("the private key"));
  });
});

test("a sealed value that was changed, moved to another name or sealed under another key does not open", async () => {
  const inner = new MemoryStore();
  const sealed = await sealedStore(inner);
  assert.equal((await inner.getKey(SEAL_KEY))?.extractable, false);
  await sealed.put("a", bytes("value a"));
  const raw = await inner.get("a");
  assert.ok(raw);

  for (const index of [0, 12, raw.length - 1]) {
    const tampered = new Uint8Array(raw);
    tampered[index] = (tampered[index] ?? 0) ^ 1;
    await inner.put("a", tampered);
    await assert.rejects(sealed.get("a"), SealError);
  }
  await inner.put("a", raw.subarray(0, 20));
  await assert.rejects(sealed.get("a"), SealError);

  await inner.put("b", raw);
  await assert.rejects(sealed.get("b"), SealError);

  await inner.put("a", raw);
  assert.deepEqual(await sealed.get("a"), bytes("value a"));
  const otherInner = new MemoryStore();
  const other = await sealedStore(otherInner);
  await otherInner.put("a", raw);
  await assert.rejects(other.get("a"), SealError);
  await assert.rejects(sealed.putKey(SEAL_KEY, (await inner.getKey(SEAL_KEY)) as CryptoKey), RangeError);
});

test("a file store ignores a half-written temporary file", async () => {
  await withDir(async (dir) => {
    const store = new FileStore(dir);
    await store.put("k", bytes("v"));
    await writeFile(join(dir, "v-6b.1234.tmp"), "partial");
    assert.deepEqual(await store.keys(""), ["k"]);
    assert.deepEqual(await store.get("k"), bytes("v"));
  });
});

test("two first uses of one store share one sealing key", async () => {
  const inner = new MemoryStore();
  const [a, b] = await Promise.all([sealedStore(inner), sealedStore(inner)]);
  await a.put("k", bytes("v"));
  assert.deepEqual(await b.get("k"), bytes("v"));
  assert.equal(await sealedStore(a), a);
});
