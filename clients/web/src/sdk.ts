/** The client this page runs on: the SDK's. */
export { ConfideClient } from "@confide/client";
