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
  type GroupInfo,
  type KeyPackage,
  type MLSMessage,
  type PrivateKeyPackage,
  type PrivateMessage,
  type ProposalWithSender,
  type PublicMessage,
  type RatchetTree,
  type Welcome,
  createApplicationMessage,
  createCommit,
  createGroup,
  createGroupInfoWithExternalPubAndRatchetTree,
  decodeGroupState,
  decodeMlsMessage,
  defaultCapabilities,
  defaultLifetime,
  emptyPskIndex,
  encodeGroupState,
  encodeMlsMessage,
  generateKeyPackageWithKey,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  joinGroupExternal,
  mlsExporter,
  processPrivateMessage,
  processPublicMessage,
} from "ts-mls";
import { type ClientConfig, defaultClientConfig } from "ts-mls/clientConfig.js";
import { ratchetTreeFromExtension } from "ts-mls/groupInfo.js";
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";
import { CryptoError, CryptoVerificationError } from "ts-mls/mlsError.js";
import { decryptSenderData } from "ts-mls/privateMessage.js";

import { ascii, equal } from "./bytes.js";

export const CIPHER_SUITE = "MLS_128_DHKEMP256_AES128GCM_SHA256_P256";

export type { AuthenticationService, ClientConfig, ClientState, KeyPackage, MLSMessage, PrivateKeyPackage, Welcome };

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

/**
 * How far ahead of the last generation it saw a receiver ratchets a sender's
 * chain (ts-mls's default is 200). Directed messages (WebRTC signalling to
 * one device) are ordinary application messages that the other members
 * never see, so each one leaves a gap of one generation in the sender's
 * chain for them. A step is one HKDF-Expand plus bookkeeping, about 0.3 ms
 * on two shared cores, so the limit is also the most work (about 1.5 s) one
 * message can cost a receiver: 5,000 steps. A sender keeps well below it by
 * committing an update after `DIRECTED_UPDATE_AFTER` (group.ts) directed
 * messages in one epoch, since a new epoch starts every chain afresh. Only
 * the last `retainKeysForGenerations` skipped keys are kept.
 */
export const MAX_FORWARD_RATCHET_STEPS = 5_000;

/** The ts-mls client configuration with our authentication service. */
export function clientConfig(authService: AuthenticationService): ClientConfig {
  return {
    ...defaultClientConfig,
    keyRetentionConfig: {
      ...defaultClientConfig.keyRetentionConfig,
      maximumForwardRatchetSteps: MAX_FORWARD_RATCHET_STEPS,
    },
    authService,
  };
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

// ---------------------------------------------------------------------------
// The primitives of a room's group engine (group.ts): wire codec, commits,
// incoming messages with their authenticated sender, external joins, state.

/** A device: the account and device ids its credential names. */
export interface DeviceRef {
  readonly accountId: string;
  readonly deviceId: string;
}

/** A leaf of a group's tree: its device (null if the credential names none) and signature key. */
export interface Leaf {
  readonly leafIndex: number;
  readonly device: DeviceRef | null;
  readonly signatureKey: Uint8Array;
}

export type MlsRefusalReason = "invalid" | "undecryptable" | "not_in_tree";

/** An MLS message or GroupInfo that this device cannot use; `reason` is stable. */
export class MlsRefused extends Error {
  readonly reason: MlsRefusalReason;

  constructor(reason: MlsRefusalReason, message: string) {
    super(message);
    this.name = "MlsRefused";
    this.reason = reason;
  }
}

/** Whether an error thrown by ts-mls while reading a message means it could not be decrypted or verified. */
export function isCryptoFailure(error: unknown): boolean {
  if (error instanceof MlsRefused) return error.reason === "undecryptable";
  if (!(error instanceof Error)) return false;
  // WebCrypto's AES-GCM reports a wrong key or a forged ciphertext as OperationError;
  // ts-mls reports a bad signature or confirmation tag as CryptoVerificationError.
  return error.name === "OperationError" || error instanceof CryptoVerificationError || error instanceof CryptoError;
}

/** An encoded MLSMessage decoded whole; null if it is malformed or has bytes after its end. */
export function decodeMessage(bytes: Uint8Array): MLSMessage | null {
  try {
    const decoded = decodeMlsMessage(bytes, 0);
    if (decoded === undefined || decoded[1] !== bytes.length) return null;
    return decoded[0];
  } catch {
    return null;
  }
}

export function encodeMessage(message: MLSMessage): Uint8Array {
  return encodeMlsMessage(message);
}

/** A KeyPackage from its wire form (an MLSMessage of wire_format 5, as a claim returns it). */
export function decodeKeyPackage(bytes: Uint8Array): KeyPackage {
  const message = decodeMessage(bytes);
  if (message === null) throw new MlsRefused("invalid", "not an MLS message");
  if (message.wireformat !== "mls_key_package") throw new MlsRefused("invalid", "not a KeyPackage");
  if (message.keyPackage.cipherSuite !== CIPHER_SUITE) throw new MlsRefused("invalid", "not cipher suite 2");
  return message.keyPackage;
}

/** The wire form of a KeyPackage (what a device uploads). */
export function encodeKeyPackage(keyPackage: KeyPackage): Uint8Array {
  return encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage });
}

