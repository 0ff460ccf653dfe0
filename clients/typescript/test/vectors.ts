import { readFileSync } from "node:fs";

/** test/vectors/keys.json, written by tests/keys/sdk_vectors.py from the Python reference. */
export interface Vectors {
  device_statements: {
    account_id: string;
    device_id: string;
    signing_key: string;
    public_key: string;
    statement: string;
    identity_key: string;
    signature: string;
    signature_high_s: string;
    signature_tampered: string;
  }[];
  key_log: {
    account_id: string;
    entries: import("../src/keylog.js").WireEntry[];
    head: { seq: number; hash: string };
    identity_key: string;
    devices: Record<string, string>;
  };
  safety_numbers: {
    identity_key: string;
    account_id: string;
    other_identity_key: string;
    other_account_id: string;
    groups: string[];
  }[];
}

// dist/test/ -> test/vectors/ (the JSON is not copied by tsc).
export const vectors: Vectors = JSON.parse(
  readFileSync(new URL("../../test/vectors/keys.json", import.meta.url), "utf8"),
) as Vectors;
