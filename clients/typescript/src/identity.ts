/**
 * Identity keys and signed devices (docs/PROTOCOL.md, "Identity keys and
 * signed devices"); the same bytes as app/keys/statements.py.
 *
 * A device statement is
 *
 *     frame("confide device v1") || frame(account id) || frame(device id)
 *         || frame(signing key) || frame(public key)
 *
 * with ids as lower-case hyphenated UUID text in ASCII and keys as raw bytes
 * (signing key: P-256 SEC1 uncompressed, 65 bytes). The account's identity
 * key signs it with ECDSA P-256 / SHA-256; the signature is r || s.
 */

import { ascii, concat, frame, own } from "./bytes.js";

export const DEVICE_CONTEXT = "confide device v1";
/** SEC1 uncompressed P-256 point: 0x04 || x || y. */
export const P256_POINT_BYTES = 65;
/** r || s, 32 bytes each. */
export const SIGNATURE_BYTES = 64;

const ECDSA_KEY = { name: "ECDSA", namedCurve: "P-256" } as const;
const ECDSA_SHA256 = { name: "ECDSA", hash: "SHA-256" } as const;

/** What the identity key signs when it vouches for a device. */
export function deviceStatement(
  accountId: string,
  deviceId: string,
  signingKey: Uint8Array,
  publicKey: Uint8Array,
): Uint8Array<ArrayBuffer> {
  return concat([
    frame(ascii(DEVICE_CONTEXT)),
    frame(ascii(accountId)),
    frame(ascii(deviceId)),
    frame(signingKey),
    frame(publicKey),
  ]);
}

/** Whether `point` has the shape of an uncompressed SEC1 P-256 point. */
export function isP256Point(point: Uint8Array): boolean {
  return point.length === P256_POINT_BYTES && point[0] === 4;
}

/** The WebCrypto key for an uncompressed P-256 point; throws if it is not one on the curve. */
export async function importP256(point: Uint8Array): Promise<CryptoKey> {
  if (!isP256Point(point)) {
    throw new RangeError("must be an uncompressed P-256 point (65 bytes, starting 0x04)");
  }
  return globalThis.crypto.subtle.importKey("raw", own(point), ECDSA_KEY, true, ["verify"]);
}

/** Whether `point` is an uncompressed P-256 point on the curve. */
export async function isValidP256(point: Uint8Array): Promise<boolean> {
  try {
    await importP256(point);
    return true;
  } catch {
    return false;
  }
}

/** A new P-256 key pair for ECDSA (an identity key or a device signing key). */
export async function generateSigningKeyPair(extractable = false): Promise<CryptoKeyPair> {
  return globalThis.crypto.subtle.generateKey(ECDSA_KEY, extractable, ["sign", "verify"]);
}

/** The public key of a pair as its 65-byte SEC1 point. */
export async function exportP256(publicKey: CryptoKey): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await globalThis.crypto.subtle.exportKey("raw", publicKey));
}

/** The ECDSA P-256 / SHA-256 signature of `message`, as r || s (64 bytes). */
export async function sign(privateKey: CryptoKey, message: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await globalThis.crypto.subtle.sign(ECDSA_SHA256, privateKey, own(message)));
}

/** Whether `signature` (r || s) is `publicKey`'s ECDSA-SHA256 signature of `message`. */
export async function verify(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  if (signature.length !== SIGNATURE_BYTES) return false;
  if (signature.subarray(0, 32).every((b) => b === 0) || signature.subarray(32).every((b) => b === 0)) {
    return false;
  }
  let key: CryptoKey;
  try {
    key = await importP256(publicKey);
  } catch {
    return false;
  }
  try {
    return await globalThis.crypto.subtle.verify(ECDSA_SHA256, key, own(signature), own(message));
  } catch {
    return false;
  }
}

/** The identity key's signature over a device's statement (what registration sends). */
export async function signDevice(
  identityPrivateKey: CryptoKey,
  accountId: string,
  deviceId: string,
  signingKey: Uint8Array,
  publicKey: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  return sign(identityPrivateKey, deviceStatement(accountId, deviceId, signingKey, publicKey));
}
