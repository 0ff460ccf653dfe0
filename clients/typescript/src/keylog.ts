/**
 * An account's key log (docs/PROTOCOL.md, "Key log"): entries, their hash
 * chain, and the verifier a client runs before it trusts a key. The same
 * check as app/keys/log.py (`extend`, `check_head`).
 *
 * An entry's hash is SHA-256 over
 *
 *     frame("confide key log v1") || seq (8 bytes, big-endian) || frame(kind)
 *         || frame(account id) || frame(device id) || frame(identity key)
 *         || frame(signing key) || frame(public key) || frame(signature)
 *         || prev hash (32 bytes)
 *
 * (an absent value is empty; the first entry's prev hash is 32 zero bytes).
 *
 * `checkHead` compares the head's seq and hash with where the entries led;
 * verifying the head's JWS against the server's JWKS is not done here yet.
 */

import { ascii, concat, equal, frame, fromBase64Url, fromHex, sha256, u64be } from "./bytes.js";
import { deviceStatement, isValidP256, verify } from "./identity.js";

export const LOG_CONTEXT = "confide key log v1";
export const ZERO_HASH: Uint8Array = new Uint8Array(32);

export const IDENTITY_SET = "identity_set";
export const IDENTITY_RESET = "identity_reset";
export const DEVICE_ADDED = "device_added";
export const DEVICE_REVOKED = "device_revoked";
export const KINDS = [IDENTITY_SET, IDENTITY_RESET, DEVICE_ADDED, DEVICE_REVOKED] as const;

/** The entries do not extend the known state; `seq` is the first one at fault. */
export class LogBroken extends Error {
  readonly seq: number;
  readonly reason: string;

  constructor(seq: number, reason: string) {
    super(`key log entry ${seq}: ${reason}`);
    this.name = "LogBroken";
    this.seq = seq;
    this.reason = reason;
  }
}

/** The contents of an entry (absent values are empty). */
export interface EntryContents {
  readonly deviceId?: string;
  readonly identityKey?: Uint8Array;
  readonly signingKey?: Uint8Array;
  readonly publicKey?: Uint8Array;
  readonly signature?: Uint8Array;
}

export interface Entry {
  readonly seq: number;
  readonly kind: string;
  readonly prevHash: Uint8Array;
  readonly hash: Uint8Array;
  readonly deviceId: string;
  readonly identityKey: Uint8Array;
  readonly signingKey: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly signature: Uint8Array;
}

const EMPTY = new Uint8Array(0);

/** The canonical encoding an entry's hash covers. */
export function entryBytes(
  accountId: string,
  seq: number,
  kind: string,
  prevHash: Uint8Array,
  contents: EntryContents = {},
): Uint8Array<ArrayBuffer> {
  if (prevHash.length !== 32) throw new RangeError("prev hash must be 32 bytes");
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError("seq must be a non-negative integer");
  return concat([
    frame(ascii(LOG_CONTEXT)),
    u64be(seq),
    frame(ascii(kind)),
    frame(ascii(accountId)),
    frame(ascii(contents.deviceId ?? "")),
    frame(contents.identityKey ?? EMPTY),
    frame(contents.signingKey ?? EMPTY),
    frame(contents.publicKey ?? EMPTY),
    frame(contents.signature ?? EMPTY),
    prevHash,
  ]);
}

/** The entry with these contents, its hash computed. */
export async function makeEntry(
  accountId: string,
  seq: number,
  kind: string,
  prevHash: Uint8Array,
  contents: EntryContents = {},
): Promise<Entry> {
  return {
    seq,
    kind,
    prevHash,
    hash: await sha256(entryBytes(accountId, seq, kind, prevHash, contents)),
    deviceId: contents.deviceId ?? "",
    identityKey: contents.identityKey ?? EMPTY,
    signingKey: contents.signingKey ?? EMPTY,
    publicKey: contents.publicKey ?? EMPTY,
    signature: contents.signature ?? EMPTY,
  };
}

/** An entry as the server answers it (keys base64url, hashes hex, absent values null). */
export interface WireEntry {
  seq: number;
  kind: string;
  device_id: string | null;
  identity_key: string | null;
  signing_key: string | null;
  public_key: string | null;
  signature: string | null;
  prev_hash: string;
  hash: string;
}

