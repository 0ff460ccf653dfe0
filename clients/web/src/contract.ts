/** The SDK types this client is written against (`@confide/client`). */

export type {
  Account as Me,
  ConfideClient,
  ConsentDocument,
  Invitation,
  Room,
  RoomEvents,
  RoomParticipant as Participant,
  RoomView,
} from "@confide/client";
