/**
 * The SDK surface this client is written against (`ConfideClient` and `Room` of
 * `@confide/client`). Until the SDK exports them, the declarations live here.
 */

export interface Me {
  id: string;
  email: string;
  display_name: string;
  role: "client" | "counselor" | "admin";
}

export interface Invitation {
  id: string;
  room_id: string;
  host: { account_id: string; display_name: string };
  title: string;
  starts_at: string | null;
  ends_at: string | null;
  created_at: string;
}

export interface ConsentDocument {
  id: string;
  kind: string;
  locale: string;
  version: number;
  title: string;
  body: string;
  sha256: string;
  published_at: string;
}

export interface RoomView {
  id: string;
  title: string;
  kind: "individual" | "group";
  status: "scheduled" | "open" | "ended";
  starts_at: string | null;
  ends_at: string | null;
  waiting_room: boolean;
  locked: boolean;
  participants: { account_id: string; display_name: string; role: string; admitted: boolean }[];
  mls_group_id: string;
}

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

export interface Room {
  readonly id: string;
  readonly state: "connecting" | "waiting" | "admitted" | "ended";
  readonly secure: boolean;
  readonly self: { accountId: string; deviceId: string };
  on<K extends keyof RoomEvents>(type: K, handler: (event: RoomEvents[K]) => void): () => void;
  participants(): Participant[];
  send(content: string | Uint8Array): Promise<void>;
  sendTo(deviceId: string, bytes: Uint8Array): Promise<void>;
  close(): void;
}

export interface ConfideClient {
  readonly me: Me | null;
  login(email: string, password: string): Promise<Me>;
  /** Restore the session after a reload (stored refresh token). */
  resume(): Promise<Me | null>;
  logout(): Promise<void>;
  /** Register this browser's device, or load it. */
  ensureDevice(label: string): Promise<void>;
  invitations(): Promise<Invitation[]>;
  acceptInvitation(id: string): Promise<RoomView>;
  /** Current documents not yet accepted. */
  consentsToAccept(): Promise<ConsentDocument[]>;
  acceptConsent(documentId: string): Promise<void>;
  rooms(): Promise<RoomView[]>;
  admit(roomId: string, accountId: string): Promise<void>;
  joinRoom(roomId: string): Promise<Room>;
  /** 60 digits. */
  safetyNumber(accountId: string): Promise<string>;
  markVerified(accountId: string): Promise<void>;
  isVerified(accountId: string): Promise<boolean>;
  iceServers(roomId: string): Promise<RTCIceServer[]>;
}

export interface ConfideClientFactory {
  open(opts: { baseUrl: string }): Promise<ConfideClient>;
}
