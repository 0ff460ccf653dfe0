import assert from "node:assert/strict";
import { test } from "node:test";

import { RoomGroup } from "../src/group.js";
import { FakeDS } from "./support/fake-ds.js";
import { Device, KeyLogs, ROOM_GROUP } from "./support/group-devices.js";

/** mulberry32: a small seeded generator, so that a failure names the seed that reproduces it. */
function random(seed: number): (below: number) => number {
  let state = seed >>> 0;
  return (below) => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * below);
  };
}

/**
 * A random walk over what three members do (speak, signal one device,
 * commit an update, possibly racing one another, read their frames or not
 * yet, save and reload): at the end every device has read every broadcast
 * of the others exactly once, every directed message reached only its
 * device, and all are in the relay's epoch.
 */
async function walk(seed: number, steps: number): Promise<void> {
  const pick = random(seed);
  const ds = new FakeDS(ROOM_GROUP);
  const logs = new KeyLogs();
  const devices = [new Device(ds, logs), new Device(ds, logs), new Device(ds, logs)] as const;
  const [first, ...others] = devices;
  await first.create();
  for (const device of others) ds.admit(device.ref);
  const added = await first.commit({ add: await Promise.all(others.map((d) => d.claimKeyPackage())) });
  assert.equal(added.ok, true);
  for (const device of others) await device.pump();

  /** What each device must have read: "from|text" for every message another device sent it. */
  const expected = new Map(devices.map((d) => [d, [] as string[]]));
  let counter = 0;
  for (let step = 0; step < steps; step++) {
    const actor = devices[pick(3)] ?? first;
    const context = `seed ${seed}, step ${step}`;
    switch (pick(6)) {
      case 0:
      case 1: {
        // A live client has read what came before it speaks.
        await actor.pump();
        const text = `m${counter++}`;
        await actor.say(text);
        for (const device of devices) if (device !== actor) expected.get(device)?.push(`${actor.name}|${text}`);
        break;
      }
      case 2: {
        await actor.pump();
        const to = devices.filter((d) => d !== actor)[pick(2)] ?? first;
        const text = `s${counter++}`;
        const sent = ds.sendDirected(
          actor.ref,
          await actor.joined().encryptFor([to.ref.deviceId], { kind: "signal", bytes: new TextEncoder().encode(text) }),
        );
        assert.equal(sent.ok, true, context);
        expected.get(to)?.push(`${actor.name}|${text}`);
        break;
      }
      case 3: {
        // Half the time without reading first: a race the relay settles.
        if (pick(2) === 0) await actor.pump();
        const result = await actor.commit({ update: true });
        if (!result.ok) assert.equal(result.code, "stale_epoch", context);
        break;
      }
      case 4:
        await actor.pump();
        break;
      default:
        actor.group = await RoomGroup.decode(actor.joined().encode(), logs.auth);
    }
  }
  for (const device of devices) await device.pump();

  for (const device of devices) {
    const read = device.seen.flatMap((r) => {
      if (r.kind !== "application") return [];
      const sender = devices.find((d) => d.ref.deviceId === r.sender.deviceId)?.name ?? "?";
      const body = r.payload.kind === "text" ? r.payload.text : new TextDecoder().decode(r.payload.bytes);
      return [`${sender}|${body}`];
    });
    assert.deepEqual(read, expected.get(device), `seed ${seed}: what ${device.name} read`);
    assert.deepEqual(
      device.seen.filter((r) => r.kind === "refused"),
      [],
      `seed ${seed}: ${device.name} refused nothing`,
    );
    assert.equal(device.joined().epoch, ds.epoch, `seed ${seed}: ${device.name}'s epoch`);
  }
}

test("random walks of three members converge: every message read once, every epoch the relay's", async () => {
  const base = Date.now();
  for (let run = 0; run < 4; run++) await walk(base + run, 40);
});
