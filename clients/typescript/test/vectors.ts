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
  key_log_head: {
    jwks: import("../src/jws.js").Jwks;
    account_id: string;
    head: { seq: number; hash: string; jws: string };
    claims: Record<string, unknown>;
    high_s: string;
    wrong_typ: string;
    wrong_aud: string;
    unknown_kid: string;
    tampered: string;
    alg_none: string;
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
