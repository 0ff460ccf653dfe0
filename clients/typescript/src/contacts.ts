/**
 * Contacts' verified key logs (docs/PROTOCOL.md, "Key log", "Safety numbers").
 *
 * For each account it has read, this keeps the last state it checked (seq,
 * head, identity key, active devices). `log` fetches only the entries after
 * that seq, checks that they extend it (`extend`), that they end at the
 * signed head (`checkHead`), and that the head's JWS is the server's
 * (`verifyKeyLogHead`); only then is the new state kept. A failure throws
 * (`LogBroken`, `JwsError`) and leaves the old state as it was.
 *
 * A person can mark a contact verified after comparing safety numbers; the
 * mark names the identity key it was made for, and is dropped when the
 * identity key changes (`checkChanges` reports that as a warning to show).
 * Values are written through `sealedStore`.
 */

import type { Api } from "./api.js";
import { equal, fromBase64Url, fromHex, toBase64Url, toHex } from "./bytes.js";
import { type JwksCache, verifyKeyLogHead } from "./jws.js";
import { type LogState, LogBroken, checkHead, emptyState, entryFromWire, extend } from "./keylog.js";
import { safetyNumber } from "./safety.js";
import { type Store, sealedStore } from "./store.js";

export interface KeyChange {
  accountId: string;
  kind: string;
  deviceId: string | null;
  /** The account's identity key is another one than before this check. */
  identityChanged: boolean;
  /** The account was marked verified before this check (the mark is now dropped if the identity changed). */
  wasVerified: boolean;
}

interface StoredState {
  seq: number;
  head: string;
  identity_key: string | null;
  devices: Record<string, string>;
}

interface Cursor {
  after: string | null;
  seen: string[];
}

const CURSOR = "contacts/key-changes";
const stateKey = (accountId: string): string => `contacts/log/${accountId}`;
const verifiedKey = (accountId: string): string => `contacts/verified/${accountId}`;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function encodeState(state: LogState): Uint8Array {
  const stored: StoredState = {
    seq: state.seq,
    head: toHex(state.head),
    identity_key: state.identityKey === null ? null : toBase64Url(state.identityKey),
    devices: Object.fromEntries([...state.devices].map(([id, key]) => [id, toBase64Url(key)])),
  };
  return encoder.encode(JSON.stringify(stored));
}

function decodeState(accountId: string, bytes: Uint8Array): LogState {
  const stored = JSON.parse(decoder.decode(bytes)) as StoredState;
  return {
    accountId,
    seq: stored.seq,
    head: fromHex(stored.head),
    identityKey: stored.identity_key === null ? null : fromBase64Url(stored.identity_key),
    devices: new Map(Object.entries(stored.devices).map(([id, key]) => [id, fromBase64Url(key)])),
  };
}

export class Contacts {
  readonly #api: Api;
  readonly #store: Promise<Store>;
  readonly #jwks: JwksCache;
  /** One check at a time per account, so two readers never interleave their writes. */
  readonly #pending = new Map<string, Promise<LogState>>();

  constructor(api: Api, store: Store, jwks: JwksCache) {
    this.#api = api;
    this.#store = sealedStore(store);
    this.#jwks = jwks;
  }

  async #stored(accountId: string): Promise<LogState | null> {
    const bytes = await (await this.#store).get(stateKey(accountId));
    return bytes === undefined ? null : decodeState(accountId, bytes);
  }

