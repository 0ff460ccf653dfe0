export * from "./group.js";
export * from "./identity.js";
export * from "./keylog.js";
export * from "./safety.js";
export { fromBase64Url, fromHex, toBase64Url, toHex } from "./bytes.js";
