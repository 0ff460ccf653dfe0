/**
 * The MLS group of one room, as one device holds it: a state machine without
 * I/O. Frames from the room socket go in (`process`), application payloads
 * and membership changes come out; what to send (application messages,
 * commits, Welcomes, GroupInfos) is returned as bytes for the caller to put
 * on the socket or the REST API.
 *
 * The rules it keeps (docs/PROTOCOL.md, "The room socket"):
 * - Every frame carries the room-wide `seq`; a frame at or below the last
 *   `seq` handled is skipped (`old`), so a replay is idempotent.
 * - The sender the server names must be the device whose leaf signed the
 *   message; otherwise the frame is refused (`sender_mismatch`) and nothing
 *   is delivered. A replay of our own frames is skipped (`own`).
 * - The relay accepts one commit per epoch. A commit made here is kept
 *   aside (`PendingCommit`) until the caller reports the relay's answer:
 *   `adopt` after its ack, `discard` after `stale_epoch`. Meanwhile frames
 *   are read with the current state; frames of the pending commit's epoch
 *   (which can only follow our commit) are held and read once it is adopted.
 * - A commit of ours that comes back in a replay while it is pending is
 *   adopted; one that comes back when it is not (the device reloaded before
 *   the ack and lost it) cannot be read by its author: the frame is refused
 *   (`own_commit_lost`) and the caller rejoins by external commit.
 * - Refused input changes nothing but the last `seq` handled.
 */

import { equal, frame as lengthPrefixed, u64be } from "./bytes.js";
import {
  type AuthenticationService,
  type ClientState,
  type DeviceRef,
  type KeyPackage,
  type MessageHeader,
  type PrivateKeyPackage,
  type SigningKeyPair,
  carryReceiverData,
  cipherSuite,
  clientConfig,
  commitChanges,
  credentialDevice,
  MlsRefused,
  decodeMessage,
  decodeState,
  deviceKeyPackage,
  encodeMessage,
  encodeState,
  exportSecret,
  encrypt as encryptMessage,
  groupEpoch,
  groupIdOf,
  groupInfoHasSignatureKey,
  groupInfoOf,
  groupLeaves,
  isActiveMember,
  isCryptoFailure,
  joinByExternalCommit,
  joinFromWelcome,
  messageHeader,
  newGroup,
  ownLeafIndex,
  processIncoming,
  welcomeRefs,
} from "./mls.js";
import { type Payload, decodePayload, encodePayload } from "./payload.js";

export type { DeviceRef };
export { type Payload, PayloadError, decodePayload, encodePayload } from "./payload.js";

/** A `message` frame of the room socket, its ciphertext decoded from base64url. */
export interface Frame {
  readonly seq: number;
  readonly sender: { readonly account_id: string; readonly device_id: string };
  readonly ciphertext: Uint8Array;
}

/** A commit made here, waiting for the relay's answer. */
export interface PendingCommit {
  /** The commit to send as a broadcast. */
  readonly commit: Uint8Array;
  /** The Welcome for the devices it adds: send it (broadcast) after the ack. */
  readonly welcome?: Uint8Array;
  /** The GroupInfo of the epoch the commit begins: upload it after the ack. */
  readonly groupInfo: Uint8Array;
  /** The epoch the commit is made in (the relay's epoch when it accepts it). */
  readonly epoch: bigint;
}

export type SkipReason =
  /** `seq` at or below the last one handled (a replay). */
  | "old"
  /** Sent by this device. */
  | "own"
  /** A Welcome: joining is `RoomGroup.fromWelcome`'s job. */
  | "welcome"
  /** Another group's message. */
  | "other_group"
  /** From an epoch before this device joined, or a commit already applied. */
  | "old_epoch"
  /** This device is not (or no longer) a member. */
  | "not_member";

export type RefusalReason =
  /** The server names another sender than the leaf that signed the message. */
  | "sender_mismatch"
  /** No key of ours decrypts it, or its signature or confirmation tag is wrong. */
  | "undecryptable"
  /** Not a group message we can use (malformed, a bad commit, an unknown payload). */
  | "invalid"
  /** From an epoch this device has not reached: it missed a commit; rejoin. */
  | "future_epoch"
  /** Our own commit, accepted by the relay, whose pending state was lost: rejoin. */
  | "own_commit_lost";

