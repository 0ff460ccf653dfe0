/**
 * ES256 compact JWS verification against the server's JWK set
 * (docs/PROTOCOL.md, "Accounts and sessions"): what a client checks before
 * it trusts something the server signed, such as a key log's head.
 *
 * Refused, each with a stable `reason`:
 * - `malformed`: not three base64url segments, a header or payload that is not
 *   a JSON object, a signature that is not 64 bytes;
 * - `header`: a header parameter other than `alg`, `kid`, `typ` (so `crit`,
 *   `jku`, `jwk`, `x5u` are never followed);
 * - `alg`: anything but ES256 (`none` included);
 * - `typ`: not the expected `typ`;
 * - `kid`: no key of the JWK set has that `kid` (after one refetch, in
 *   `JwksCache`), or the key is not a P-256 key whose RFC 7638 thumbprint is its `kid`;
 * - `high_s`: `s` above n/2 (the server signs low s, so each token has one spelling);
 * - `signature`: the signature does not verify;
 * - `aud`: `aud` is not the expected audience;
 * - `claims` (key log heads): `sub`, `seq` or `head` is not the one expected.
 */

import { fromBase64Url, own, sha256, toBase64Url } from "./bytes.js";

export interface Jwk {
  kty: string;
  crv?: string;
  x?: string;
  y?: string;
  kid?: string;
  alg?: string;
  use?: string;
}

export interface Jwks {
  keys: Jwk[];
}

export class JwsError extends Error {
  readonly reason: string;

  constructor(reason: string, detail: string) {
    super(`JWS refused (${reason}): ${detail}`);
    this.name = "JwsError";
    this.reason = reason;
  }
}

export const KEY_LOG_TYP = "confide-key-log-head+jwt";
export const KEY_LOG_AUDIENCE = "confide:key-log";

/** The P-256 group order n, and n / 2 (the largest "low" s). */
const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const HALF_ORDER = P256_ORDER >> 1n;
const MAX_TOKEN_CHARS = 8192;
const HEADER_PARAMS = new Set(["alg", "kid", "typ"]);

interface Parsed {
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
  signingInput: Uint8Array;
  signature: Uint8Array;
}

function jsonObject(segment: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(fromBase64Url(segment)));
  } catch {
    throw new JwsError("malformed", `the ${what} is not base64url JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new JwsError("malformed", `the ${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function parse(compact: string): Parsed {
  if (typeof compact !== "string" || compact.length > MAX_TOKEN_CHARS) {
    throw new JwsError("malformed", "not a compact JWS of a sensible size");
  }
  const parts = compact.split(".");
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]+$/.test(p))) {
    throw new JwsError("malformed", "not three base64url segments");
  }
  const [h, p, s] = parts as [string, string, string];
  const header = jsonObject(h, "header");
  const claims = jsonObject(p, "payload");
  const signature = fromBase64Url(s);
  return { header, claims, signingInput: new TextEncoder().encode(`${h}.${p}`), signature };
}

/** The RFC 7638 thumbprint of a P-256 JWK (base64url SHA-256 of its canonical JSON). */
export async function thumbprint(jwk: Jwk): Promise<string> {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return toBase64Url(await sha256(new TextEncoder().encode(canonical)));
}

function bigintOf(bytes: Uint8Array): bigint {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return value;
}

async function importJwk(jwk: Jwk, kid: string): Promise<CryptoKey> {
  if (jwk.kty !== "EC" || jwk.crv !== "P-256" || typeof jwk.x !== "string" || typeof jwk.y !== "string") {
    throw new JwsError("kid", `key ${kid} is not a P-256 key`);
  }
  if (jwk.alg !== undefined && jwk.alg !== "ES256") throw new JwsError("kid", `key ${kid} is not for ES256`);
  if ((await thumbprint(jwk)) !== kid) throw new JwsError("kid", `key ${kid} is not its thumbprint`);
  try {
    return await globalThis.crypto.subtle.importKey(
      "jwk",
      { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y, ext: true },
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      ["verify"],
    );
  } catch {
    throw new JwsError("kid", `key ${kid} is not a point on P-256`);
  }
}