/** An entry from its JSON form; throws RangeError on a malformed field. */
export function entryFromWire(wire: WireEntry): Entry {
  const b64 = (value: string | null): Uint8Array => (value === null ? EMPTY : fromBase64Url(value));
  return {
    seq: wire.seq,
    kind: wire.kind,
    prevHash: fromHex(wire.prev_hash),
    hash: fromHex(wire.hash),
    deviceId: wire.device_id ?? "",
    identityKey: b64(wire.identity_key),
    signingKey: b64(wire.signing_key),
    publicKey: b64(wire.public_key),
    signature: b64(wire.signature),
  };
}

/** What a reader knows of a log after its first `seq` entries. */
export interface LogState {
  readonly accountId: string;
  readonly seq: number;
  readonly head: Uint8Array;
  readonly identityKey: Uint8Array | null;
  /** Active device id -> its signing key. */
  readonly devices: ReadonlyMap<string, Uint8Array>;
}

/** The state of a log no entry of which has been read. */
export function emptyState(accountId: string): LogState {
  return { accountId, seq: 0, head: ZERO_HASH, identityKey: null, devices: new Map() };
}

async function step(state: LogState, entry: Entry): Promise<LogState> {
  const seq = state.seq + 1;
  const broken = (reason: string): LogBroken => new LogBroken(seq, reason);

  if (entry.seq !== seq) throw broken(`expected seq ${seq}, got ${entry.seq}`);
  if (!equal(entry.prevHash, state.head)) {
    throw broken("prev hash is not the hash of the entry before (a fork or a rewrite)");
  }
  let expected: Entry;
  try {
    expected = await makeEntry(state.accountId, entry.seq, entry.kind, entry.prevHash, entry);
  } catch {
    throw broken("the entry cannot be encoded");
  }
  if (!equal(expected.hash, entry.hash)) throw broken("hash does not match the entry's contents");

  const devices = new Map(state.devices);
  let identity = state.identityKey;
  if (entry.kind === IDENTITY_SET || entry.kind === IDENTITY_RESET) {
    if ((entry.kind === IDENTITY_SET) !== (identity === null)) {
      throw broken(`${entry.kind} where the identity key is ${identity === null ? "unset" : "set"}`);
    }
    if (entry.deviceId || entry.signingKey.length || entry.publicKey.length || entry.signature.length) {
      throw broken("an identity entry carries only the identity key");
    }
    if (!(await isValidP256(entry.identityKey))) throw broken("the identity key is not a P-256 point");
    identity = entry.identityKey;
    devices.clear();
  } else if (entry.kind === DEVICE_ADDED) {
    if (identity === null) throw broken("a device added before any identity key");
    if (!entry.deviceId || devices.has(entry.deviceId) || entry.identityKey.length) {
      throw broken("a device added twice, or without an id");
    }
    const statement = deviceStatement(state.accountId, entry.deviceId, entry.signingKey, entry.publicKey);
    if (!(await verify(identity, statement, entry.signature))) {
      throw broken("the device is not signed by the identity key in force");
    }
    devices.set(entry.deviceId, entry.signingKey);
  } else if (entry.kind === DEVICE_REVOKED) {
    if (!devices.has(entry.deviceId)) throw broken("revokes a device that is not active");
    if (entry.identityKey.length || entry.signingKey.length || entry.publicKey.length || entry.signature.length) {
      throw broken("a revocation carries only the device id");
    }
    devices.delete(entry.deviceId);
  } else {
    throw broken(`unknown kind ${JSON.stringify(entry.kind)}`);
  }
  return { accountId: state.accountId, seq, head: entry.hash, identityKey: identity, devices };
}

/** The state after `entries`, which must follow `state` directly; else LogBroken. */
export async function extend(state: LogState, entries: Iterable<Entry>): Promise<LogState> {
  for (const entry of entries) state = await step(state, entry);
  return state;
}

/** A signed head (seq, hash) must be where the entries led; else LogBroken. */
export function checkHead(state: LogState, seq: number, head: Uint8Array): void {
  if (seq !== state.seq || !equal(head, state.head)) {
    throw new LogBroken(seq > state.seq ? state.seq + 1 : seq, "the signed head is elsewhere");
  }
}
