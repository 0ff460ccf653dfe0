/**
 * A room as an app sees it: the socket, the room's MLS group, and the rules
 * that keep the group equal to the room (docs/E2EE.md, "Membership").
 *
 * - Every change of the group state runs on one queue, in the order frames
 *   arrive (which is the room's `seq` order), and is persisted before the
 *   next frame is handled.
 * - A host device keeps the group equal to the admitted participants'
 *   devices: it adds, by KeyPackage and Welcome, each device the room admits,
 *   and removes each device the room no longer has. Every device it adds is
 *   checked against its account's verified key log first.
 * - A device without group state joins by the Welcome a host sends it, or,
 *   if its leaf is still in the group (it lost its state), by an external
 *   commit from the room's GroupInfo.
 * - The committer uploads the GroupInfo of each epoch it begins.
 */

import { type Api, ProblemError, type Room as RoomView } from "./api.js";
import { equal, fromBase64Url, toBase64Url } from "./bytes.js";
import type { Contacts } from "./contacts.js";
import type { Device } from "./device.js";
import { JoinBuffer, type PendingCommit, type Processed, RoomGroup } from "./group.js";
import { type AuthenticationService, type KeyPackage, credentialDevice, decodeKeyPackage, readHeader } from "./mls.js";
import type { Payload } from "./payload.js";
import {
  type MessageFrame,
  RoomSocket,
  SendRefused,
  type ServerFrame,
  type WebSocketFactory,
  type WelcomeFrame,
  type WireParticipant,
  newMessageId,
} from "./socket.js";
import type { Store } from "./store.js";

export interface Participant {
  accountId: string;
  displayName: string;
  role: string;
  admitted: boolean;
  online: boolean;
  devices: string[];
}

export interface RoomEvents {
  waiting: Record<string, never>;
  admitted: Record<string, never>;
  ready: { epoch: bigint };
  message: {
    seq: number;
    sender: { accountId: string; deviceId: string; displayName: string };
    text?: string;
    bytes?: Uint8Array;
    own: boolean;
  };
  signal: { from: { accountId: string; deviceId: string }; bytes: Uint8Array };
  presence: { event: string; accountId: string; deviceId?: string };
  participants: { participants: Participant[] };
  ending: { endsAt: string };
  ended: Record<string, never>;
  removed: Record<string, never>;
  keyChanged: { accountId: string; wasVerified: boolean };
  error: { code: string; detail: string };
}

type Handler<K extends keyof RoomEvents> = (event: RoomEvents[K]) => void;

export interface RoomContext {
  readonly api: Api;
  readonly store: Store;
  readonly device: Device;
  readonly contacts: Contacts;
  readonly auth: AuthenticationService;
  readonly webSocket: WebSocketFactory;
  /** Milliseconds to wait before reconnecting after the n-th failure in a row. */
  readonly backoff?: (attempt: number) => number;
}

/** Close codes after which the room does not reconnect (docs/PROTOCOL.md). */
const FINAL = new Set([4003, 4004, 4010, 4011, 4012, 4013, 1002, 1008, 1009]);
const ROOM_GONE = new Set([4004, 4010]);

interface Member {
  accountId: string;
  displayName: string;
  role: string;
  admitted: boolean;
  online: boolean;
  devices: Set<string>;
}

export class Room {
  readonly id: string;
  readonly self: { accountId: string; deviceId: string };
  state: "connecting" | "waiting" | "admitted" | "ended" = "connecting";
  private role = "participant";
  private group: RoomGroup | null = null;
  private groupId: Uint8Array = new Uint8Array();
  private readonly members = new Map<string, Member>();
  private readonly handlers = new Map<keyof RoomEvents, Set<(event: never) => void>>();
  private socket: RoomSocket | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private buffer = new JoinBuffer();
  private committing = false;
  private reconcileAgain = false;
  private joining = false;
  /** Devices whose KeyPackage or key log failed a check: not added until their log changes. */
  private readonly refused = new Set<string>();
  private closedByApp = false;
  private failures = 0;
  private readyFired = false;

  constructor(
    private readonly ctx: RoomContext,
    roomId: string,
  ) {
    this.id = roomId;
    this.self = { accountId: ctx.device.accountId, deviceId: ctx.device.deviceId };
  }

  get secure(): boolean {
    return this.group !== null;
  }