/** The KeyPackageRef of a KeyPackage (RFC 9420 §5.2), as a Welcome names it. */
export async function keyPackageRefOf(keyPackage: KeyPackage): Promise<Uint8Array> {
  return makeKeyPackageRef(keyPackage, (await cipherSuite()).hash);
}

/** What an MLSMessage shows without keys (RFC 9420 §6), as the Delivery Service reads it. */
export type MessageHeader =
  | {
      readonly wireFormat: "private_message" | "public_message";
      readonly groupId: Uint8Array;
      readonly epoch: bigint;
      readonly contentType: "application" | "proposal" | "commit";
    }
  | { readonly wireFormat: "welcome"; readonly refs: readonly Uint8Array[] }
  | { readonly wireFormat: "group_info"; readonly groupId: Uint8Array; readonly epoch: bigint }
  | { readonly wireFormat: "key_package" };

export function messageHeader(message: MLSMessage): MessageHeader {
  switch (message.wireformat) {
    case "mls_private_message": {
      const { groupId, epoch, contentType } = message.privateMessage;
      return { wireFormat: "private_message", groupId, epoch, contentType };
    }
    case "mls_public_message": {
      const { groupId, epoch, contentType } = message.publicMessage.content;
      return { wireFormat: "public_message", groupId, epoch, contentType };
    }
    case "mls_welcome":
      return { wireFormat: "welcome", refs: message.welcome.secrets.map((secret) => secret.newMember) };
    case "mls_group_info": {
      const { groupId, epoch } = message.groupInfo.groupContext;
      return { wireFormat: "group_info", groupId, epoch };
    }
    case "mls_key_package":
      return { wireFormat: "key_package" };
  }
}

/** The header of an encoded MLSMessage, or null if the bytes are not one. */
export function readHeader(bytes: Uint8Array): MessageHeader | null {
  const message = decodeMessage(bytes);
  return message === null ? null : messageHeader(message);
}

function treeLeaves(tree: RatchetTree): Leaf[] {
  const leaves: Leaf[] = [];
  for (let nodeIndex = 0; nodeIndex < tree.length; nodeIndex += 2) {
    const node = tree[nodeIndex];
    if (node === undefined || node.nodeType !== "leaf") continue;
    leaves.push({
      leafIndex: nodeIndex / 2,
      device: credentialDevice(node.leaf.credential),
      signatureKey: node.leaf.signaturePublicKey,
    });
  }
  return leaves;
}

export function groupLeaves(state: ClientState): Leaf[] {
  return treeLeaves(state.ratchetTree);
}

export function groupEpoch(state: ClientState): bigint {
  return state.groupContext.epoch;
}

export function groupIdOf(state: ClientState): Uint8Array {
  return state.groupContext.groupId;
}

export function ownLeafIndex(state: ClientState): number {
  return state.privatePath.leafIndex;
}

/** False once a commit has removed this device (or a reinit suspended the group). */
export function isActiveMember(state: ClientState): boolean {
  return state.groupActiveState.kind === "active";
}

/** The GroupInfo of the state's epoch, with external_pub and the ratchet tree, as an encoded MLSMessage. */
export async function groupInfoOf(state: ClientState, cs: CiphersuiteImpl): Promise<Uint8Array> {
  const groupInfo = await createGroupInfoWithExternalPubAndRatchetTree(state, [], cs);
  return encodeMlsMessage({ version: "mls10", wireformat: "mls_group_info", groupInfo });
}

export interface CommitOutput {
  readonly state: ClientState;
  readonly commit: Uint8Array;
  readonly welcome: Uint8Array | undefined;
  readonly groupInfo: Uint8Array;
}

/**
 * A commit (a PrivateMessage) adding these KeyPackages and removing these
 * leaves, always with an update path; the Welcome (with the tree) when it
 * adds; the GroupInfo of the epoch it begins. `state` is the committer's
 * state once the commit is accepted.
 */