export type Processed =
  | {
      readonly kind: "application";
      readonly seq: number;
      readonly epoch: bigint;
      readonly sender: DeviceRef;
      readonly payload: Payload;
    }
  | {
      readonly kind: "commit";
      readonly seq: number;
      /** The epoch the commit began. */
      readonly epoch: bigint;
      readonly sender: DeviceRef;
      /** Our own commit, adopted. */
      readonly own: boolean;
      readonly added: readonly DeviceRef[];
      readonly removed: readonly DeviceRef[];
      readonly removedSelf: boolean;
    }
  | { readonly kind: "held"; readonly seq: number }
  | { readonly kind: "skipped"; readonly seq: number; readonly reason: SkipReason }
  | { readonly kind: "refused"; readonly seq: number; readonly reason: RefusalReason; readonly detail: string };

export type GroupErrorCode =
  | "wrong_group"
  | "invalid_message"
  | "invalid_state"
  | "not_member"
  | "not_joined"
  | "commit_pending"
  | "not_pending"
  | "unknown_device"
  | "remove_self"
  | "commit_refused"
  | "join_refused"
  | "not_in_tree";

/** A call the group cannot do; `code` is stable. Incoming frames never throw: they are refused. */
export class GroupError extends Error {
  readonly code: GroupErrorCode;

  constructor(code: GroupErrorCode, message: string) {
    super(message);
    this.name = "GroupError";
    this.code = code;
  }
}

interface Identity {
  readonly groupId: Uint8Array;
  readonly self: DeviceRef;
  readonly auth: AuthenticationService;
}

interface Pending {
  readonly public: PendingCommit;
  readonly state: ClientState;
  readonly added: readonly DeviceRef[];
  readonly removed: readonly DeviceRef[];
}

interface HeldFrame {
  readonly frame: Frame;
}

const STATE_MAGIC = new TextEncoder().encode("CFRG\x01");

/**
 * After this many directed messages (payload `signal`) sent in one epoch,
 * `needsUpdate` asks for an update commit: each leaves a gap in this
 * device's chain for the members that do not see it, and receivers ratchet
 * over at most `MAX_FORWARD_RATCHET_STEPS` (mls.ts) at once.
 */
export const DIRECTED_UPDATE_AFTER = 1000;

/** At most this many frames wait for a pending commit's ack. */
const MAX_HELD = 1000;

function sameDevice(a: DeviceRef, b: DeviceRef): boolean {
  return a.accountId === b.accountId && a.deviceId === b.deviceId;
}