  on<K extends keyof RoomEvents>(type: K, handler: Handler<K>): () => void {
    let set = this.handlers.get(type);
    if (set === undefined) {
      set = new Set();
      this.handlers.set(type, set);
    }
    set.add(handler as (event: never) => void);
    return () => set.delete(handler as (event: never) => void);
  }

  participants(): Participant[] {
    return [...this.members.values()].map((m) => ({
      accountId: m.accountId,
      displayName: m.displayName,
      role: m.role,
      admitted: m.admitted,
      online: m.online,
      devices: [...m.devices].sort(),
    }));
  }

  /** The devices in the room's encrypted group as this device sees it: those that can read what it sends. */
  groupDevices(): string[] {
    return this.group === null ? [] : this.group.members().map((m) => m.deviceId).sort();
  }

  /** Loads the stored group state and opens the socket. */
  async start(): Promise<void> {
    const view: RoomView = await this.ctx.api.room(this.id);
    this.groupId = fromBase64Url(view.mls_group_id);
    const stored = await this.ctx.store.get(this.stateKey());
    if (stored !== undefined) {
      try {
        this.group = await RoomGroup.decode(stored, this.ctx.auth);
      } catch {
        await this.ctx.store.delete(this.stateKey());
      }
    }
    await this.connect();
  }

  /**
   * Sends text or bytes to everyone in the room; resolves once the server has
   * it, after a `message` event with `own: true` (the room never echoes a
   * device's own messages back to it).
   */
  async send(content: string | Uint8Array): Promise<void> {
    const payload: Payload = typeof content === "string" ? { kind: "text", text: content } : { kind: "bytes", bytes: content };
    const ciphertext = await this.run(async () => this.encrypt(payload));
    const seq = await this.requireSocket().broadcast(newMessageId(), ciphertext);
    const displayName = this.members.get(this.self.accountId)?.displayName ?? "";
    const sender = { ...this.self, displayName };
    this.emit(
      "message",
      typeof content === "string"
        ? { seq, sender, text: content, own: true }
        : { seq, sender, bytes: content, own: true },
    );
  }

  /** Sends bytes to one device only (WebRTC signalling). */
  async sendTo(deviceId: string, bytes: Uint8Array): Promise<void> {
    const ciphertext = await this.run(async () => {
      const group = this.requireGroup();
      const sealed = (await group.encryptFor([deviceId], { kind: "signal", bytes })).get(deviceId);
      await this.persist();
      if (sealed === undefined) throw new Error("no directed message was made");
      return toBase64Url(sealed);
    });
    await this.requireSocket().direct(newMessageId(), { [deviceId]: ciphertext });
    if (this.group?.needsUpdate === true) void this.run(async () => this.reconcile());
  }

  close(): void {
    this.closedByApp = true;
    this.socket?.close(1000, "");
    this.socket = null;
  }

  // -- internals ------------------------------------------------------------

  private stateKey(): string {
    return `room/${this.self.accountId}/${this.self.deviceId}/${this.id}`;
  }

  private emit<K extends keyof RoomEvents>(type: K, event: RoomEvents[K]): void {
    for (const handler of this.handlers.get(type) ?? []) {
      try {
        (handler as Handler<K>)(event);
      } catch {
        // An app's handler failing must not stop the room.
      }
    }
  }