export async function commitChanges(
  state: ClientState,
  changes: { readonly add: readonly KeyPackage[]; readonly removeLeaves: readonly number[] },
  cs: CiphersuiteImpl,
): Promise<CommitOutput> {
  const result = await createCommit(
    { state, cipherSuite: cs },
    {
      extraProposals: [
        ...changes.removeLeaves.map((removed) => ({ proposalType: "remove" as const, remove: { removed } })),
        ...changes.add.map((keyPackage) => ({ proposalType: "add" as const, add: { keyPackage } })),
      ],
      ratchetTreeExtension: true,
    },
  );
  return {
    state: result.newState,
    commit: encodeMlsMessage(result.commit),
    welcome:
      result.welcome === undefined
        ? undefined
        : encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome: result.welcome }),
    groupInfo: await groupInfoOf(result.newState, cs),
  };
}

/**
 * The state after a commit of ours was accepted. Messages of the commit's
 * epoch that arrived while it was pending were read with the old state:
 * its chains, not the ones frozen when the commit was made, are kept for
 * reading late messages of that epoch.
 */
export function carryReceiverData(next: ClientState, current: ClientState): ClientState {
  const epoch = current.groupContext.epoch;
  const prior = next.historicalReceiverData.get(epoch);
  if (prior === undefined) return next;
  const historicalReceiverData = new Map(next.historicalReceiverData);
  historicalReceiverData.set(epoch, { ...prior, secretTree: current.secretTree });
  return { ...next, historicalReceiverData };
}

export type Incoming =
  | { readonly kind: "application"; readonly state: ClientState; readonly data: Uint8Array; readonly sender: Leaf }
  | {
      readonly kind: "commit";
      readonly state: ClientState;
      /** The committer's device (a member's leaf, or the external joiner's). */
      readonly sender: DeviceRef | null;
      readonly added: readonly DeviceRef[];
      readonly removed: readonly DeviceRef[];
      readonly removedSelf: boolean;
    };

/** The leaf that sent a PrivateMessage, from its sender data, in the tree of the message's epoch. */
async function privateSender(state: ClientState, message: PrivateMessage, cs: CiphersuiteImpl): Promise<Leaf> {
  const epoch =
    message.epoch === state.groupContext.epoch
      ? { secret: state.keySchedule.senderDataSecret, tree: state.ratchetTree }
      : (() => {
          const data = state.historicalReceiverData.get(message.epoch);
          return data === undefined ? undefined : { secret: data.senderDataSecret, tree: data.ratchetTree };
        })();
  if (epoch === undefined) throw new MlsRefused("undecryptable", "no keys for the message's epoch");
  const senderData = await decryptSenderData(message, epoch.secret, cs);
  if (senderData === undefined) throw new MlsRefused("invalid", "the sender data cannot be decoded");
  const leaf = treeLeaves(epoch.tree).find((candidate) => candidate.leafIndex === senderData.leafIndex);
  if (leaf === undefined) throw new MlsRefused("invalid", "the sender is not a leaf of the tree");
  return leaf;
}

function commitOutcome(
  before: ClientState,
  after: ClientState,
  sender: DeviceRef | null,
  proposals: readonly ProposalWithSender[],
): Incoming {
  const leaves = treeLeaves(before.ratchetTree);
  const removedLeaves = proposals.flatMap((p) =>
    p.proposal.proposalType === "remove" ? [p.proposal.remove.removed] : [],
  );
  const removed = removedLeaves.flatMap((index) => leaves.find((leaf) => leaf.leafIndex === index)?.device ?? []);
  const added = proposals.flatMap((p) =>
    p.proposal.proposalType === "add" ? (credentialDevice(p.proposal.add.keyPackage.leafNode.credential) ?? []) : [],
  );
  if (proposals.some((p) => p.proposal.proposalType === "external_init") && sender !== null) added.push(sender);
  const removedSelf =
    after.groupActiveState.kind === "removedFromGroup" || removedLeaves.includes(ownLeafIndex(before));
  return { kind: "commit", state: after, sender, added, removed, removedSelf };
}

/**
 * Reads an application message or a commit of the state's group, checking
 * everything RFC 9420 asks (signature, membership, credentials through the
 * state's authentication service). Throws on anything it cannot use:
 * `MlsRefused`, or ts-mls's errors (see `isCryptoFailure`).
 */
