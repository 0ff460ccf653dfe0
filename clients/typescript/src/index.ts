export * from "./group.js";
export * from "./identity.js";
export * from "./keylog.js";
export * from "./safety.js";
export * from "./jws.js";
export * from "./api.js";
export * from "./store.js";
export * from "./device.js";
export * from "./contacts.js";
export { fromBase64Url, fromHex, toBase64Url, toHex } from "./bytes.js";
export type { Room as RoomView } from "./api.js";
export { ConfideClient, type ClientOptions, type IceServer } from "./client.js";
export { Room, type RoomContext, type RoomEvents, type Participant as RoomParticipant } from "./room.js";
export {
  RoomSocket,
  SendRefused,
  SocketClosed,
  type WebSocketFactory,
  type WebSocketLike,
  defaultWebSocketFactory,
} from "./socket.js";