  private run<T>(task: () => Promise<T>): Promise<T> {
    const next = this.queue.then(task, task);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private requireSocket(): RoomSocket {
    if (this.socket === null || !this.socket.open) throw new Error("the room is not connected");
    return this.socket;
  }

  private requireGroup(): RoomGroup {
    if (this.group === null) throw new Error("not yet in the room's encrypted group");
    return this.group;
  }

  private async encrypt(payload: Payload): Promise<string> {
    const bytes = await this.requireGroup().encrypt(payload);
    await this.persist();
    return toBase64Url(bytes);
  }

  private async persist(): Promise<void> {
    if (this.group === null) await this.ctx.store.delete(this.stateKey());
    else await this.ctx.store.put(this.stateKey(), this.group.encode());
  }

  private async connect(): Promise<void> {
    const issued = await this.ctx.api.roomToken(this.id, this.self.deviceId);
    const { socket, welcome } = await RoomSocket.open({
      url: issued.ws_url,
      token: issued.token,
      webSocket: this.ctx.webSocket,
      onFrame: (frame) => this.frame(frame),
      onClose: (code, reason) => this.closed(code, reason),
    });
    this.socket = socket;
    this.failures = 0;
    await this.run(async () => this.welcomed(welcome));
  }

  private closed(code: number, reason: string): void {
    this.socket = null;
    if (this.closedByApp || this.state === "ended") return;
    if (ROOM_GONE.has(code)) {
      this.end();
      return;
    }
    if (code === 4003) {
      this.state = "ended";
      this.emit("removed", {});
      return;
    }
    if (FINAL.has(code)) {
      this.emit("error", { code: `closed_${code}`, detail: reason });
      return;
    }
    this.reconnect();
  }

  private reconnect(): void {
    const attempt = this.failures++;
    const delay = this.ctx.backoff?.(attempt) ?? Math.min(30_000, 250 * 2 ** attempt);
    setTimeout(() => {
      if (this.closedByApp || this.state === "ended") return;
      this.connect().catch((error: unknown) => {
        const code = error instanceof Error && "code" in error ? String((error as { code: unknown }).code) : "";
        if (["room_ended", "not_found"].includes(code)) this.end();
        else if (["forbidden", "consent_required"].includes(code)) this.emit("removed", {});
        else this.reconnect();
      });
    }, delay);
  }

  private end(): void {
    if (this.state === "ended") return;
    this.state = "ended";
    this.emit("ended", {});
  }

  private member(participant: WireParticipant): Member {
    return {
      accountId: participant.account_id,
      displayName: participant.display_name,
      role: participant.role,
      admitted: participant.admitted,
      online: participant.online,
      devices: new Set(participant.devices.map((d) => d.device_id)),
    };
  }

  private participantsChanged(): void {
    this.emit("participants", { participants: this.participants() });
  }

  private async welcomed(welcome: WelcomeFrame): Promise<void> {
    this.role = welcome.you.role;
    this.members.clear();
    for (const participant of welcome.participants) this.members.set(participant.account_id, this.member(participant));
    this.participantsChanged();
    if (welcome.state === "waiting") {
      // A device in the waiting room is no member of the group (a host removes
      // it): group state kept from an earlier admission is stale. Once admitted
      // again, it joins as a newcomer does.
      if (this.group !== null) {
        this.group = null;
        this.readyFired = false;
        await this.persist();
      }
      this.state = "waiting";
      this.emit("waiting", {});
      return;
    }
    await this.admitted();
  }

  private async admitted(): Promise<void> {
    const first = this.state !== "admitted";
    this.state = "admitted";
    if (first) this.emit("admitted", {});
    await this.ctx.device.topUp(this.ctx.api).catch(() => 0);
    const socket = this.socket;
    if (socket === null) return;
    if (this.group !== null) {
      socket.resume(this.group.lastSeq);
      this.ready();
      return;
    }
    // Without group state: replay what is kept for this device (a Welcome
    // may be waiting for it), and find out whether a group exists.
    this.buffer = new JoinBuffer();
    socket.resume(0);
    await this.joinWithoutState();
  }

  private async joinWithoutState(): Promise<void> {
    if (this.group !== null || this.joining) return;
    const groupInfo = await this.ctx.api.groupInfo(this.id);
    if (groupInfo === null) {
      if (this.role !== "host") return; // the host creates the group; wait for its Welcome
      this.group = await RoomGroup.create({
        groupId: this.groupId,
        self: this.self,
        signing: this.ctx.device.signing,
        auth: this.ctx.auth,
      });
      await this.persist();
      await this.ctx.api.putGroupInfo(this.id, await this.group.groupInfo());
      this.ready();
      await this.reconcile();
      return;
    }
    const ours = RoomGroup.treeHasSigningKey(groupInfo, this.ctx.device.signing.publicKey);
    if (!ours && this.role !== "host") return; // a host adds this device; wait for its Welcome
    await this.externalJoin(groupInfo, ours);
  }

  private async externalJoin(groupInfo: Uint8Array, resync: boolean): Promise<void> {
    this.joining = true;
    try {
      const joined = await RoomGroup.externalJoin({
        groupId: this.groupId,
        self: this.self,
        signing: this.ctx.device.signing,
        auth: this.ctx.auth,
        groupInfo,
        resync,
      });
      let seq: number;
      try {
        seq = await this.requireSocket().broadcast(newMessageId(), toBase64Url(joined.commit));
      } catch (error) {
        if (error instanceof SendRefused && error.code === "stale_epoch") {
          // Someone committed first: try again from the GroupInfo of the new epoch.
          this.joining = false;
          setTimeout(() => void this.run(async () => this.joinWithoutState()), 50);
          return;
        }
        throw error;
      }
      const held = await joined.group.adopt(joined.pending, seq);
      this.group = joined.group;
      await this.persist();
      await this.ctx.api.putGroupInfo(this.id, joined.pending.groupInfo);
      this.ready();
      await this.results(held);
      await this.drain();
    } finally {
      this.joining = false;
    }
  }

  private ready(): void {
    if (this.group === null) return;
    if (!this.readyFired) {
      this.readyFired = true;
      this.emit("ready", { epoch: this.group.epoch });
    }
  }

  private frame(frame: ServerFrame): void {
    void this.run(async () => this.handle(frame)).catch((error: unknown) => {
      this.emit("error", { code: "client_error", detail: error instanceof Error ? error.message : String(error) });
    });
  }

  private async handle(frame: ServerFrame): Promise<void> {
    switch (frame.type) {
      case "message":
        await this.message(frame);
        return;
      case "presence":
        await this.presence(frame.event, frame.account_id, frame.device_id);
        return;
      case "device": {
        const member = this.members.get(frame.account_id);
        if (member !== undefined) {
          if (frame.event === "added") member.devices.add(frame.device.device_id);
          else member.devices.delete(frame.device.device_id);
        }
        this.refused.clear();
        await this.keyChanges();
        this.participantsChanged();
        await this.reconcile();
        return;
      }
      case "room":
        if (frame.event === "ending" && frame.ends_at !== undefined) this.emit("ending", { endsAt: frame.ends_at });
        if (frame.event === "ended") this.end();
        return;
      case "error":
        this.emit("error", { code: frame.code, detail: frame.detail });
        return;
      case "resumed":
        await this.reconcile();
        return;
      default:
        return;
    }
  }

  private async keyChanges(): Promise<void> {
    const changes = await this.ctx.contacts.checkChanges().catch(() => []);
    for (const change of changes) {
      if (change.identityChanged) this.emit("keyChanged", { accountId: change.accountId, wasVerified: change.wasVerified });
    }
  }

  private async presence(event: string, accountId: string, deviceId: string | undefined): Promise<void> {
    const member = this.members.get(accountId);
    const self = accountId === this.self.accountId && (deviceId === undefined || deviceId === this.self.deviceId);
    if (self && event === "admitted") {
      if (member !== undefined) member.admitted = true;
      this.emit("presence", deviceId === undefined ? { event, accountId } : { event, accountId, deviceId });
      this.participantsChanged();
      await this.admitted();
      return;
    }
    if (member === undefined) {
      // Someone new: read the room again for their name and devices.
      await this.refreshMembers();
    } else if (event === "online" || event === "offline") {
      member.online = event === "online";
      if (deviceId !== undefined && event === "online") member.devices.add(deviceId);
      // A device comes `online` only admitted (a waiting one is `waiting`): in a
      // room without a waiting room, that is how an account sent back to the
      // waiting room comes in again.
      if (event === "online") member.admitted = true;
    } else if (event === "admitted") {
      member.admitted = true;
    } else if (event === "waiting") {
      member.admitted = false;
    } else if (event === "removed") {
      this.members.delete(accountId);
    }
    this.emit("presence", deviceId === undefined ? { event, accountId } : { event, accountId, deviceId });
    this.participantsChanged();
    // `waiting` for an admitted account: it went back to the waiting room (it
    // withdrew a consent), so a host removes its devices from the group.
    if (["admitted", "removed", "online", "waiting"].includes(event)) await this.reconcile();
  }

  private async refreshMembers(): Promise<void> {
    const view = await this.ctx.api.room(this.id);
    for (const participant of view.participants) {
      const known = this.members.get(participant.account_id);
      if (known !== undefined) {
        known.admitted = participant.admitted;
        known.displayName = participant.display_name;
        continue;
      }
      this.members.set(participant.account_id, {
        accountId: participant.account_id,
        displayName: participant.display_name,
        role: participant.role,
        admitted: participant.admitted,
        online: false,
        devices: new Set(),
      });
    }
  }

  private async message(frame: MessageFrame): Promise<void> {
    let ciphertext: Uint8Array;
    try {
      ciphertext = fromBase64Url(frame.ciphertext);
    } catch {
      return;
    }
    const group = this.group;
    if (group === null) {
      if (!(await this.tryWelcome(ciphertext))) this.buffer.add({ seq: frame.seq, sender: frame.sender, ciphertext });
      return;
    }
    const result = await group.process({ seq: frame.seq, sender: frame.sender, ciphertext });
    await this.persist();
    await this.results([result]);
  }

  /** Joins by a Welcome for one of this device's KeyPackages; false if it is not a Welcome for it. */
  private async tryWelcome(bytes: Uint8Array): Promise<boolean> {
    let refs: Uint8Array[];
    try {
      refs = RoomGroup.welcomeRefs(bytes);
    } catch {
      return false;
    }
    for (const ref of refs) {
      const keyPackage = await this.ctx.device.packageFor(ref);
      if (keyPackage === undefined) continue;
      try {
        this.group = await RoomGroup.fromWelcome({
          groupId: this.groupId,
          self: this.self,
          auth: this.ctx.auth,
          welcome: bytes,
          keyPackage,
        });
      } catch (error) {
        this.emit("error", { code: "welcome_invalid", detail: error instanceof Error ? error.message : String(error) });
        return true;
      }
      await this.ctx.device.forgetPackage(ref);
      await this.persist();
      this.ready();
      await this.drain();
      void this.ctx.device.topUp(this.ctx.api).catch(() => 0);
      return true;
    }
    return refs.length > 0;
  }

  private async drain(): Promise<void> {
    const group = this.group;
    if (group === null) return;
    const results = await this.buffer.drain(group);
    await this.persist();
    await this.results(results);
  }

  private async results(results: readonly Processed[]): Promise<void> {
    for (const result of results) await this.processed(result);
  }

  private async processed(result: Processed): Promise<void> {
    switch (result.kind) {
      case "application": {
        const member = this.members.get(result.sender.accountId);
        const sender = { ...result.sender, displayName: member?.displayName ?? "" };
        const payload = result.payload;
        if (payload.kind === "signal") {
          this.emit("signal", { from: { ...result.sender }, bytes: payload.bytes });
        } else if (payload.kind === "text") {
          this.emit("message", { seq: result.seq, sender, text: payload.text, own: false });
        } else {
          this.emit("message", { seq: result.seq, sender, bytes: payload.bytes, own: false });
        }
        return;
      }
      case "commit":
        if (result.removedSelf) {
          this.group = null;
          this.readyFired = false;
          await this.persist();
          this.emit("removed", {});
          return;
        }
        this.participantsChanged();
        await this.reconcile();
        return;
      case "refused":
        if (result.reason === "own_commit_lost" || result.reason === "future_epoch") {
          await this.rejoin();
          return;
        }
        this.emit("error", { code: `message_${result.reason}`, detail: `seq ${result.seq}: ${result.detail}` });
        return;
      default:
        return;
    }
  }

  /** Our state fell behind the group (a lost ack, a missed commit): rejoin from the GroupInfo. */
  private async rejoin(): Promise<void> {
    const groupInfo = await this.ctx.api.groupInfo(this.id);
    if (groupInfo === null || this.joining) return;
    const group = this.group;
    const header = readHeader(groupInfo);
    if (group !== null && header?.wireFormat === "group_info" && header.epoch <= group.epoch) return;
    this.group = null;
    this.readyFired = false;
    await this.persist();
    await this.externalJoin(groupInfo, RoomGroup.treeHasSigningKey(groupInfo, this.ctx.device.signing.publicKey));
  }

  /**
   * A host device makes the group's members equal to the room's admitted
   * devices; any device commits an update when its group asks for one.
   */
  private async reconcile(): Promise<void> {
    const group = this.group;
    if (group === null || this.socket === null) return;
    if (this.role !== "host") {
      if (group.needsUpdate) await this.commit(group, { update: true });
      return;
    }
    if (this.committing) {
      this.reconcileAgain = true;
      return;
    }
    const wanted = new Map<string, string>(); // device id -> account id
    for (const member of this.members.values()) {
      if (!member.admitted) continue;
      for (const device of member.devices) wanted.set(device, member.accountId);
    }
    wanted.set(this.self.deviceId, this.self.accountId);
    const present = group.members();
    const have = new Set(present.map((m) => m.deviceId));
    const remove = present.filter((m) => !wanted.has(m.deviceId));
    const addIds = [...wanted.keys()].filter((d) => !have.has(d) && !this.refused.has(d));
    if (remove.length === 0 && addIds.length === 0) {
      if (group.needsUpdate) await this.commit(group, { update: true });
      return;
    }
    const add = await this.claim(new Map(addIds.map((d) => [d, wanted.get(d) ?? ""])));
    if (remove.length === 0 && add.length === 0) return;
    await this.commit(group, { add, remove });
  }

  /** Makes, sends and (once acked) adopts one commit; the Welcome and the GroupInfo follow it. */
  private async commit(
    group: RoomGroup,
    changes: { add?: KeyPackage[]; remove?: { accountId: string; deviceId: string }[]; update?: boolean },
  ): Promise<void> {
    if (this.committing) {
      this.reconcileAgain = true;
      return;
    }
    this.committing = true;
    const add = changes.add ?? [];
    try {
      let pending: PendingCommit;
      try {
        pending = await group.commit(changes);
      } catch (error) {
        // A package the group refuses (its credential fails the key-log
        // check): leave those devices out and say so, then try the rest.
        const detail = error instanceof Error ? error.message : String(error);
        if (add.length === 0) {
          this.emit("error", { code: "commit_failed", detail });
          return;
        }
        for (const keyPackage of add) {
          const named = credentialDevice(keyPackage.leafNode.credential);
          if (named !== null) this.refused.add(named.deviceId);
        }
        this.emit("error", { code: "key_refused", detail });
        this.reconcileAgain = true;
        return;
      }
      let seq: number;
      try {
        seq = await this.requireSocket().broadcast(newMessageId(), toBase64Url(pending.commit));
      } catch (error) {
        await this.results(await group.discard(pending));
        if (error instanceof SendRefused && error.code === "stale_epoch") return; // the winner's commit comes next
        throw error;
      }
      const held = await group.adopt(pending, seq);
      await this.persist();
      if (pending.welcome !== undefined) {
        await this.requireSocket().broadcast(newMessageId(), toBase64Url(pending.welcome));
      }
      await this.ctx.api.putGroupInfo(this.id, pending.groupInfo);
      this.participantsChanged();
      await this.results(held);
    } finally {
      this.committing = false;
      if (this.reconcileAgain) {
        this.reconcileAgain = false;
        void this.run(async () => this.reconcile());
      }
    }
  }

  /**
   * One KeyPackage per device, each checked before it is used: its credential
   * must name that device of that account, and its signature key must be the
   * device's signing key in the account's verified key log. A device that
   * fails is left out (and reported) until its key log changes.
   */
  private async claim(wanted: ReadonlyMap<string, string>): Promise<KeyPackage[]> {
    const deviceIds = [...wanted.keys()];
    if (deviceIds.length === 0) return [];
    let claimed: Awaited<ReturnType<Api["claimKeyPackages"]>>;
    try {
      claimed = await this.ctx.api.claimKeyPackages(this.id, deviceIds);
    } catch (error) {
      if (error instanceof ProblemError && error.code === "key_packages_exhausted") {
        const listed = error.body["devices"];
        const exhausted = new Set(Array.isArray(listed) ? listed.map(String) : deviceIds);
        const rest = new Map([...wanted].filter(([device]) => !exhausted.has(device)));
        return rest.size < wanted.size ? this.claim(rest) : [];
      }
      throw error;
    }
    const out: KeyPackage[] = [];
    for (const entry of claimed) {
      const accountId = wanted.get(entry.deviceId);
      if (accountId === undefined) continue;
      const problem = await this.checkPackage(accountId, entry.deviceId, entry.keyPackage);
      if (problem === null) {
        out.push(decodeKeyPackage(entry.keyPackage));
        continue;
      }
      this.refused.add(entry.deviceId);
      this.emit("error", { code: "key_refused", detail: `device ${entry.deviceId} of ${accountId}: ${problem}` });
    }
    return out;
  }

  private async checkPackage(accountId: string, deviceId: string, bytes: Uint8Array): Promise<string | null> {
    let keyPackage: KeyPackage;
    try {
      keyPackage = decodeKeyPackage(bytes);
    } catch {
      return "not a KeyPackage";
    }
    const named = credentialDevice(keyPackage.leafNode.credential);
    if (named === null || named.accountId !== accountId || named.deviceId !== deviceId) {
      return "its credential names another device";
    }
    let key: Uint8Array | undefined;
    try {
      key = await this.ctx.contacts.deviceKey(accountId, deviceId);
    } catch (error) {
      return `the account's key log failed its check (${error instanceof Error ? error.message : String(error)})`;
    }
    if (key === undefined) return "the device is not in the account's verified key log";
    if (!equal(key, keyPackage.leafNode.signaturePublicKey)) return "its key is not the device's key in the key log";
    return null;
  }
}
