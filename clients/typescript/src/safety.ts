/**
 * Safety numbers (docs/PROTOCOL.md, "Safety numbers"); the same digits as
 * app/keys/safety.py. For each account, 30 digits:
 *
 *     d = SHA-512(frame("confide safety number v1") || frame(identity key) || frame(account id))
 *     5200 times: d = SHA-512(d || identity key)
 *     d[0:30] as six 5-byte big-endian chunks, each mod 100000 as 5 digits
 *
 * The safety number is the two halves in ascending order: 60 digits.
 */

import { ascii, concat, frame, sha512 } from "./bytes.js";

export const VERSION = "confide safety number v1";
export const ITERATIONS = 5200;
export const GROUPS = 12;

/** The 30 digits of one account's identity key. */
export async function half(identityKey: Uint8Array, accountId: string): Promise<string> {
  let digest = await sha512(concat([frame(ascii(VERSION)), frame(identityKey), frame(ascii(accountId))]));
  for (let i = 0; i < ITERATIONS; i++) digest = await sha512(concat([digest, identityKey]));
  let digits = "";
  for (let offset = 0; offset < 30; offset += 5) {
    let chunk = 0n;
    for (const byte of digest.subarray(offset, offset + 5)) chunk = (chunk << 8n) | BigInt(byte);
    digits += (chunk % 100000n).toString().padStart(5, "0");
  }
  return digits;
}

/** The 60-digit safety number of two accounts, the same from either side. */
export async function safetyNumber(
  identityKey: Uint8Array,
  accountId: string,
  otherIdentityKey: Uint8Array,
  otherAccountId: string,
): Promise<string> {
  const halves = [await half(identityKey, accountId), await half(otherIdentityKey, otherAccountId)];
  halves.sort();
  return halves.join("");
}

/** The safety number as 12 groups of 5 digits, as people read it. */
export function groups(number: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < number.length; i += 5) out.push(number.slice(i, i + 5));
  return out;
}