function claimOf(frame: Frame): DeviceRef {
  return { accountId: frame.sender.account_id, deviceId: frame.sender.device_id };
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

type Suite = Awaited<ReturnType<typeof cipherSuite>>;

export class RoomGroup {
  readonly groupId: Uint8Array;
  readonly self: DeviceRef;
  readonly #cs: Suite;
  /** undefined while an external join waits for the relay's ack. */
  #state: ClientState | undefined;
  #pending: Pending | undefined;
  #held: HeldFrame[] = [];
  #lastSeq: number;
  /** The first epoch this device was a member of. */
  #joinedEpoch: bigint;
  /** Directed messages sent in the epoch `#directedEpoch`. */
  #directed = 0;
  #directedEpoch = -1n;
  /** Calls that change the state run one at a time, in call order. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    identity: Identity,
    cs: Suite,
    state: ClientState | undefined,
    lastSeq: number,
    joinedEpoch: bigint,
  ) {
    this.groupId = identity.groupId;
    this.self = identity.self;
    this.#cs = cs;
    this.#state = state;
    this.#lastSeq = lastSeq;
    this.#joinedEpoch = joinedEpoch;
  }

  /** A new group (epoch 0) whose only member is this device. */
  static async create(o: Identity & { readonly signing: SigningKeyPair }): Promise<RoomGroup> {
    const cs = await cipherSuite();
    const own = await deviceKeyPackage(o.self.accountId, o.self.deviceId, o.signing, cs);
    const state = await newGroup(o.groupId, own, clientConfig(o.auth), cs);
    return new RoomGroup(o, cs, state, 0, groupEpoch(state));
  }

  /**
   * The group a Welcome adds this device to, with the KeyPackage it names
   * (`welcomeRefs`). `lastSeq` is the last frame handled before (default 0):
   * frames buffered before the Welcome are read after it (`JoinBuffer`).
   */
  static async fromWelcome(
    o: Identity & {
      readonly welcome: Uint8Array;
      readonly keyPackage: { readonly publicPackage: KeyPackage; readonly privatePackage: PrivateKeyPackage };
      readonly lastSeq?: number;
    },
  ): Promise<RoomGroup> {
    const cs = await cipherSuite();
    const decoded = decodeMessage(o.welcome);
    if (decoded === null || decoded.wireformat !== "mls_welcome") {
      throw new GroupError("invalid_message", "not a Welcome");
    }
    let state: ClientState;
    try {
      state = await joinFromWelcome(
        decoded.welcome,
        { publicPackage: o.keyPackage.publicPackage, privatePackage: o.keyPackage.privatePackage },
        clientConfig(o.auth),
        cs,
      );
    } catch (error) {
      throw new GroupError("join_refused", `the Welcome cannot be used: ${message(error)}`);
    }
    if (!equal(groupIdOf(state), o.groupId)) throw new GroupError("wrong_group", "the Welcome is for another group");
    return new RoomGroup(o, cs, state, o.lastSeq ?? 0, groupEpoch(state));
  }

  /**
   * Joins by an external commit from the room's GroupInfo. With `resync`,
   * this device's old leaf (same signature key) is replaced; it must be in
   * the tree (`treeHasSigningKey`). The group is a member only once the
   * commit is adopted (`adopt(pending, seq)` after the ack); after
   * `stale_epoch`, fetch the GroupInfo again and join again.
   */
  static async externalJoin(
    o: Identity & {
      readonly signing: SigningKeyPair;
      readonly groupInfo: Uint8Array;
      readonly resync: boolean;
      readonly lastSeq?: number;
    },
  ): Promise<{ group: RoomGroup; commit: Uint8Array; pending: PendingCommit }> {
    const cs = await cipherSuite();
    const decoded = decodeMessage(o.groupInfo);
    if (decoded === null || decoded.wireformat !== "mls_group_info") {
      throw new GroupError("invalid_message", "not a GroupInfo");
    }
    const info = decoded.groupInfo;
    if (!equal(info.groupContext.groupId, o.groupId)) {
      throw new GroupError("wrong_group", "the GroupInfo is for another group");
    }
    if (!o.resync && groupInfoHasSignatureKey(info, o.signing.publicKey)) {
      throw new GroupError("join_refused", "a leaf already has this device's signing key: rejoin with resync");
    }
    const own = await deviceKeyPackage(o.self.accountId, o.self.deviceId, o.signing, cs);
    let joined: { state: ClientState; commit: Uint8Array };
    try {
      joined = await joinByExternalCommit(info, own, o.resync, clientConfig(o.auth), cs);
    } catch (error) {
      if (error instanceof MlsRefused && error.reason === "not_in_tree") {
        throw new GroupError("not_in_tree", "no leaf of the group has this device's signing key");
      }
      throw new GroupError("join_refused", `the GroupInfo cannot be used: ${message(error)}`);
    }
    const group = new RoomGroup(o, cs, undefined, o.lastSeq ?? 0, groupEpoch(joined.state));
    const pending: PendingCommit = {
      commit: joined.commit,
      groupInfo: await groupInfoOf(joined.state, cs),
      epoch: info.groupContext.epoch,
    };
    group.#pending = { public: pending, state: joined.state, added: [o.self], removed: o.resync ? [o.self] : [] };
    return { group, commit: joined.commit, pending };
  }

  /** The KeyPackageRefs a Welcome names, to find the KeyPackage it was made for. */
  static welcomeRefs(welcome: Uint8Array): Uint8Array[] {
    const decoded = decodeMessage(welcome);
    if (decoded === null || decoded.wireformat !== "mls_welcome") {
      throw new GroupError("invalid_message", "not a Welcome");
    }
    return welcomeRefs(decoded.welcome);
  }

  /** Whether a leaf in the GroupInfo's tree has this signing key (a lost state can `resync`). */
  static treeHasSigningKey(groupInfo: Uint8Array, key: Uint8Array): boolean {
    const decoded = decodeMessage(groupInfo);
    return (
      decoded !== null && decoded.wireformat === "mls_group_info" && groupInfoHasSignatureKey(decoded.groupInfo, key)
    );
  }

  /** A group from `encode()`; the bytes come from the caller's sealed storage. */
  static async decode(bytes: Uint8Array, auth: AuthenticationService): Promise<RoomGroup> {
    const broken = () => new GroupError("invalid_state", "not a saved group");
    let offset = 0;
    const take = (length: number): Uint8Array => {
      if (offset + length > bytes.length) throw broken();
      const part = bytes.subarray(offset, offset + length);
      offset += length;
      return part;
    };
    const takeFramed = (): Uint8Array => {
      const length = new DataView(take(4).slice().buffer).getUint32(0, false);
      return take(length);
    };
    const takeU64 = (): bigint => new DataView(take(8).slice().buffer).getBigUint64(0, false);
    if (!equal(take(STATE_MAGIC.length), STATE_MAGIC)) throw broken();
    const groupId = takeFramed().slice();
    const [accountId, deviceId, ...rest] = new TextDecoder().decode(takeFramed()).split(":");
    if (accountId === undefined || deviceId === undefined || rest.length > 0) throw broken();
    const lastSeq = takeU64();
    const joinedEpoch = takeU64();
    const stateBytes = takeFramed();
    if (offset !== bytes.length || lastSeq > BigInt(Number.MAX_SAFE_INTEGER)) throw broken();
    const state = decodeState(stateBytes, clientConfig(auth));
    if (state === null || !equal(groupIdOf(state), groupId)) throw broken();
    const self = { accountId, deviceId };
    return new RoomGroup({ groupId, self, auth }, await cipherSuite(), state, Number(lastSeq), joinedEpoch);
  }

  /**
   * The group as bytes: its MLS state (signing key and epoch secrets: seal
   * it at rest), the last `seq` handled and who we are. A pending commit is
   * not kept: after a reload it is as if the relay had refused it.
   */
  encode(): Uint8Array {
    const state = this.#joined();
    const header = new Uint8Array(STATE_MAGIC);
    const self = new TextEncoder().encode(`${this.self.accountId}:${this.self.deviceId}`);
    const parts = [
      header,
      lengthPrefixed(this.groupId),
      lengthPrefixed(self),
      u64be(this.#lastSeq),
      u64be(this.#joinedEpoch),
      lengthPrefixed(encodeState(state)),
    ];
    const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
    let offset = 0;
    for (const part of parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }

  /** The current epoch (before an external join is adopted: the one it commits from). */
  get epoch(): bigint {
    return this.#state === undefined ? (this.#pending?.public.epoch ?? 0n) : groupEpoch(this.#state);
  }

  /** The last `seq` handled. */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** Whether this device is a member (joined, and not removed). */
  get isMember(): boolean {
    return this.#state !== undefined && isActiveMember(this.#state);
  }

  /** Whether this device sent `DIRECTED_UPDATE_AFTER` directed messages in this epoch: commit an update. */
  get needsUpdate(): boolean {
    return (
      this.#state !== undefined &&
      this.#directedEpoch === groupEpoch(this.#state) &&
      this.#directed >= DIRECTED_UPDATE_AFTER
    );
  }

  /** The commit waiting for the relay's answer, if any. */
  get pending(): PendingCommit | undefined {
    return this.#pending?.public;
  }

  members(): { accountId: string; deviceId: string; leafIndex: number }[] {
    const state = this.#joined();
    return groupLeaves(state).flatMap((leaf) =>
      leaf.device === null
        ? []
        : [{ accountId: leaf.device.accountId, deviceId: leaf.device.deviceId, leafIndex: leaf.leafIndex }],
    );
  }

  /** An application message (an encoded MLSMessage) to the group, or to one device as a directed message. */
  async encrypt(payload: Payload): Promise<Uint8Array> {
    return this.#exclusive(() => this.#encrypt(payload));
  }

  async #encrypt(payload: Payload): Promise<Uint8Array> {
    const state = this.#member();
    const sent = await encryptMessage(state, encodePayload(payload), this.#cs);
    this.#state = sent.state;
    if (payload.kind === "signal") {
      const epoch = groupEpoch(state);
      if (epoch !== this.#directedEpoch) {
        this.#directedEpoch = epoch;
        this.#directed = 0;
      }
      this.#directed++;
    }
    return encodeMessage({ version: "mls10", wireformat: "mls_private_message", privateMessage: sent.message });
  }

  /** One directed message per device (`recipients` of a directed `send`), each its own generation. */
  async encryptFor(deviceIds: readonly string[], payload: Payload): Promise<Map<string, Uint8Array>> {
    const out = new Map<string, Uint8Array>();
    return this.#exclusive(async () => {
      for (const deviceId of deviceIds) out.set(deviceId, await this.#encrypt(payload));
      return out;
    });
  }

  /**
   * A commit adding these KeyPackages (decode a claim's with `decodeKeyPackage`)
   * and removing these devices; with neither it is an update of this
   * device's keys (`update: true` says so explicitly). A commit that removes
   * or updates carries an update path; one that only adds does not (ts-mls
   * 1.6.4 sends a path only when RFC 9420 requires one). It is kept aside
   * until `adopt` or `discard`.
   */
  async commit(
    changes: {
      readonly add?: readonly KeyPackage[];
      readonly remove?: readonly DeviceRef[];
      readonly update?: boolean;
    } = {},
  ): Promise<PendingCommit> {
    return this.#exclusive(() => this.#commit(changes));
  }

  async #commit(changes: {
    readonly add?: readonly KeyPackage[];
    readonly remove?: readonly DeviceRef[];
    readonly update?: boolean;
  }): Promise<PendingCommit> {
    const state = this.#member();
    if (this.#pending !== undefined) {
      throw new GroupError("commit_pending", "a commit is waiting for the relay's answer");
    }
    const leaves = groupLeaves(state);
    const removeLeaves: number[] = [];
    const removed: DeviceRef[] = [];
    for (const device of changes.remove ?? []) {
      if (sameDevice(device, this.self)) {
        throw new GroupError("remove_self", "a device cannot remove itself by a commit");
      }
      const leaf = leaves.find((candidate) => candidate.device !== null && sameDevice(candidate.device, device));
      if (leaf === undefined) {
        throw new GroupError("unknown_device", `${device.accountId}:${device.deviceId} is not a member`);
      }
      removeLeaves.push(leaf.leafIndex);
      removed.push(device);
    }
    let output: Awaited<ReturnType<typeof commitChanges>>;
    try {
      output = await commitChanges(state, { add: changes.add ?? [], removeLeaves }, this.#cs);
    } catch (error) {
      throw new GroupError("commit_refused", `the commit cannot be made: ${message(error)}`);
    }
    const added = (changes.add ?? []).flatMap((keyPackage) => {
      const device = credentialDevice(keyPackage.leafNode.credential);
      return device === null ? [] : [device];
    });
    const pending: PendingCommit = {
      commit: output.commit,
      ...(output.welcome === undefined ? {} : { welcome: output.welcome }),
      groupInfo: output.groupInfo,
      epoch: groupEpoch(state),
    };
    this.#pending = { public: pending, state: output.state, added, removed };
    return pending;
  }

  /**
   * The relay acked the pending commit (with `seq`): its epoch begins.
   * Returns the frames held for it. The last `seq` handled does not move to
   * the ack's: frames relayed before the commit may still come after the
   * ack (it can overtake them), and are read in the epoch they belong to.
   */
  async adopt(pending: PendingCommit, seq: number): Promise<Processed[]> {
    return this.#exclusive(async () => {
      const current = this.#pending;
      if (current === undefined || current.public !== pending) {
        throw new GroupError("not_pending", "this commit is not the pending one (another commit won its epoch)");
      }
      if (!Number.isSafeInteger(seq) || seq < 1)
        throw new GroupError("invalid_message", "seq is not a positive integer");
      this.#adopt(current);
      return this.#release();
    });
  }

  /**
   * The relay refused the commit (`stale_epoch`): it is dropped. Read the
   * winner's commit when it comes, then commit again. Returns the frames
   * held meanwhile, read with the current state. Discarding a commit that is
   * no longer pending does nothing.
   */
  async discard(pending: PendingCommit): Promise<Processed[]> {
    return this.#exclusive(async () => {
      if (this.#pending?.public === pending) this.#pending = undefined;
      return this.#release();
    });
  }

  /**
   * The GroupInfo of the current epoch (external_pub and ratchet tree), for
   * the room's upload when the committer's own upload was lost.
   */
  async groupInfo(): Promise<Uint8Array> {
    return groupInfoOf(this.#member(), this.#cs);
  }

  /** MLS-Exporter of the current epoch (RFC 9420 §8.5), e.g. for media keys (RFC 9605). */
  async exporter(label: string, context: Uint8Array, length: number): Promise<Uint8Array> {
    return exportSecret(this.#joined(), label, context, length, this.#cs);
  }

  /** Reads one frame of the room socket. Never throws on what the network sends. */
  async process(frame: Frame): Promise<Processed> {
    return this.#exclusive(() => this.#process(frame));
  }

  async #process(frame: Frame): Promise<Processed> {
    const seq = frame.seq;
    if (!Number.isSafeInteger(seq) || seq < 1) {
      return { kind: "refused", seq, reason: "invalid", detail: "seq is not a positive integer" };
    }
    if (seq <= this.#lastSeq || this.#held.some((held) => held.frame.seq === seq)) {
      return { kind: "skipped", seq, reason: "old" };
    }
    const outcome = await this.#read(frame);
    if (outcome.kind !== "held") this.#lastSeq = Math.max(this.#lastSeq, seq);
    return outcome;
  }

  async #read(frame: Frame): Promise<Processed> {
    const seq = frame.seq;
    const refuse = (reason: RefusalReason, detail: string): Processed => ({ kind: "refused", seq, reason, detail });
    const skip = (reason: SkipReason): Processed => ({ kind: "skipped", seq, reason });
    const decoded = decodeMessage(frame.ciphertext);
    if (decoded === null) return refuse("invalid", "not an MLS message");
    const header: MessageHeader = messageHeader(decoded);
    if (header.wireFormat === "welcome") return skip("welcome");
    if (header.wireFormat !== "private_message" && header.wireFormat !== "public_message") {
      return refuse("invalid", `a ${header.wireFormat} is not sent on the socket`);
    }
    if (!equal(header.groupId, this.groupId)) return skip("other_group");
    const isCommit = header.contentType === "commit";
    const pending = this.#pending;

    if (sameDevice(claimOf(frame), this.self)) {
      if (!isCommit) return skip("own");
      if (pending !== undefined && equal(pending.public.commit, frame.ciphertext)) {
        this.#adopt(pending);
        return {
          kind: "commit",
          seq,
          epoch: this.epoch,
          sender: this.self,
          own: true,
          added: pending.added,
          removed: pending.removed,
          removedSelf: false,
        };
      }
      if (this.#state === undefined || header.epoch >= this.epoch) {
        return refuse("own_commit_lost", "our commit was accepted but its state is lost");
      }
      return skip("own");
    }

    const state = this.#state;
    if (state === undefined) {
      // An external join waiting for its ack: only frames of the epoch it begins are of use.
      if (pending !== undefined && header.epoch === pending.public.epoch + 1n) return this.#hold(frame);
      return skip("not_member");
    }
    if (!isActiveMember(state)) return skip("not_member");
    const epoch = groupEpoch(state);
    if (header.epoch < this.#joinedEpoch || (isCommit && header.epoch < epoch)) return skip("old_epoch");
    if (header.epoch > epoch) {
      if (pending !== undefined && header.epoch === pending.public.epoch + 1n) return this.#hold(frame);
      return refuse("future_epoch", `a message of epoch ${header.epoch}, ours is ${epoch}`);
    }

    let incoming: Awaited<ReturnType<typeof processIncoming>>;
    try {
      incoming = await processIncoming(state, decoded, this.#cs);
    } catch (error) {
      return refuse(isCryptoFailure(error) ? "undecryptable" : "invalid", message(error));
    }
    const claim = claimOf(frame);
    // A replay names an erased account's messages with an empty sender: the MLS sender stands.
    const erased = claim.accountId === "" && claim.deviceId === "";

    if (incoming.kind === "application") {
      const sender = incoming.sender.device;
      if (sender === null) return refuse("invalid", "the sender's credential names no device");
      if (!erased && !sameDevice(sender, claim)) {
        return refuse("sender_mismatch", "signed by another device than named");
      }
      let payload: Payload;
      try {
        payload = decodePayload(incoming.data);
      } catch (error) {
        return refuse("invalid", message(error));
      }
      this.#state = incoming.state;
      return { kind: "application", seq, epoch: header.epoch, sender, payload };
    }

    const sender = incoming.sender;
    if (sender === null) return refuse("invalid", "the committer's credential names no device");
    if (!erased && !sameDevice(sender, claim)) {
      return refuse("sender_mismatch", "committed by another device than named");
    }
    this.#state = incoming.state;
    // Another commit won this epoch: ours can no longer be adopted.
    if (pending !== undefined && pending.public.epoch === header.epoch) this.#pending = undefined;
    return {
      kind: "commit",
      seq,
      epoch: header.epoch + 1n,
      sender,
      own: false,
      added: incoming.added,
      removed: incoming.removed,
      removedSelf: incoming.removedSelf,
    };
  }

  #exclusive<T>(run: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(run);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  #hold(frame: Frame): Processed {
    if (this.#held.length >= MAX_HELD) {
      return { kind: "refused", seq: frame.seq, reason: "future_epoch", detail: "too many frames wait for our commit" };
    }
    this.#held.push({ frame });
    return { kind: "held", seq: frame.seq };
  }

  async #release(): Promise<Processed[]> {
    const held = this.#held.sort((a, b) => a.frame.seq - b.frame.seq);
    this.#held = [];
    const out: Processed[] = [];
    for (const { frame } of held) {
      // Held frames were never handled: the last seq may have passed them meanwhile.
      const outcome = await this.#read(frame);
      if (outcome.kind !== "held") this.#lastSeq = Math.max(this.#lastSeq, frame.seq);
      out.push(outcome);
    }
    return out;
  }

  #adopt(pending: Pending): void {
    if (this.#state === undefined) {
      this.#joinedEpoch = groupEpoch(pending.state);
      this.#state = pending.state;
    } else {
      this.#state = carryReceiverData(pending.state, this.#state);
    }
    this.#pending = undefined;
  }

  #joined(): ClientState {
    if (this.#state === undefined) throw new GroupError("not_joined", "the external join is not adopted yet");
    return this.#state;
  }

  #member(): ClientState {
    const state = this.#joined();
    if (!isActiveMember(state)) throw new GroupError("not_member", "this device was removed from the group");
    return state;
  }
}

