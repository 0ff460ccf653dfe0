/**
 * Persistence of a device's secrets: byte values by key, and WebCrypto keys
 * by name. `MemoryStore` is for tests; `FileStore` (`@confide/client/node`)
 * and `IndexedDbStore` (`@confide/client/browser`) keep them across runs.
 * `sealedStore` wraps any of them so that every value is AES-256-GCM sealed.
 */

import { ascii, concat, own } from "./bytes.js";

export interface Store {
  get(key: string): Promise<Uint8Array | undefined>;
  put(key: string, value: Uint8Array): Promise<void>;
  delete(key: string): Promise<void>;
  /** The keys that start with `prefix`, sorted. */
  keys(prefix: string): Promise<string[]>;
  getKey(name: string): Promise<CryptoKey | undefined>;
  putKey(name: string, key: CryptoKey): Promise<void>;
  /**
   * True where CryptoKey objects are stored as they are (IndexedDB), so keys
   * can be non-extractable; false where they are stored as JWK (files), so
   * keys put here must be extractable.
   */
  readonly keepsKeyObjects: boolean;
}

/** Values and keys in memory; keeps key objects (nothing is serialized). */
export class MemoryStore implements Store {
  readonly keepsKeyObjects = true;
  readonly #values = new Map<string, Uint8Array>();
  readonly #keys = new Map<string, CryptoKey>();

  async get(key: string): Promise<Uint8Array | undefined> {
    const value = this.#values.get(key);
    return value === undefined ? undefined : own(value);
  }

  async put(key: string, value: Uint8Array): Promise<void> {
    this.#values.set(key, own(value));
  }

  async delete(key: string): Promise<void> {
    this.#values.delete(key);
  }

  async keys(prefix: string): Promise<string[]> {
    return [...this.#values.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  async getKey(name: string): Promise<CryptoKey | undefined> {
    return this.#keys.get(name);
  }

  async putKey(name: string, key: CryptoKey): Promise<void> {
    this.#keys.set(name, key);
  }
}

/** The name of the sealing key in the inner store. */
export const SEAL_KEY = "seal";
const NONCE_BYTES = 12;
const SEAL_CONTEXT = "confide store v1:";

/** Sealing failed: a value was changed, moved to another key, or sealed under another key. */
export class SealError extends Error {
  readonly key: string;

  constructor(key: string) {
    super(`stored value ${JSON.stringify(key)} does not open`);
    this.name = "SealError";
    this.key = key;
  }
}

class SealedStore implements Store {
  readonly #inner: Store;
  readonly #key: CryptoKey;

  constructor(inner: Store, key: CryptoKey) {
    this.#inner = inner;
    this.#key = key;
  }

  get keepsKeyObjects(): boolean {
    return this.#inner.keepsKeyObjects;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const sealed = await this.#inner.get(key);
    if (sealed === undefined) return undefined;
    if (sealed.length < NONCE_BYTES + 16) throw new SealError(key);
    try {
      const plain = await globalThis.crypto.subtle.decrypt(
        { name: "AES-GCM", iv: own(sealed.subarray(0, NONCE_BYTES)), additionalData: ascii(SEAL_CONTEXT + key) },
        this.#key,
        own(sealed.subarray(NONCE_BYTES)),
      );
      return new Uint8Array(plain);
    } catch {
      throw new SealError(key);
    }
  }

  async put(key: string, value: Uint8Array): Promise<void> {
    const nonce = globalThis.crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
    const sealed = await globalThis.crypto.subtle.encrypt(
      { name: "AES-GCM", iv: nonce, additionalData: ascii(SEAL_CONTEXT + key) },
      this.#key,
      own(value),
    );
    await this.#inner.put(key, concat([nonce, new Uint8Array(sealed)]));
  }

  delete(key: string): Promise<void> {
    return this.#inner.delete(key);
  }

  keys(prefix: string): Promise<string[]> {
    return this.#inner.keys(prefix);
  }

  getKey(name: string): Promise<CryptoKey | undefined> {
    return this.#inner.getKey(name);
  }

  async putKey(name: string, key: CryptoKey): Promise<void> {
    if (name === SEAL_KEY) throw new RangeError(`the key name ${SEAL_KEY} is the store's own`);
    return this.#inner.putKey(name, key);
  }
}

/**
 * `inner` with every value AES-256-GCM sealed under the key `seal` kept in
 * `inner` (made on first use; non-extractable where `inner` keeps key
 * objects). Each value is `nonce (12 random bytes) || ciphertext`, with the
 * value's key name as associated data, so a value moved to another name does
 * not open. Key names (and the CryptoKeys under `getKey`) are not sealed.
 * Key names must be ASCII. Sealing a sealed store answers it as it is.
 */
export function sealedStore(inner: Store): Promise<Store> {
  let sealed = opened.get(inner);
  if (sealed === undefined) {
    sealed = openSealed(inner);
    opened.set(inner, sealed);
    sealed.catch(() => opened.delete(inner));
  }
  return sealed;
}

/** One sealed view per inner store, so that two first uses never make two sealing keys. */
const opened = new WeakMap<Store, Promise<Store>>();

async function openSealed(inner: Store): Promise<Store> {
  if (inner instanceof SealedStore) return inner;
  let key = await inner.getKey(SEAL_KEY);
  if (key === undefined) {
    key = await globalThis.crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, !inner.keepsKeyObjects, [
      "encrypt",
      "decrypt",
    ]);
    await inner.putKey(SEAL_KEY, key);
  }
  return new SealedStore(inner, key);
}
