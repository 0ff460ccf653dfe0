/**
 * An in-memory Delivery Service with the relay's semantics for one room
 * (docs/PROTOCOL.md, "The room socket"): a room-wide `seq`; one commit per
 * epoch (the clear epoch of a commit must be the room's, else
 * `stale_epoch` with the room's; another group's commit is `wrong_group`);
 * a Welcome delivered only to the devices whose KeyPackageRefs it lists
 * (handed out in this room, else `welcome_refused`); directed messages;
 * no echo of a broadcast to its sender, while a replay gives everything the
 * device may see, its own frames included; admission points; the room's
 * latest GroupInfo. Test scaffolding only: the server itself is tested in
 * tests/.
 */

import { equal, toHex } from "../../src/bytes.js";
import type { DeviceRef, Frame } from "../../src/group.js";
import { decodeKeyPackage, keyPackageRefOf, readHeader } from "../../src/mls.js";

export type SendResult =
  | { readonly ok: true; readonly seq: number }
  | { readonly ok: false; readonly code: "stale_epoch"; readonly epoch: bigint }
  | { readonly ok: false; readonly code: "wrong_group" | "welcome_refused" | "not_admitted" | "validation_error" };

export type PutResult = { readonly ok: true } | { readonly ok: false; readonly code: string; readonly epoch?: bigint };

interface Stored {
  readonly frame: Frame;
  /** The device ids it is for (a Welcome, a directed message); undefined for every admitted device. */
  readonly to: ReadonlySet<string> | undefined;
}

function key(device: DeviceRef): string {
  return `${device.accountId}:${device.deviceId}`;
}

export class FakeDS {
  readonly groupId: Uint8Array;
  #seq = 0;
  #epoch: bigint | null = null;
  #log: Stored[] = [];
  /** device key -> admission point (the latest seq when it was admitted). */
  #admitted = new Map<string, number>();
  #inboxes = new Map<string, Frame[]>();
  /** hex KeyPackageRef -> device id it was handed out for. */
  #refs = new Map<string, string>();
  #groupInfo: Uint8Array | undefined;

  constructor(groupId: Uint8Array) {
    this.groupId = groupId;
  }

  get seq(): number {
    return this.#seq;
  }

  /** The room's epoch: the one after the latest commit relayed, null before any. */
  get epoch(): bigint | null {
    return this.#epoch;
  }

  admit(device: DeviceRef): void {
    this.#admitted.set(key(device), this.#seq);
    this.#inboxes.set(key(device), []);
  }

  remove(device: DeviceRef): void {
    this.#admitted.delete(key(device));
    this.#inboxes.delete(key(device));
  }

  /** A claim: the server records the ref of each package it hands out in the room. */
  async handOut(device: DeviceRef, keyPackage: Uint8Array): Promise<Uint8Array> {
    this.#refs.set(toHex(await keyPackageRefOf(decodeKeyPackage(keyPackage))), device.deviceId);
    return keyPackage;
  }

  /** A broadcast `send`. */
  send(from: DeviceRef, ciphertext: Uint8Array): SendResult {
    if (!this.#admitted.has(key(from))) return { ok: false, code: "not_admitted" };
    const header = readHeader(ciphertext);
    let to: Set<string> | undefined;
    if (header !== null && (header.wireFormat === "private_message" || header.wireFormat === "public_message")) {
      if (header.contentType === "commit") {
        if (!equal(header.groupId, this.groupId)) return { ok: false, code: "wrong_group" };
        if (this.#epoch !== null && header.epoch !== this.#epoch) {
          return { ok: false, code: "stale_epoch", epoch: this.#epoch };
        }
        this.#epoch = header.epoch + 1n;
      }
    } else if (header !== null && header.wireFormat === "welcome") {
      to = new Set();
      for (const ref of header.refs) {
        const deviceId = this.#refs.get(toHex(ref));
        if (deviceId === undefined || ![...this.#admitted.keys()].some((k) => k.endsWith(`:${deviceId}`))) {
          return { ok: false, code: "welcome_refused" };
        }
        to.add(deviceId);
      }
    }
    return { ok: true, seq: this.#store(from, ciphertext, to) };
  }

  /** A directed `send`: each device gets only its own ciphertext (one seq each). */
  sendDirected(from: DeviceRef, recipients: ReadonlyMap<string, Uint8Array>): SendResult {
    if (!this.#admitted.has(key(from))) return { ok: false, code: "not_admitted" };
    let seq = 0;
    for (const [deviceId, ciphertext] of recipients) seq = this.#store(from, ciphertext, new Set([deviceId]));
    return { ok: true, seq };
  }

  #store(from: DeviceRef, ciphertext: Uint8Array, to: ReadonlySet<string> | undefined): number {
    const seq = ++this.#seq;
    const frame: Frame = {
      seq,
      sender: { account_id: from.accountId, device_id: from.deviceId },
      ciphertext: ciphertext.slice(),
    };
    this.#log.push({ frame, to });
    for (const [device, inbox] of this.#inboxes) {
      if (device === key(from)) continue;
      if (to !== undefined && !to.has(device.split(":")[1] ?? "")) continue;
      inbox.push(frame);
    }
    return seq;
  }

  /** The live frames delivered to a device since it last took them. */
  take(device: DeviceRef): Frame[] {
    const inbox = this.#inboxes.get(key(device)) ?? [];
    this.#inboxes.set(key(device), []);
    return inbox;
  }

  /** A `resume`: every frame with seq > after that the device may see, its own included. */
  replay(device: DeviceRef, after: number): Frame[] {
    const admittedAt = this.#admitted.get(key(device));
    if (admittedAt === undefined) return [];
    return this.#log
      .filter(({ frame }) => frame.seq > after && frame.seq > admittedAt)
      .filter(({ to }) => to === undefined || to.has(device.deviceId))
      .map(({ frame }) => frame);
  }

  putGroupInfo(groupInfo: Uint8Array): PutResult {
    const header = readHeader(groupInfo);
    if (header === null || header.wireFormat !== "group_info") return { ok: false, code: "validation_error" };
    if (!equal(header.groupId, this.groupId)) return { ok: false, code: "wrong_group" };
    const current = this.#epoch ?? 0n;
    if (header.epoch !== current) return { ok: false, code: "stale_epoch", epoch: current };
    this.#groupInfo = groupInfo.slice();
    return { ok: true };
  }

  getGroupInfo(): Uint8Array | undefined {
    return this.#groupInfo;
  }
}
