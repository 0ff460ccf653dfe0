/**
 * This installation's keys (docs/PROTOCOL.md, "Devices", "Identity keys and
 * signed devices", "MLS KeyPackages").
 *
 * - The account's identity key is a WebCrypto ECDSA P-256 key pair kept in
 *   the store under `identity/<account id>` (non-extractable where the store
 *   keeps key objects). It never leaves the installation that made it: a
 *   second device is linked by a device that holds it, which signs the new
 *   device's statement.
 * - The device's signing key is its MLS signature key (raw P-256 scalar and
 *   SEC1 point, as ts-mls takes them). The device's `public_key` on the wire
 *   is the same point: MLS carries the device's encryption keys in its
 *   KeyPackages, so no other long-term public key is needed.
 * - KeyPackages: the private parts of those uploaded are kept, sealed, under
 *   their KeyPackageRef until the package is used.
 *
 * Every value is written through `sealedStore`, so a plain store may be passed.
 */

import { fromBase64Url, toBase64Url, toHex } from "./bytes.js";
import { ProblemError } from "./api.js";
import type { Api, DeviceOut } from "./api.js";
import { exportP256, generateSigningKeyPair, isValidP256, signDevice } from "./identity.js";
import {
  type KeyPackage,
  type PrivateKeyPackage,
  type SigningKeyPair,
  cipherSuite,
  decodeKeyPackage,
  deviceKeyPackage,
  encodeKeyPackage,
  generateDeviceSigningKey,
  keyPackageRef,
} from "./mls.js";
import { type Store, sealedStore } from "./store.js";

/** The account already has an identity key that this store lacks: link this device from one that holds it. */
export class NeedsLink extends Error {
  readonly accountId: string;

  constructor(accountId: string) {
    super("this account's identity key is on another device: link this one from there");
    this.name = "NeedsLink";
    this.accountId = accountId;
  }
}

/** A link code that cannot be read, or a link that the account's device list does not show (yet). */
export class LinkError extends Error {
  readonly reason: "bad_code" | "not_approved" | "no_link_pending";