export async function processIncoming(state: ClientState, message: MLSMessage, cs: CiphersuiteImpl): Promise<Incoming> {
  let proposals: readonly ProposalWithSender[] = [];
  const capture = (incoming: { kind: "commit"; proposals: ProposalWithSender[] } | { kind: "proposal" }) => {
    if (incoming.kind === "commit") proposals = incoming.proposals;
    return "accept" as const;
  };
  if (message.wireformat === "mls_private_message") {
    const pm = message.privateMessage;
    if (pm.contentType === "proposal") throw new MlsRefused("invalid", "standalone proposals are not used");
    const sender = await privateSender(state, pm, cs);
    if (pm.contentType === "application") {
      const result = await processPrivateMessage(state, pm, emptyPskIndex, cs);
      if (result.kind !== "applicationMessage") throw new MlsRefused("invalid", "not an application message");
      return { kind: "application", state: result.newState, data: result.message, sender };
    }
    const result = await processPrivateMessage(state, pm, emptyPskIndex, cs, capture);
    return commitOutcome(state, result.newState, sender.device, proposals);
  }
  if (message.wireformat === "mls_public_message") {
    const pm: PublicMessage = message.publicMessage;
    if (pm.content.contentType !== "commit") throw new MlsRefused("invalid", "only commits travel as PublicMessage");
    let sender: DeviceRef | null;
    if (pm.content.sender.senderType === "member") {
      const index = pm.content.sender.leafIndex;
      sender = treeLeaves(state.ratchetTree).find((leaf) => leaf.leafIndex === index)?.device ?? null;
    } else if (pm.content.sender.senderType === "new_member_commit") {
      const path = pm.content.commit.path;
      if (path === undefined) throw new MlsRefused("invalid", "an external commit without a path");
      sender = credentialDevice(path.leafNode.credential);
    } else {
      throw new MlsRefused("invalid", "a commit from an external sender");
    }
    const result = await processPublicMessage(state, pm, emptyPskIndex, cs, capture);
    return commitOutcome(state, result.newState, sender, proposals);
  }
  throw new MlsRefused("invalid", `not a group message (${message.wireformat})`);
}

/** The KeyPackageRefs a Welcome names (one per device it adds). */
export function welcomeRefs(welcome: Welcome): Uint8Array[] {
  return welcome.secrets.map((secret) => secret.newMember);
}

/** Whether a leaf of the GroupInfo's tree has this signature key. */
export function groupInfoHasSignatureKey(groupInfo: GroupInfo, signatureKey: Uint8Array): boolean {
  let tree: RatchetTree | undefined;
  try {
    tree = ratchetTreeFromExtension(groupInfo);
  } catch {
    return false;
  }
  return tree !== undefined && treeLeaves(tree).some((leaf) => equal(leaf.signatureKey, signatureKey));
}

/**
 * An external commit (a PublicMessage) by which this device joins the group
 * of the GroupInfo, and its state once the commit is accepted. With
 * `resync`, the leaf that has the same signature key is removed in the same
 * commit; without such a leaf it is refused (`not_in_tree`), as ts-mls
 * would loop forever.
 */
export async function joinByExternalCommit(
  groupInfo: GroupInfo,
  own: { publicPackage: KeyPackage; privatePackage: PrivateKeyPackage },
  resync: boolean,
  config: ClientConfig,
  cs: CiphersuiteImpl,
): Promise<{ state: ClientState; commit: Uint8Array }> {
  if (resync && !groupInfoHasSignatureKey(groupInfo, own.publicPackage.leafNode.signaturePublicKey)) {
    throw new MlsRefused("not_in_tree", "no leaf of the group has this device's signature key");
  }
  const { publicMessage, newState } = await joinGroupExternal(
    groupInfo,
    own.publicPackage,
    own.privatePackage,
    resync,
    cs,
    undefined,
    config,
  );
  return {
    state: newState,
    commit: encodeMlsMessage({ version: "mls10", wireformat: "mls_public_message", publicMessage }),
  };
}

/** A group state as bytes. It holds the signing key and epoch secrets: seal it at rest. */
export function encodeState(state: ClientState): Uint8Array {
  return encodeGroupState(state);
}

/** A group state from `encodeState`, with this configuration; null if the bytes are not one. */
export function decodeState(bytes: Uint8Array, config: ClientConfig): ClientState | null {
  try {
    const decoded = decodeGroupState(bytes, 0);
    if (decoded === undefined || decoded[1] !== bytes.length) return null;
    return { ...decoded[0], clientConfig: config };
  } catch {
    return null;
  }
}

/** MLS-Exporter (RFC 9420 §8.5) of the state's epoch. */
export async function exportSecret(
  state: ClientState,
  label: string,
  context: Uint8Array,
  length: number,
  cs: CiphersuiteImpl,
): Promise<Uint8Array> {
  return mlsExporter(state.keySchedule.exporterSecret, label, context, length, cs);
}