  /** The account's key log as far as the server has it, checked; else LogBroken or JwsError. */
  log(accountId: string): Promise<LogState> {
    const before = this.#pending.get(accountId) ?? Promise.resolve(null);
    const next = before.catch(() => null).then(() => this.#check(accountId));
    this.#pending.set(accountId, next);
    void next.catch(() => undefined).finally(() => {
      if (this.#pending.get(accountId) === next) this.#pending.delete(accountId);
    });
    return next;
  }

  async #check(accountId: string): Promise<LogState> {
    const store = await this.#store;
    const known = (await this.#stored(accountId)) ?? emptyState(accountId);
    const view = await this.#api.keyLog(accountId, known.seq);
    if (view.account_id !== accountId) throw new LogBroken(known.seq + 1, "the answer is another account's log");
    const entries = view.entries.map((wire, i) => {
      try {
        return entryFromWire(wire);
      } catch {
        throw new LogBroken(known.seq + 1 + i, "a malformed entry");
      }
    });
    const state = await extend(known, entries);
    if (view.head === null) {
      if (state.seq !== 0) throw new LogBroken(1, "the log has no head, but entries were read before");
    } else {
      let head: Uint8Array;
      try {
        head = fromHex(view.head.hash);
      } catch {
        throw new LogBroken(view.head.seq, "a malformed head");
      }
      checkHead(state, view.head.seq, head);
      await verifyKeyLogHead(this.#jwks, accountId, view.head);
    }
    await store.put(stateKey(accountId), encodeState(state));
    return state;
  }

  /** The signing key of the device if it is active in the account's verified log (refreshed once if not). */
  async deviceKey(accountId: string, deviceId: string): Promise<Uint8Array | undefined> {
    const known = await this.#stored(accountId);
    const key = known?.devices.get(deviceId);
    if (key !== undefined) return key;
    return (await this.log(accountId)).devices.get(deviceId);
  }

  /** The 60-digit safety number of two accounts, from their verified logs' identity keys. */
  async safetyNumber(selfAccountId: string, otherAccountId: string): Promise<string> {
    const [self, other] = [await this.log(selfAccountId), await this.log(otherAccountId)];
    if (self.identityKey === null || other.identityKey === null) {
      throw new RangeError("an account without an identity key has no safety number");
    }
    return safetyNumber(self.identityKey, selfAccountId, other.identityKey, otherAccountId);
  }

  /** Remembers that the person verified the account's current identity key (after a fresh check of the log). */
  async markVerified(accountId: string): Promise<void> {
    const state = await this.log(accountId);
    if (state.identityKey === null) throw new RangeError("the account has no identity key to verify");
    await (await this.#store).put(verifiedKey(accountId), state.identityKey);
  }

  /** Whether the account's identity key, as last checked, is the one the person verified. */
  async isVerified(accountId: string): Promise<boolean> {
    const verified = await (await this.#store).get(verifiedKey(accountId));
    const state = await this.#stored(accountId);
    return verified !== undefined && state?.identityKey != null && equal(verified, state.identityKey);
  }

  /**
   * The key changes of accounts sharing a room with the caller since the
   * last call, each account's log checked anew. `identityChanged && wasVerified`
   * is a warning the app must show: the person verified a key that is no
   * longer the account's (the verified mark is dropped).
   */
  async checkChanges(): Promise<KeyChange[]> {
    const store = await this.#store;
    const cursorBytes = await store.get(CURSOR);
    const cursor: Cursor = cursorBytes === undefined ? { after: null, seen: [] } : JSON.parse(decoder.decode(cursorBytes));
    const seen = new Set(cursor.seen);
    const changes = (await this.#api.keyChanges(cursor.after ?? undefined)).filter(
      (c) => !seen.has(`${c.account_id}:${c.seq}`),
    );
    const accounts = new Map<string, { identityChanged: boolean; wasVerified: boolean }>();
    for (const change of changes) {
      if (accounts.has(change.account_id)) continue;
      const before = await this.#stored(change.account_id);
      const wasVerified = await this.isVerified(change.account_id);
      const after = await this.log(change.account_id);
      const identityChanged =
        before !== null &&
        before.identityKey !== null &&
        (after.identityKey === null || !equal(before.identityKey, after.identityKey));
      if (identityChanged) await store.delete(verifiedKey(change.account_id));
      accounts.set(change.account_id, { identityChanged, wasVerified });
    }
    if (changes.length > 0) {
      let latest = cursor.after;
      for (const c of changes) if (latest === null || Date.parse(c.at) > Date.parse(latest)) latest = c.at;
      const latestTime = latest === null ? NaN : Date.parse(latest);
      const kept = latest === cursor.after ? cursor.seen : [];
      const atLatest = changes.filter((c) => Date.parse(c.at) === latestTime).map((c) => `${c.account_id}:${c.seq}`);
      const next: Cursor = { after: latest, seen: [...kept, ...atLatest] };
      await store.put(CURSOR, encoder.encode(JSON.stringify(next)));
    }
    return changes.map((c) => {
      const state = accounts.get(c.account_id) ?? { identityChanged: false, wasVerified: false };
      return { accountId: c.account_id, kind: c.kind, deviceId: c.device_id, ...state };
    });
  }
}
