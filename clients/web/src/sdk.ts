/**
 * The client this page runs on. Becomes `export { ConfideClient } from "@confide/client";`
 * once the SDK implements the contract in ./contract.ts; until then, the in-memory fake.
 */
export { FakeClient as ConfideClient, FAKE_CLIENT } from "./fake.js";
