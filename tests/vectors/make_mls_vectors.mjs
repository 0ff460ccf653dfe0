// Writes mls_vectors.json: real MLS messages (suite 2) made by ts-mls 1.6.4.
// Run from a directory where `npm install ts-mls@1.6.4 @noble/curves@2` was done:
//   node make_mls_vectors.mjs > mls_vectors.json
// Each vector holds the encoded MLSMessage (hex) and what ts-mls says a
// Delivery Service should read from it.
import {
  createApplicationMessage, createCommit, createGroup, createGroupInfoWithExternalPubAndRatchetTree,
  defaultCapabilities, defaultLifetime, emptyPskIndex, encodeMlsMessage, generateKeyPackage,
  getCiphersuiteFromName, getCiphersuiteImpl, joinGroup,
} from "ts-mls";
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";

const hex = (b) => Buffer.from(b).toString("hex");
const cs = await getCiphersuiteImpl(getCiphersuiteFromName("MLS_128_DHKEMP256_AES128GCM_SHA256_P256"));
const enc = new TextEncoder();
const kp = (name) =>
  generateKeyPackage({ credentialType: "basic", identity: enc.encode(name) }, defaultCapabilities(), defaultLifetime, [], cs);

const alice = await kp("alice");
const bob = await kp("bob");
const carol = await kp("carol");
const groupId = enc.encode("confide-room-1");
let state = await createGroup(groupId, alice.publicPackage, alice.privatePackage, [], cs);

const vectors = [];
for (const [name, k] of [["key_package_bob", bob], ["key_package_carol", carol]]) {
  vectors.push({
    name, wire_format: 5, cipher_suite: 2,
    ref: hex(await makeKeyPackageRef(k.publicPackage, cs.hash)),
    message: hex(encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage: k.publicPackage })),
  });
}

const added = await createCommit({ state, cipherSuite: cs }, {
  extraProposals: [
    { proposalType: "add", add: { keyPackage: bob.publicPackage } },
    { proposalType: "add", add: { keyPackage: carol.publicPackage } },
  ],
  ratchetTreeExtension: true,
});
vectors.push({ name: "commit_private_epoch0", wire_format: 2, epoch: 0, content_type: 3, group_id: hex(groupId), message: hex(encodeMlsMessage(added.commit)) });
vectors.push({
  name: "welcome_bob_carol", wire_format: 3, cipher_suite: 2,
  new_members: [hex(await makeKeyPackageRef(bob.publicPackage, cs.hash)), hex(await makeKeyPackageRef(carol.publicPackage, cs.hash))],
  message: hex(encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome: added.welcome })),
});
state = added.newState;
await joinGroup(added.welcome, bob.publicPackage, bob.privatePackage, emptyPskIndex, cs);

const app = await createApplicationMessage(state, enc.encode("hello"), cs, enc.encode("ad"));
state = app.newState;
vectors.push({ name: "application_private_epoch1", wire_format: 2, epoch: 1, content_type: 1, group_id: hex(groupId), message: hex(encodeMlsMessage({ version: "mls10", wireformat: "mls_private_message", privateMessage: app.privateMessage })) });

const gi = await createGroupInfoWithExternalPubAndRatchetTree(state, [], cs);
vectors.push({ name: "group_info_epoch1", wire_format: 4, epoch: 1, cipher_suite: 2, group_id: hex(groupId), message: hex(encodeMlsMessage({ version: "mls10", wireformat: "mls_group_info", groupInfo: gi })) });

const pub = await createCommit({ state, cipherSuite: cs }, { wireAsPublicMessage: true, authenticatedData: enc.encode("hi") });
vectors.push({ name: "commit_public_epoch1", wire_format: 1, epoch: 1, content_type: 3, sender_type: 1, sender_index: 0, authenticated_data: hex(enc.encode("hi")), group_id: hex(groupId), message: hex(encodeMlsMessage(pub.commit)) });

console.log(JSON.stringify({ generator: "ts-mls 1.6.4", suite: "MLS_128_DHKEMP256_AES128GCM_SHA256_P256", vectors }, null, 1));