  constructor(reason: "bad_code" | "not_approved" | "no_link_pending", detail: string) {
    super(detail);
    this.name = "LinkError";
    this.reason = reason;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const identityName = (accountId: string): string => `identity/${accountId}`;
const identityPublicKey = (accountId: string): string => `identity-public/${accountId}`;
const deviceKey = (accountId: string): string => `device/${accountId}`;
const linkKey = (accountId: string): string => `link/${accountId}`;

interface StoredDevice {
  device_id: string;
  sign_key: string;
  public_key: string;
}

function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

function decodeJson<T>(bytes: Uint8Array): T {
  return JSON.parse(decoder.decode(bytes)) as T;
}

function newDeviceId(): string {
  return globalThis.crypto.randomUUID();
}

async function readDevice(store: Store, key: string): Promise<{ deviceId: string; signing: SigningKeyPair } | null> {
  const bytes = await store.get(key);
  if (bytes === undefined) return null;
  const stored = decodeJson<StoredDevice>(bytes);
  return {
    deviceId: stored.device_id,
    signing: { signKey: fromBase64Url(stored.sign_key), publicKey: fromBase64Url(stored.public_key) },
  };
}

async function writeDevice(store: Store, key: string, deviceId: string, signing: SigningKeyPair): Promise<void> {
  const stored: StoredDevice = {
    device_id: deviceId,
    sign_key: toBase64Url(signing.signKey),
    public_key: toBase64Url(signing.publicKey),
  };
  await store.put(key, encodeJson(stored));
}

/** Whether the account has an identity key on the server (its own key log is not empty). */
async function accountHasIdentity(api: Api, accountId: string): Promise<boolean> {
  const view = await api.keyLog(accountId, 0);
  return view.head !== null;
}

async function newIdentity(store: Store): Promise<{ privateKey: CryptoKey; publicKey: Uint8Array }> {
  const pair = await generateSigningKeyPair(!store.keepsKeyObjects);
  const publicKey = await exportP256(pair.publicKey);
  return { privateKey: pair.privateKey, publicKey };
}

async function keepIdentity(store: Store, accountId: string, identity: { privateKey: CryptoKey; publicKey: Uint8Array }) {
  await store.putKey(identityName(accountId), identity.privateKey);
  await store.put(identityPublicKey(accountId), identity.publicKey);
}

interface StoredPackage {
  key_package: string;
  init_private_key: string;
  hpke_private_key: string;
}

export class Device {
  readonly accountId: string;
  readonly deviceId: string;
  readonly signing: SigningKeyPair;
  readonly #store: Store;

  private constructor(store: Store, accountId: string, deviceId: string, signing: SigningKeyPair) {
    this.#store = store;
    this.accountId = accountId;
    this.deviceId = deviceId;
    this.signing = signing;
  }

  /** The device of `accountId` kept in `store`, or null if none was registered there. */
  static async load(store: Store, accountId: string): Promise<Device | null> {
    const sealed = await sealedStore(store);
    const stored = await readDevice(sealed, deviceKey(accountId));
    return stored === null ? null : new Device(sealed, accountId, stored.deviceId, stored.signing);
  }

  /**
   * Registers a new device of the account `api` is logged in to. The first
   * device makes the identity key; a later one needs the identity key in
   * this store, else NeedsLink.
   */
  static async register(api: Api, store: Store, accountId: string, label: string): Promise<Device> {
    const sealed = await sealedStore(store);
    const privateKey = await sealed.getKey(identityName(accountId));
    const publicKey = await sealed.get(identityPublicKey(accountId));
    const hasIdentity = await accountHasIdentity(api, accountId);
    const deviceId = newDeviceId();
    const signing = generateDeviceSigningKey();
    let identityKey: Uint8Array | undefined;
    let signer: CryptoKey;
    if (privateKey !== undefined && publicKey !== undefined) {
      signer = privateKey;
      if (!hasIdentity) identityKey = publicKey;
    } else {
      if (hasIdentity) throw new NeedsLink(accountId);
      const identity = await newIdentity(sealed);
      signer = identity.privateKey;
      identityKey = identity.publicKey;
      await keepIdentity(sealed, accountId, identity);
    }
    const signature = await signDevice(signer, accountId, deviceId, signing.publicKey, signing.publicKey);
    const body = {
      device_id: deviceId,
      label,
      public_key: toBase64Url(signing.publicKey),
      signing_key: toBase64Url(signing.publicKey),
      signature: toBase64Url(signature),
      ...(identityKey === undefined ? {} : { identity_key: toBase64Url(identityKey) }),
    };
    try {
      await api.registerDevice(body);
    } catch (error) {
      if (error instanceof ProblemError && error.code === "identity_key_exists") throw new NeedsLink(accountId);
      throw error;
    }
    await writeDevice(sealed, deviceKey(accountId), deviceId, signing);
    return new Device(sealed, accountId, deviceId, signing);
  }

  /**
   * Replaces the account's identity key (a lost or compromised one): every
   * other device is revoked and this new one becomes the account's only
   * device. Contacts see the key change in the key log.
   */
  static async resetIdentity(api: Api, store: Store, accountId: string, label: string): Promise<Device> {
    const sealed = await sealedStore(store);
    const identity = await newIdentity(sealed);
    const deviceId = newDeviceId();
    const signing = generateDeviceSigningKey();
    const signature = await signDevice(identity.privateKey, accountId, deviceId, signing.publicKey, signing.publicKey);
    await api.resetIdentity({
      identity_key: toBase64Url(identity.publicKey),
      device: {
        device_id: deviceId,
        label,
        public_key: toBase64Url(signing.publicKey),
        signing_key: toBase64Url(signing.publicKey),
        signature: toBase64Url(signature),
      },
    });
    await keepIdentity(sealed, accountId, identity);
    await writeDevice(sealed, deviceKey(accountId), deviceId, signing);
    return new Device(sealed, accountId, deviceId, signing);
  }

  /**
   * Starts linking this installation as another device of the account. The
   * `code` (base64url of the new device's id, label and keys; no secret) is
   * carried to a device holding the identity key, which passes it to
   * `approveLink`; then `finish`, with this installation logged in to the
   * account, checks that the device is registered and keeps it. The identity
   * key is not transferred: this device cannot link others.
   */
  static async linkRequest(
    store: Store,
    accountId: string,
    label: string,
  ): Promise<{ code: string; finish: (api: Api) => Promise<Device> }> {
    const sealed = await sealedStore(store);
    const deviceId = newDeviceId();
    const signing = generateDeviceSigningKey();
    await writeDevice(sealed, linkKey(accountId), deviceId, signing);
    const code = toBase64Url(
      encodeJson({
        device_id: deviceId,
        label,
        signing_key: toBase64Url(signing.publicKey),
        public_key: toBase64Url(signing.publicKey),
      }),
    );
    return { code, finish: (api: Api) => Device.#finishLink(api, sealed, accountId) };
  }

  static async #finishLink(api: Api, sealed: Store, accountId: string): Promise<Device> {
    const pending = await readDevice(sealed, linkKey(accountId));
    if (pending === null) throw new LinkError("no_link_pending", "no link of this account is pending here");
    const devices: DeviceOut[] = await api.devices();
    const registered = devices.find((d) => d.device_id === pending.deviceId);
    if (registered === undefined || registered.signing_key !== toBase64Url(pending.signing.publicKey)) {
      throw new LinkError("not_approved", "the device is not registered yet: approve the code on a linked device");
    }
    await writeDevice(sealed, deviceKey(accountId), pending.deviceId, pending.signing);
    await sealed.delete(linkKey(accountId));
    return new Device(sealed, accountId, pending.deviceId, pending.signing);
  }

  /** Registers the device a link `code` describes, signed by this store's identity key (else NeedsLink). */
  async approveLink(api: Api, code: string): Promise<void> {
    let request: { device_id: string; label: string; signing_key: string; public_key: string };
    let signingKey: Uint8Array;
    let publicKey: Uint8Array;
    try {
      request = decodeJson(fromBase64Url(code));
      if (
        typeof request.device_id !== "string" ||
        !UUID.test(request.device_id) ||
        typeof request.label !== "string" ||
        typeof request.signing_key !== "string" ||
        typeof request.public_key !== "string"
      ) {
        throw new RangeError("bad fields");
      }
      signingKey = fromBase64Url(request.signing_key);
      publicKey = fromBase64Url(request.public_key);
      if (!(await isValidP256(signingKey))) throw new RangeError("not a P-256 point");
    } catch {
      throw new LinkError("bad_code", "not a device link code");
    }
    const identity = await this.#store.getKey(identityName(this.accountId));
    if (identity === undefined) throw new NeedsLink(this.accountId);
    const signature = await signDevice(identity, this.accountId, request.device_id, signingKey, publicKey);
    await api.registerDevice({
      device_id: request.device_id,
      label: request.label,
      public_key: request.public_key,
      signing_key: request.signing_key,
      signature: toBase64Url(signature),
    });
  }

  // -- KeyPackages ---------------------------------------------------------------------------

  #packagePrefix(): string {
    return `key-package/${this.accountId}/${this.deviceId}/`;
  }

  #lastResortKey(): string {
    return `key-package-last-resort/${this.accountId}/${this.deviceId}`;
  }

