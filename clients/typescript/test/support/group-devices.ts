/**
 * Devices for the group engine's tests: each holds its signing key, its
 * KeyPackages' private parts, its RoomGroup (or a JoinBuffer before it has
 * one), and reads its frames from a FakeDS the way the room orchestration
 * will.
 */

import { equal, toHex } from "../../src/bytes.js";
import { type DeviceRef, type PendingCommit, type Processed, JoinBuffer, RoomGroup } from "../../src/group.js";
import {
  type AuthenticationService,
  type KeyPackage,
  type PrivateKeyPackage,
  type SigningKeyPair,
  cipherSuite,
  credentialDevice,
  deviceKeyPackage,
  encodeKeyPackage,
  generateDeviceSigningKey,
  keyPackageRefOf,
  readHeader,
} from "../../src/mls.js";
import type { Payload } from "../../src/payload.js";
import type { FakeDS, SendResult } from "./fake-ds.js";

/**
 * The verified key logs the tests trust: accountId:deviceId -> signing key.
 * A device not in the map is refused.
 */
export class KeyLogs {
  readonly keys = new Map<string, Uint8Array>();

  readonly auth: AuthenticationService = {
    validateCredential: async (credential, signaturePublicKey) => {
      const device = credentialDevice(credential);
      if (device === null) return false;
      const key = this.keys.get(`${device.accountId}:${device.deviceId}`);
      return key !== undefined && equal(key, signaturePublicKey);
    },
  };
}

/** An authentication service that accepts anything (what a careless or hostile client runs). */
export const acceptAll: AuthenticationService = { validateCredential: async () => true };

export const ROOM_GROUP = new TextEncoder().encode("a room's MLS group id: 32 bytes.");

export class Device {
  readonly ref: DeviceRef;
  readonly signing: SigningKeyPair;
  readonly logs: KeyLogs;
  readonly ds: FakeDS;
  group: RoomGroup | undefined;
  buffer = new JoinBuffer();
  readonly packages = new Map<string, { publicPackage: KeyPackage; privatePackage: PrivateKeyPackage }>();
  /** Everything its group reported, in order. */
  readonly seen: Processed[] = [];

  constructor(ds: FakeDS, logs: KeyLogs, options: { inKeyLog?: boolean; signing?: SigningKeyPair } = {}) {
    this.ds = ds;
    this.logs = logs;
    this.ref = { accountId: crypto.randomUUID(), deviceId: crypto.randomUUID() };
    this.signing = options.signing ?? generateDeviceSigningKey();
    if (options.inKeyLog ?? true) logs.keys.set(`${this.ref.accountId}:${this.ref.deviceId}`, this.signing.publicKey);
  }

  get name(): string {
    return this.ref.deviceId.slice(0, 8);
  }

  get sender(): { account_id: string; device_id: string } {
    return { account_id: this.ref.accountId, device_id: this.ref.deviceId };
  }

  joined(): RoomGroup {
    if (this.group === undefined) throw new Error(`${this.name} has no group`);
    return this.group;
  }

  async create(): Promise<void> {
    this.group = await RoomGroup.create({
      groupId: this.ds.groupId,
      self: this.ref,
      signing: this.signing,
      auth: this.logs.auth,
    });
    this.ds.admit(this.ref);
  }

  /** A fresh KeyPackage, as uploaded, then claimed in the room (the DS records its ref). */
  async claimKeyPackage(): Promise<KeyPackage> {
    const own = await deviceKeyPackage(this.ref.accountId, this.ref.deviceId, this.signing, await cipherSuite());
    this.packages.set(toHex(await keyPackageRefOf(own.publicPackage)), own);
    await this.ds.handOut(this.ref, encodeKeyPackage(own.publicPackage));
    return own.publicPackage;
  }

  /** Reads the live frames the DS delivered, joining from a Welcome when one names us. */
  async pump(): Promise<Processed[]> {
    const out: Processed[] = [];
    for (const frame of this.ds.take(this.ref)) {
      if (this.group !== undefined) {
        out.push(await this.group.process(frame));
        continue;
      }
      const header = readHeader(frame.ciphertext);
      if (header?.wireFormat === "welcome") {
        const ours = RoomGroup.welcomeRefs(frame.ciphertext)
          .map((ref) => this.packages.get(toHex(ref)))
          .find((own) => own !== undefined);
        if (ours !== undefined) {
          this.group = await RoomGroup.fromWelcome({
            groupId: this.ds.groupId,
            self: this.ref,
            auth: this.logs.auth,
            welcome: frame.ciphertext,
            keyPackage: ours,
          });
          out.push(...(await this.buffer.drain(this.group)));
          out.push(await this.group.process(frame));
          continue;
        }
      }
      this.buffer.add(frame);
    }
    this.seen.push(...out);
    return out;
  }

  /** Broadcasts an application message; returns its seq. */
  async send(payload: Payload): Promise<number> {
    const result = this.ds.send(this.ref, await this.joined().encrypt(payload));
    if (!result.ok) throw new Error(`send refused: ${result.code}`);
    return result.seq;
  }

  async say(text: string): Promise<number> {
    return this.send({ kind: "text", text });
  }

  /**
   * Sends a pending commit the way the orchestration does: on the ack, adopt
   * it, send its Welcome, upload its GroupInfo; on stale_epoch, discard it.
   */
  async sendCommit(pending: PendingCommit): Promise<SendResult> {
    const group = this.joined();
    const result = this.ds.send(this.ref, pending.commit);
    if (!result.ok) {
      this.seen.push(...(await group.discard(pending)));
      return result;
    }
    this.seen.push(...(await group.adopt(pending, result.seq)));
    if (pending.welcome !== undefined) {
      const welcome = this.ds.send(this.ref, pending.welcome);
      if (!welcome.ok) throw new Error(`Welcome refused: ${welcome.code}`);
    }
    const put = this.ds.putGroupInfo(pending.groupInfo);
    if (!put.ok) throw new Error(`GroupInfo refused: ${put.code}`);
    return result;
  }

  async commit(changes: Parameters<RoomGroup["commit"]>[0]): Promise<SendResult> {
    return this.sendCommit(await this.joined().commit(changes));
  }

  /** Joins (or rejoins, with resync) by external commit from the room's GroupInfo. */
  async joinExternally(resync: boolean): Promise<SendResult> {
    const groupInfo = this.ds.getGroupInfo();
    if (groupInfo === undefined) throw new Error("no GroupInfo");
    const joined = await RoomGroup.externalJoin({
      groupId: this.ds.groupId,
      self: this.ref,
      signing: this.signing,
      auth: this.logs.auth,
      groupInfo,
      resync,
      lastSeq: this.ds.seq,
    });
    this.group = joined.group;
    return this.sendCommit(joined.pending);
  }
}

/** The texts among results, in order. */
export function texts(results: readonly Processed[]): string[] {
  return results.flatMap((r) => (r.kind === "application" && r.payload.kind === "text" ? [r.payload.text] : []));
}

export function kinds(results: readonly Processed[]): string[] {
  return results.map((r) => (r.kind === "skipped" || r.kind === "refused" ? `${r.kind}:${r.reason}` : r.kind));
}