function checkHeader(header: Record<string, unknown>, typ: string): string {
  for (const name of Object.keys(header)) {
    if (!HEADER_PARAMS.has(name)) throw new JwsError("header", `header parameter ${JSON.stringify(name)}`);
  }
  if (header["alg"] !== "ES256") throw new JwsError("alg", `alg ${JSON.stringify(header["alg"])}`);
  if (header["typ"] !== typ) throw new JwsError("typ", `typ ${JSON.stringify(header["typ"])}`);
  const kid = header["kid"];
  if (typeof kid !== "string" || kid.length === 0) throw new JwsError("kid", "no kid");
  return kid;
}

async function verifyParsed(parsed: Parsed, key: Jwk, kid: string, aud: string): Promise<Record<string, unknown>> {
  const { signature } = parsed;
  if (signature.length !== 64) throw new JwsError("malformed", "the signature is not 64 bytes");
  const r = bigintOf(signature.subarray(0, 32));
  const s = bigintOf(signature.subarray(32));
  if (r === 0n || s === 0n || r >= P256_ORDER || s >= P256_ORDER) throw new JwsError("signature", "r or s out of range");
  if (s > HALF_ORDER) throw new JwsError("high_s", "s is above n/2");
  const publicKey = await importJwk(key, kid);
  const ok = await globalThis.crypto.subtle.verify(
    { name: "ECDSA", hash: "SHA-256" },
    publicKey,
    own(signature),
    own(parsed.signingInput),
  );
  if (!ok) throw new JwsError("signature", "the signature does not verify");
  if (parsed.claims["aud"] !== aud) throw new JwsError("aud", `aud ${JSON.stringify(parsed.claims["aud"])}`);
  return parsed.claims;
}

/** The claims of `compact` if it is an ES256 JWS of a key in `jwks` with this typ and aud; else JwsError. */
export async function verifyCompact(
  compact: string,
  jwks: Jwks,
  expect: { typ: string; aud: string },
): Promise<Record<string, unknown>> {
  const parsed = parse(compact);
  const kid = checkHeader(parsed.header, expect.typ);
  const key = jwks.keys.find((k) => k.kid === kid);
  if (key === undefined) throw new JwsError("kid", `unknown kid ${kid}`);
  return verifyParsed(parsed, key, kid, expect.aud);
}

/** A JWK set fetched on first use and fetched again, once per token, on an unknown kid. */
export class JwksCache {
  readonly #load: () => Promise<Jwks>;
  #jwks: Promise<Jwks> | null = null;

  constructor(load: () => Promise<Jwks>) {
    this.#load = load;
  }

  #fetch(): Promise<Jwks> {
    const pending = this.#load();
    this.#jwks = pending;
    pending.catch(() => {
      if (this.#jwks === pending) this.#jwks = null;
    });
    return pending;
  }

  async verify(compact: string, expect: { typ: string; aud: string }): Promise<Record<string, unknown>> {
    const parsed = parse(compact);
    const kid = checkHeader(parsed.header, expect.typ);
    let jwks = await (this.#jwks ?? this.#fetch());
    let key = jwks.keys.find((k) => k.kid === kid);
    if (key === undefined) {
      jwks = await this.#fetch();
      key = jwks.keys.find((k) => k.kid === kid);
    }
    if (key === undefined) throw new JwsError("kid", `unknown kid ${kid}`);
    return verifyParsed(parsed, key, kid, expect.aud);
  }
}

/**
 * Checks that `head.jws` is the server's signature of exactly this head of
 * `accountId`'s key log: typ `confide-key-log-head+jwt`, aud `confide:key-log`,
 * claims `{iss, aud, jti, iat, sub, seq, head}` with `sub` the account, `seq`
 * and `head` (64 hex digits) the head's.
 */
export async function verifyKeyLogHead(
  cache: JwksCache,
  accountId: string,
  head: { seq: number; hash: string; jws: string },
): Promise<void> {
  const claims = await cache.verify(head.jws, { typ: KEY_LOG_TYP, aud: KEY_LOG_AUDIENCE });
  const names = Object.keys(claims).sort().join(",");
  if (names !== "aud,head,iat,iss,jti,seq,sub") throw new JwsError("claims", `claims ${names}`);
  if (claims["sub"] !== accountId) throw new JwsError("claims", "sub is another account");
  if (claims["seq"] !== head.seq) throw new JwsError("claims", "seq is not the head's");
  if (claims["head"] !== head.hash) throw new JwsError("claims", "head is not the head's hash");
}