  async #keep(pkg: { publicPackage: KeyPackage; privatePackage: PrivateKeyPackage }, ref: Uint8Array): Promise<void> {
    const stored: StoredPackage = {
      key_package: toBase64Url(encodeKeyPackage(pkg.publicPackage)),
      init_private_key: toBase64Url(pkg.privatePackage.initPrivateKey),
      hpke_private_key: toBase64Url(pkg.privatePackage.hpkePrivateKey),
    };
    await this.#store.put(this.#packagePrefix() + toHex(ref), encodeJson(stored));
  }

  /**
   * Keeps the server's stock of this device's KeyPackages: below `low`
   * (default 5) it uploads new ones up to `target` (default 20, at most 100),
   * and a last-resort package when the device has none. Answers how many it uploaded.
   */
  async topUp(api: Api, opts: { target?: number; low?: number } = {}): Promise<number> {
    const target = Math.min(opts.target ?? 20, 100);
    const low = opts.low ?? 5;
    const stock = await api.keyPackageStock(this.deviceId);
    const cs = await cipherSuite();
    const fresh: Uint8Array[] = [];
    if (stock.count < low) {
      for (let i = stock.count; i < target; i++) {
        const pkg = await deviceKeyPackage(this.accountId, this.deviceId, this.signing, cs);
        await this.#keep(pkg, await keyPackageRef(pkg.publicPackage, cs));
        fresh.push(encodeKeyPackage(pkg.publicPackage));
      }
    }
    let lastResort: Uint8Array | undefined;
    if (!stock.last_resort) {
      const pkg = await deviceKeyPackage(this.accountId, this.deviceId, this.signing, cs);
      const ref = await keyPackageRef(pkg.publicPackage, cs);
      await this.#keep(pkg, ref);
      await this.#store.put(this.#lastResortKey(), ref);
      lastResort = encodeKeyPackage(pkg.publicPackage);
    }
    if (fresh.length === 0 && lastResort === undefined) return 0;
    await api.uploadKeyPackages(this.deviceId, fresh, lastResort);
    return fresh.length + (lastResort === undefined ? 0 : 1);
  }

  /** The KeyPackage with this ref and its private part, if this device made it and still keeps it. */
  async packageFor(ref: Uint8Array): Promise<{ publicPackage: KeyPackage; privatePackage: PrivateKeyPackage } | undefined> {
    const bytes = await this.#store.get(this.#packagePrefix() + toHex(ref));
    if (bytes === undefined) return undefined;
    const stored = decodeJson<StoredPackage>(bytes);
    return {
      publicPackage: decodeKeyPackage(fromBase64Url(stored.key_package)),
      privatePackage: {
        initPrivateKey: fromBase64Url(stored.init_private_key),
        hpkePrivateKey: fromBase64Url(stored.hpke_private_key),
        signaturePrivateKey: this.signing.signKey,
      },
    };
  }

  /** Forgets a used KeyPackage's private part; the current last-resort one is kept (it may be handed out again). */
  async forgetPackage(ref: Uint8Array): Promise<void> {
    const lastResort = await this.#store.get(this.#lastResortKey());
    if (lastResort !== undefined && toHex(lastResort) === toHex(ref)) return;
    await this.#store.delete(this.#packagePrefix() + toHex(ref));
  }

  /** The refs (hex) of the KeyPackages whose private parts this device keeps. */
  async packageRefs(): Promise<string[]> {
    const prefix = this.#packagePrefix();
    return (await this.#store.keys(prefix)).map((k) => k.slice(prefix.length));
  }
}
