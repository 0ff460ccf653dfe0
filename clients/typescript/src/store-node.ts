/**
 * A Store in a directory (Node only; `@confide/client/node`). Each value is a
 * file, each key a JWK file, written with mode 0600 to a temporary name and
 * renamed into place, so a crash leaves the old value or the new one. Key
 * names are hex-encoded into file names, so any name is safe. Keys are kept
 * as JWK files, as safe as the directory's permissions. Use one FileStore
 * object per directory (one process at a time): two processes opening a fresh
 * directory at once could each make a sealing key for `sealedStore`.
 */

import { randomUUID } from "node:crypto";
import { chmod, mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { fromHex, toHex } from "./bytes.js";
import type { Store } from "./store.js";

const VALUE = "v-";
const KEY = "k-";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function notFound(error: unknown): boolean {
  return (error as { code?: unknown }).code === "ENOENT";
}

export class FileStore implements Store {
  readonly keepsKeyObjects = false;
  readonly #dir: string;
  #ready: Promise<void> | null = null;

  constructor(dir: string) {
    this.#dir = dir;
  }

  #mkdir(): Promise<void> {
    this.#ready ??= mkdir(this.#dir, { recursive: true, mode: 0o700 }).then(() => undefined);
    return this.#ready;
  }

  #path(prefix: string, name: string): string {
    return join(this.#dir, prefix + toHex(encoder.encode(name)));
  }

  async #write(path: string, data: Uint8Array): Promise<void> {
    await this.#mkdir();
    const temp = `${path}.${randomUUID()}.tmp`;
    try {
      await writeFile(temp, data, { mode: 0o600, flag: "wx" });
      await chmod(temp, 0o600);
      await rename(temp, path);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  }

  async #read(path: string): Promise<Uint8Array | undefined> {
    try {
      return new Uint8Array(await readFile(path));
    } catch (error) {
      if (notFound(error)) return undefined;
      throw error;
    }
  }

  get(key: string): Promise<Uint8Array | undefined> {
    return this.#read(this.#path(VALUE, key));
  }

  put(key: string, value: Uint8Array): Promise<void> {
    return this.#write(this.#path(VALUE, key), value);
  }

  async delete(key: string): Promise<void> {
    await rm(this.#path(VALUE, key), { force: true });
  }

  async keys(prefix: string): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.#dir);
    } catch (error) {
      if (notFound(error)) return [];
      throw error;
    }
    return names
      .filter((n) => n.startsWith(VALUE) && !n.endsWith(".tmp"))
      .map((n) => decoder.decode(fromHex(n.slice(VALUE.length))))
      .filter((k) => k.startsWith(prefix))
      .sort();
  }

  async getKey(name: string): Promise<CryptoKey | undefined> {
    const data = await this.#read(this.#path(KEY, name));
    if (data === undefined) return undefined;
    const { jwk, algorithm, usages } = JSON.parse(decoder.decode(data)) as {
      jwk: JsonWebKey;
      algorithm: AlgorithmIdentifier | EcKeyImportParams | AesKeyAlgorithm;
      usages: KeyUsage[];
    };
    return globalThis.crypto.subtle.importKey("jwk", jwk, algorithm, true, usages);
  }

  async putKey(name: string, key: CryptoKey): Promise<void> {
    if (!key.extractable) throw new TypeError("a FileStore keeps keys as JWK: the key must be extractable");
    const jwk = await globalThis.crypto.subtle.exportKey("jwk", key);
    const algorithm = key.algorithm as { name: string; namedCurve?: string; length?: number };
    const stored = { jwk, algorithm, usages: key.usages };
    await this.#write(this.#path(KEY, name), encoder.encode(JSON.stringify(stored)));
  }
}
