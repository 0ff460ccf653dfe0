/**
 * A server that lies about keys (the test-only fault switch
 * `CONFIDE_TEST_FAULT=swap_device_key`: every device's signing key in the
 * key log is swapped for one the server made, with the hashes recomputed and
 * the head re-signed) is caught by the SDK: the key log fails its check at
 * the identity key's signature, and the host's SDK refuses to add the device.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { LogBroken } from "../../src/keylog.js";
import { member, openRoom, until } from "../support/session.js";
import { startServer } from "../support/server.js";

test("a server that swaps a device's key is caught: the key log fails its check and the device is not added", async () => {
  const lying = await startServer({ CONFIDE_TEST_FAULT: "swap_device_key" });
  try {
    await lying.publishConsent();
    const counselor = await member(lying, await lying.person("counselor"));
    const client = await member(lying, await lying.person("client"));
    const roomId = await openRoom(counselor, [client], { title: "One to one", kind: "individual", waitingRoom: true });

    await assert.rejects(client.client.safetyNumber(counselor.person.id), LogBroken);
    await assert.rejects(counselor.client.safetyNumber(client.person.id), LogBroken);

    const host = await counselor.client.joinRoom(roomId);
    const errors: string[] = [];
    host.on("error", (e) => errors.push(e.code));
    const guest = await client.client.joinRoom(roomId);
    await counselor.client.admit(roomId, client.person.id);
    await until(() => errors.length > 0, "the host's SDK to refuse the swapped key");
    assert.ok(
      errors.every((code) => code === "key_refused"),
      `errors: ${errors.join(", ")}`,
    );
    assert.equal(guest.secure, false, "no Welcome made with a swapped key reached the client");
    assert.ok(!host.groupDevices().includes(client.client.deviceId ?? ""));
    host.close();
    guest.close();
  } finally {
    await lying.stop();
  }
});
