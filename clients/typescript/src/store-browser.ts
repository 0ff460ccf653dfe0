/**
 * A Store in IndexedDB (browsers; `@confide/client/browser`): two object
 * stores, `values` (Uint8Array by key) and `keys` (CryptoKey objects by name,
 * stored by structured clone, so non-extractable keys stay non-extractable).
 */

import type { Store } from "./store.js";

const VALUES = "values";
const KEYS = "keys";

function done<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("IndexedDB request failed"));
  });
}

export class IndexedDbStore implements Store {
  readonly keepsKeyObjects = true;
  readonly #db: Promise<IDBDatabase>;

  constructor(dbName: string) {
    const request = indexedDB.open(dbName, 1);
    request.onupgradeneeded = () => {
      request.result.createObjectStore(VALUES);
      request.result.createObjectStore(KEYS);
    };
    this.#db = done(request);
  }

  async #run<T>(store: string, mode: IDBTransactionMode, action: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
    const db = await this.#db;
    const tx = db.transaction(store, mode);
    const finished = new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error ?? new Error("IndexedDB transaction failed"));
      tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
    });
    const [result] = await Promise.all([done(action(tx.objectStore(store))), finished]);
    return result;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const value: unknown = await this.#run(VALUES, "readonly", (s) => s.get(key));
    return value instanceof Uint8Array ? value : undefined;
  }

  async put(key: string, value: Uint8Array): Promise<void> {
    await this.#run(VALUES, "readwrite", (s) => s.put(new Uint8Array(value), key));
  }

  async delete(key: string): Promise<void> {
    await this.#run(VALUES, "readwrite", (s) => s.delete(key));
  }

  async keys(prefix: string): Promise<string[]> {
    const all = await this.#run(VALUES, "readonly", (s) => s.getAllKeys());
    return all.filter((k): k is string => typeof k === "string" && k.startsWith(prefix)).sort();
  }

  async getKey(name: string): Promise<CryptoKey | undefined> {
    const key: unknown = await this.#run(KEYS, "readonly", (s) => s.get(name));
    return key instanceof CryptoKey ? key : undefined;
  }

  async putKey(name: string, key: CryptoKey): Promise<void> {
    await this.#run(KEYS, "readwrite", (s) => s.put(key, name));
  }
}