export interface JoinBufferLimits {
  readonly maxFrames?: number;
  readonly maxBytes?: number;
}

/**
 * Frames that arrive before this device is in the group (it was admitted,
 * and the commit adding it is relayed before its Welcome), kept in `seq`
 * order within bounds (the oldest go first) and read once it has joined.
 */
export class JoinBuffer {
  readonly maxFrames: number;
  readonly maxBytes: number;
  #frames: Frame[] = [];
  #bytes = 0;
  #dropped = 0;

  constructor(limits: JoinBufferLimits = {}) {
    this.maxFrames = limits.maxFrames ?? 1000;
    this.maxBytes = limits.maxBytes ?? 4 * 1024 * 1024;
  }

  get size(): number {
    return this.#frames.length;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Frames dropped to stay within the bounds. */
  get dropped(): number {
    return this.#dropped;
  }

  add(frame: Frame): void {
    if (this.#frames.some((kept) => kept.seq === frame.seq)) return;
    if (frame.ciphertext.length > this.maxBytes) {
      this.#dropped++;
      return;
    }
    this.#frames.push(frame);
    this.#frames.sort((a, b) => a.seq - b.seq);
    this.#bytes += frame.ciphertext.length;
    while (this.#frames.length > this.maxFrames || this.#bytes > this.maxBytes) {
      const oldest = this.#frames.shift();
      if (oldest === undefined) break;
      this.#bytes -= oldest.ciphertext.length;
      this.#dropped++;
    }
  }

  /** Reads the frames into the group now joined, in `seq` order; those of earlier epochs are skipped. */
  async drain(group: RoomGroup): Promise<Processed[]> {
    const frames = this.#frames;
    this.#frames = [];
    this.#bytes = 0;
    const out: Processed[] = [];
    for (const frame of frames) out.push(await group.process(frame));
    return out;
  }
}
