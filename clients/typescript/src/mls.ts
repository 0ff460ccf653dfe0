/**
 * MLS (RFC 9420) for Confide: the one module that uses ts-mls, cipher suite 2
 * (MLS_128_DHKEMP256_AES128GCM_SHA256_P256) only. ts-mls 1.6.4 has had no
 * security audit; nothing else in the SDK imports it.
 *
 * A device's MLS signature key is its signing key from the key log (P-256,
 * SEC1 uncompressed). Its credential is a basic credential whose identity is
 * the ASCII text `<account id>:<device id>`. ts-mls accepts any credential by
 * default; every group made or joined here uses `keyLogAuthenticationService`
 * instead, which accepts a leaf only if its signature key is the signing key
 * of that device, active in the account's verified key log.
 */

import { p256 } from "@noble/curves/nist.js";
import {
  type AuthenticationService,
  type CiphersuiteImpl,
  type ClientState,
  type Credential,
  type KeyPackage,
  type PrivateKeyPackage,
  createApplicationMessage,
  createCommit,
  createGroup,
  decodeMlsMessage,
  defaultCapabilities,
  defaultLifetime,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackageWithKey,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  processPrivateMessage,
} from "ts-mls";
import { type ClientConfig, defaultClientConfig } from "ts-mls/clientConfig.js";
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";

import { ascii, equal } from "./bytes.js";

export const CIPHER_SUITE = "MLS_128_DHKEMP256_AES128GCM_SHA256_P256";

export type { ClientState, KeyPackage, PrivateKeyPackage };

/** The ts-mls implementation of suite 2. */
export async function cipherSuite(): Promise<CiphersuiteImpl> {
  return getCiphersuiteImpl(getCiphersuiteFromName(CIPHER_SUITE));
}

/** A device's signing key pair: a P-256 scalar and its SEC1 uncompressed point. */
export interface SigningKeyPair {
  readonly signKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

export function generateDeviceSigningKey(): SigningKeyPair {
  const signKey = p256.utils.randomSecretKey();
  return { signKey, publicKey: p256.getPublicKey(signKey, false) };
}

/** The basic credential of a device. */
export function deviceCredential(accountId: string, deviceId: string): Credential {
  return { credentialType: "basic", identity: ascii(`${accountId}:${deviceId}`) };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The (account id, device id) a credential names, or null if it is not a device credential. */
export function credentialDevice(credential: Credential): { accountId: string; deviceId: string } | null {
  if (credential.credentialType !== "basic") return null;
  const text = new TextDecoder("ascii", { fatal: false }).decode(credential.identity);
  const [accountId, deviceId, ...rest] = text.split(":");
  if (rest.length || !accountId || !deviceId || !UUID.test(accountId) || !UUID.test(deviceId)) return null;
  return { accountId, deviceId };
}

/**
 * Accepts a credential only when `deviceKey` (the device's signing key as
 * the account's verified key log has it, undefined for a device not active
 * there; `Contacts.deviceKey` answers this) is exactly this signature key.
 */
export function keyLogAuthenticationService(
  deviceKey: (accountId: string, deviceId: string) => Promise<Uint8Array | undefined>,
): AuthenticationService {
  return {
    async validateCredential(credential: Credential, signaturePublicKey: Uint8Array): Promise<boolean> {
      const device = credentialDevice(credential);
      if (device === null) return false;
      let signingKey: Uint8Array | undefined;
      try {
        signingKey = await deviceKey(device.accountId, device.deviceId);
      } catch {
        return false;
      }
      return signingKey !== undefined && equal(signingKey, signaturePublicKey);
    },
  };
}

/** The ts-mls client configuration with our authentication service. */
export function clientConfig(authService: AuthenticationService): ClientConfig {
  return { ...defaultClientConfig, authService };
}

/** A KeyPackage of a device, signed with its key-log signing key. */
export async function deviceKeyPackage(
  accountId: string,
  deviceId: string,
  signingKey: SigningKeyPair,
  cs: CiphersuiteImpl,
): Promise<{ publicPackage: KeyPackage; privatePackage: PrivateKeyPackage }> {
  return generateKeyPackageWithKey(
    deviceCredential(accountId, deviceId),
    defaultCapabilities(),
    defaultLifetime,
    [],
    { signKey: signingKey.signKey, publicKey: signingKey.publicKey },
    cs,
  );
}

/** A KeyPackage as it travels: an encoded MLSMessage of wire_format 5 (mls_key_package). */
export function encodeKeyPackage(keyPackage: KeyPackage): Uint8Array {
  return encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage });
}

/** The KeyPackage in an encoded MLSMessage; throws RangeError if it is not exactly one. */
export function decodeKeyPackage(bytes: Uint8Array): KeyPackage {
  let decoded: ReturnType<typeof decodeMlsMessage>;
  try {
    decoded = decodeMlsMessage(bytes, 0);
  } catch {
    throw new RangeError("not an encoded KeyPackage");
  }
  if (decoded === undefined || decoded[1] !== bytes.length || decoded[0].wireformat !== "mls_key_package") {
    throw new RangeError("not an encoded KeyPackage");
  }
  return decoded[0].keyPackage;
}

/** The KeyPackageRef (RFC 9420 §5.2) of a KeyPackage. */
export async function keyPackageRef(keyPackage: KeyPackage, cs: CiphersuiteImpl): Promise<Uint8Array> {
  return makeKeyPackageRef(keyPackage, cs.hash);
}

/** A new group whose only member is this device. */
export async function newGroup(
  groupId: Uint8Array,
  own: { publicPackage: KeyPackage; privatePackage: PrivateKeyPackage },
  config: ClientConfig,
  cs: CiphersuiteImpl,
): Promise<ClientState> {
  return createGroup(groupId, own.publicPackage, own.privatePackage, [], cs, config);
}

/** A commit adding these KeyPackages, and the Welcome for their devices (with the tree). */
export async function addMembers(state: ClientState, keyPackages: readonly KeyPackage[], cs: CiphersuiteImpl) {
  const result = await createCommit(
    { state, cipherSuite: cs },
    {
      extraProposals: keyPackages.map((keyPackage) => ({ proposalType: "add", add: { keyPackage } })),
      ratchetTreeExtension: true,
    },
  );
  if (result.welcome === undefined) throw new Error("the commit has no Welcome");
  return { state: result.newState, commit: result.commit, welcome: result.welcome };
}

/** The group state of a device that a Welcome adds. */
export async function joinFromWelcome(
  welcome: Parameters<typeof joinGroup>[0],
  own: { publicPackage: KeyPackage; privatePackage: PrivateKeyPackage },
  config: ClientConfig,
  cs: CiphersuiteImpl,
): Promise<ClientState> {
  return joinGroup(welcome, own.publicPackage, own.privatePackage, emptyPskIndex, cs, undefined, undefined, config);
}

/** An application message to the group. */
export async function encrypt(state: ClientState, plaintext: Uint8Array, cs: CiphersuiteImpl) {
  const { newState, privateMessage } = await createApplicationMessage(state, plaintext, cs);
  return { state: newState, message: privateMessage };
}

/** The plaintext of an application message, and the state after it. */
export async function decrypt(
  state: ClientState,
  message: Parameters<typeof processPrivateMessage>[1],
  cs: CiphersuiteImpl,
): Promise<{ state: ClientState; plaintext: Uint8Array }> {
  const result = await processPrivateMessage(state, message, emptyPskIndex, cs);
  if (result.kind !== "applicationMessage") throw new Error("not an application message");
  return { state: result.newState, plaintext: result.message };
}
