import assert from "node:assert/strict";
import { test } from "node:test";

import { GroupError, JoinBuffer, type Processed, RoomGroup } from "../src/group.js";
import { FakeDS } from "./support/fake-ds.js";
import { Device, KeyLogs, ROOM_GROUP, acceptAll, kinds, texts } from "./support/group-devices.js";

/** A room of three devices of three accounts: A made the group and added B and C. */
async function room(): Promise<{ ds: FakeDS; logs: KeyLogs; a: Device; b: Device; c: Device }> {
  const ds = new FakeDS(ROOM_GROUP);
  const logs = new KeyLogs();
  const a = new Device(ds, logs);
  const b = new Device(ds, logs);
  const c = new Device(ds, logs);
  await a.create();
  ds.admit(b.ref);
  ds.admit(c.ref);
  const result = await a.commit({ add: [await b.claimKeyPackage(), await c.claimKeyPackage()] });
  assert.equal(result.ok, true);
  await b.pump();
  await c.pump();
  return { ds, logs, a, b, c };
}

function applications(results: readonly Processed[]) {
  return results.flatMap((r) => (r.kind === "application" ? [r] : []));
}

test("three devices: create, add two by KeyPackage and Welcome, messages all ways in seq order", async () => {
  const { ds, a, b, c } = await room();
  for (const device of [a, b, c]) {
    assert.equal(device.joined().epoch, 1n);
    assert.equal(device.joined().isMember, true);
    assert.deepEqual(
      device
        .joined()
        .members()
        .map((m) => m.deviceId)
        .sort(),
      [a, b, c].map((d) => d.ref.deviceId).sort(),
    );
  }
  assert.equal(ds.getGroupInfo() !== undefined, true);

  const first = await a.say("from A");
  const second = await b.say("from B");
  await c.send({ kind: "bytes", bytes: new Uint8Array([0, 1, 2, 255]) });
  assert.ok(first < second);

  const atA = await a.pump();
  const atB = await b.pump();
  const atC = await c.pump();
  assert.deepEqual(texts(atC), ["from A", "from B"]);
  assert.deepEqual(texts(atB), ["from A"]);
  assert.deepEqual(texts(atA), ["from B"]);
  const bytesAtA = applications(atA).find((r) => r.payload.kind === "bytes");
  assert.ok(bytesAtA !== undefined && bytesAtA.payload.kind === "bytes");
  assert.deepEqual([...bytesAtA.payload.bytes], [0, 1, 2, 255]);
  assert.deepEqual(bytesAtA.sender, c.ref);
  const fromA = applications(atC)[0];
  assert.deepEqual(fromA?.sender, a.ref);
  assert.equal(fromA?.seq, first);
  // Results come in the relay's order and the last seq follows them.
  const seqs = atC.map((r) => r.seq);
  assert.deepEqual(
    seqs,
    [...seqs].sort((x, y) => x - y),
  );
  assert.equal(c.joined().lastSeq, ds.seq - 1);
});

test("directed messages reach one device; the others still read later broadcasts, also after 300", async () => {
  const { a, b, c } = await room();
  const signal = (n: number) => ({ kind: "signal" as const, bytes: new Uint8Array([n & 0xff, n >> 8]) });
  const directed = await a.joined().encryptFor([b.ref.deviceId], signal(0));
  assert.equal(a.ds.sendDirected(a.ref, directed).ok, true);
  await a.say("after one signal");
  let atB = await b.pump();
  let atC = await c.pump();
  assert.deepEqual(kinds(atB), ["application", "application"]);
  assert.equal(applications(atB)[0]?.payload.kind, "signal");
  assert.deepEqual(texts(atC), ["after one signal"]);

  for (let n = 1; n <= 300; n++) {
    assert.equal(a.ds.sendDirected(a.ref, await a.joined().encryptFor([b.ref.deviceId], signal(n))).ok, true);
  }
  await a.say("after 300 signals");
  atB = await b.pump();
  atC = await c.pump();
  const signals = applications(atB).filter((r) => r.payload.kind === "signal");
  assert.equal(signals.length, 300);
  const last = signals.at(-1);
  assert.ok(last !== undefined && last.payload.kind === "signal");
  assert.deepEqual([...last.payload.bytes], [300 & 0xff, 300 >> 8]);
  assert.deepEqual(texts(atB), ["after 300 signals"]);
  assert.deepEqual(kinds(atC), ["application"]);
  assert.deepEqual(texts(atC), ["after 300 signals"]);
  assert.equal(a.joined().needsUpdate, false);
});

test("two members commit in one epoch: one wins, the loser reads the winner's commit and retries", async () => {
  const { ds, a, b, c } = await room();
  const fromB = await b.joined().commit({ update: true });
  const fromC = await c.joined().commit({ update: true });
  assert.equal(fromB.epoch, 1n);
  assert.equal(fromC.epoch, 1n);
  await assert.rejects(c.joined().commit({}), (e: unknown) => e instanceof GroupError && e.code === "commit_pending");

  assert.equal((await b.sendCommit(fromB)).ok, true);
  const lost = await c.sendCommit(fromC);
  assert.deepEqual(lost, { ok: false, code: "stale_epoch", epoch: 2n });
  assert.equal(c.joined().pending, undefined);
  assert.equal(c.joined().epoch, 1n);
  // Adopting a commit that lost is refused.
  await assert.rejects(
    c.joined().adopt(fromC, 99),
    (e: unknown) => e instanceof GroupError && e.code === "not_pending",
  );

  const atC = await c.pump();
  assert.equal(atC[0]?.kind, "commit");
  assert.equal(c.joined().epoch, 2n);
  assert.equal((await c.commit({ update: true })).ok, true);
  await a.pump();
  await b.pump();
  for (const device of [a, b, c]) assert.equal(device.joined().epoch, 3n);
  assert.equal(ds.epoch, 3n);

  await c.say("after the race");
  assert.deepEqual(texts(await a.pump()), ["after the race"]);
  assert.deepEqual(texts(await b.pump()), ["after the race"]);
});

test("a pending commit: frames of its epoch are read with the old state; the winner's commit drops it", async () => {
  const { a, b, c } = await room();
  const pending = await b.joined().commit({ update: true });
  await a.say("while B's commit is pending");
  assert.deepEqual(texts(await b.pump()), ["while B's commit is pending"]);
  // C wins epoch 1; B reads C's commit with the old state and its own commit is dropped.
  assert.equal((await c.commit({ update: true })).ok, true);
  const atB = await b.pump();
  assert.equal(atB[0]?.kind, "commit");
  assert.equal(b.joined().pending, undefined);
  assert.deepEqual(await b.joined().discard(pending), []);
  assert.equal(b.joined().epoch, 2n);
});

test("a removed device is told so and cannot read what follows", async () => {
  const { a, b, c } = await room();
  const before = c.joined().encode();
  assert.equal((await a.commit({ remove: [c.ref] })).ok, true);
  const atB = await b.pump();
  const atC = await c.pump();
  const commitAtB = atB[0];
  assert.ok(commitAtB?.kind === "commit");
  assert.deepEqual(commitAtB.removed, [c.ref]);
  assert.equal(commitAtB.removedSelf, false);
  const commitAtC = atC[0];
  assert.ok(commitAtC?.kind === "commit");
  assert.equal(commitAtC.removedSelf, true);
  assert.equal(c.joined().isMember, false);
  assert.deepEqual(
    b
      .joined()
      .members()
      .map((m) => m.deviceId)
      .sort(),
    [a.ref.deviceId, b.ref.deviceId].sort(),
  );

  await a.say("without C");
  assert.deepEqual(texts(await b.pump()), ["without C"]);
  assert.deepEqual(kinds(await c.pump()), ["skipped:not_member"]);
  await assert.rejects(c.joined().encrypt({ kind: "text", text: "x" }), (e: unknown) => e instanceof GroupError);
  // Its state from before the removal, had it missed the commit, does not read the next epoch either.
  const old = await RoomGroup.decode(before, c.logs.auth);
  const said = c.ds.replay(c.ref, old.lastSeq).at(-1);
  assert.ok(said !== undefined);
  assert.deepEqual(kinds([await old.process(said)]), ["refused:future_epoch"]);
  await assert.rejects(
    a.joined().commit({ remove: [c.ref] }),
    (e: unknown) => e instanceof GroupError && e.code === "unknown_device",
  );
  await assert.rejects(
    a.joined().commit({ remove: [a.ref] }),
    (e: unknown) => e instanceof GroupError && e.code === "remove_self",
  );
});

test("a device that lost its state rejoins by external commit with resync", async () => {
  const { ds, a, b, c } = await room();
  await a.say("before the loss");
  await b.pump();
  await c.pump();
  b.group = undefined;
  ds.take(b.ref);

  const groupInfo = ds.getGroupInfo();
  assert.ok(groupInfo !== undefined);
  assert.equal(RoomGroup.treeHasSigningKey(groupInfo, b.signing.publicKey), true);
  assert.equal((await b.joinExternally(true)).ok, true);
  assert.equal(b.joined().isMember, true);
  assert.equal(b.joined().epoch, 2n);

  const atA = await a.pump();
  const atC = await c.pump();
  for (const results of [atA, atC]) {
    const commit = results[0];
    assert.ok(commit?.kind === "commit");
    assert.deepEqual(commit.sender, b.ref);
    assert.deepEqual(commit.added, [b.ref]);
    assert.deepEqual(commit.removed, [b.ref]);
  }
  assert.equal(a.joined().members().length, 3);
  await b.say("back");
  await a.say("welcome back");
  assert.deepEqual(texts(await a.pump()), ["back"]);
  assert.deepEqual(texts(await c.pump()), ["back", "welcome back"]);
  assert.deepEqual(texts(await b.pump()), ["welcome back"]);
});

test("a new device joins by external commit without resync; resync needs a leaf with its key", async () => {
  const { ds, logs, a, b, c } = await room();
  const d = new Device(ds, logs);
  ds.admit(d.ref);
  const groupInfo = ds.getGroupInfo();
  assert.ok(groupInfo !== undefined);
  assert.equal(RoomGroup.treeHasSigningKey(groupInfo, d.signing.publicKey), false);
  await assert.rejects(
    RoomGroup.externalJoin({
      groupId: ds.groupId,
      self: d.ref,
      signing: d.signing,
      auth: logs.auth,
      groupInfo,
      resync: true,
    }),
    (e: unknown) => e instanceof GroupError && e.code === "not_in_tree",
  );
  assert.equal((await d.joinExternally(false)).ok, true);
  for (const device of [a, b, c]) {
    const commit = (await device.pump())[0];
    assert.ok(commit?.kind === "commit");
    assert.deepEqual(commit.added, [d.ref]);
    assert.deepEqual(commit.removed, []);
    assert.equal(device.joined().members().length, 4);
  }
  await d.say("hello from D");
  for (const device of [a, b, c]) assert.deepEqual(texts(await device.pump()), ["hello from D"]);
  await c.say("hello D");
  assert.deepEqual(texts(await d.pump()), ["hello D"]);
});

test("frames relayed before the Welcome are buffered, then read after joining; earlier epochs skipped", async () => {
  const ds = new FakeDS(ROOM_GROUP);
  const logs = new KeyLogs();
  const a = new Device(ds, logs);
  const b = new Device(ds, logs);
  const c = new Device(ds, logs);
  await a.create();
  ds.admit(b.ref);
  assert.equal((await a.commit({ add: [await b.claimKeyPackage()] })).ok, true);
  await b.pump();

  ds.admit(c.ref);
  await a.say("epoch 1, before C is added");
  const pending = await a.joined().commit({ add: [await c.claimKeyPackage()] });
  const commitSeq = ds.send(a.ref, pending.commit);
  assert.ok(commitSeq.ok);
  await a.joined().adopt(pending, commitSeq.seq);
  await b.pump();
  await b.say("epoch 2, before the Welcome");
  await a.pump();
  assert.ok(pending.welcome !== undefined);
  assert.equal(ds.send(a.ref, pending.welcome).ok, true);
  await a.say("epoch 2, after the Welcome");

  const atC = await c.pump();
  assert.equal(c.buffer.size, 0);
  assert.deepEqual(kinds(atC), [
    "skipped:old_epoch",
    "skipped:old_epoch",
    "application",
    "skipped:welcome",
    "application",
  ]);
  assert.deepEqual(texts(atC), ["epoch 2, before the Welcome", "epoch 2, after the Welcome"]);
  assert.equal(c.joined().epoch, 2n);
});

test("the join buffer keeps its bounds, dropping the oldest frames", () => {
  const buffer = new JoinBuffer({ maxFrames: 3, maxBytes: 100 });
  const frame = (seq: number, size: number) => ({
    seq,
    sender: { account_id: "", device_id: "" },
    ciphertext: new Uint8Array(size),
  });
  for (let seq = 1; seq <= 5; seq++) buffer.add(frame(seq, 10));
  assert.equal(buffer.size, 3);
  assert.equal(buffer.dropped, 2);
  buffer.add(frame(6, 90));
  assert.equal(buffer.size, 2);
  assert.equal(buffer.bytes, 100);
  assert.equal(buffer.dropped, 4);
  buffer.add(frame(5, 10));
  assert.equal(buffer.size, 2);
  buffer.add(frame(7, 101));
  assert.equal(buffer.size, 2);
  assert.equal(buffer.dropped, 5);
});

test("replays are idempotent and our own frames in a replay are skipped", async () => {
  const { ds, a, b, c } = await room();
  const seq = await a.say("once");
  const frame = ds.take(b.ref).find((f) => f.seq === seq);
  assert.ok(frame !== undefined);
  assert.equal((await b.joined().process(frame)).kind, "application");
  assert.deepEqual(await b.joined().process(frame), { kind: "skipped", seq, reason: "old" });

  // Frames handed over without waiting are read one at a time, in order.
  const burst = [await a.say("one"), await a.say("two"), await a.say("three")];
  const frames = ds.take(b.ref);
  assert.deepEqual(
    frames.map((f) => f.seq),
    burst,
  );
  assert.deepEqual(texts(await Promise.all(frames.map((f) => b.joined().process(f)))), ["one", "two", "three"]);
  for (const seq of [0, -1, 1.5, Number.NaN]) {
    assert.deepEqual(kinds([await b.joined().process({ ...frame, seq })]), ["refused:invalid"]);
  }
  assert.equal(b.joined().lastSeq, burst[2]);

  await b.say("from B");
  await c.pump();
  const replayed: Processed[] = [];
  for (const f of ds.replay(b.ref, 0)) replayed.push(await b.joined().process(f));
  // Everything up to the last seq handled is old; our own broadcast (never echoed live) is skipped.
  assert.deepEqual(kinds(replayed), [...Array<string>(6).fill("skipped:old"), "skipped:own"]);

  // A device that reloads from an earlier save skips its own frames in the replay.
  const saved = b.joined().encode();
  await b.say("after the save");
  const reloaded = await RoomGroup.decode(saved, b.logs.auth);
  const again: Processed[] = [];
  for (const f of ds.replay(b.ref, reloaded.lastSeq)) again.push(await reloaded.process(f));
  assert.deepEqual(kinds(again), ["skipped:own"]);
});

test("a frame whose named sender is not the signer is refused and changes nothing", async () => {
  const { ds, a, b, c } = await room();
  const seq = await b.say("from B");
  const frame = ds.take(c.ref).find((f) => f.seq === seq);
  assert.ok(frame !== undefined);
  const relabelled = { ...frame, sender: a.sender };
  const refused = await c.joined().process(relabelled);
  assert.equal(refused.kind, "refused");
  assert.equal(refused.kind === "refused" && refused.reason, "sender_mismatch");
  // The same message, truthfully named, still decrypts: the refusal consumed no key.
  const honest = await c.joined().process({ ...frame, seq: seq + 1000 });
  assert.equal(honest.kind, "application");
  assert.deepEqual(honest.kind === "application" && honest.sender, b.ref);
  // A commit named as another device's is refused too.
  assert.equal((await a.commit({ update: true })).ok, true);
  const commit = ds.take(b.ref)[0];
  assert.ok(commit !== undefined);
  const relabelledCommit = await b.joined().process({ ...commit, seq: commit.seq + 2000, sender: c.sender });
  assert.equal(relabelledCommit.kind === "refused" && relabelledCommit.reason, "sender_mismatch");
  assert.equal(b.joined().epoch, 1n);
  // An erased account's frames carry an empty sender: the MLS sender stands.
  const erased = await b
    .joined()
    .process({ ...commit, seq: commit.seq + 3000, sender: { account_id: "", device_id: "" } });
  assert.equal(erased.kind === "commit" && erased.sender.deviceId, a.ref.deviceId);
});

test("the group survives a save and reload mid-session", async () => {
  const { a, b, c } = await room();
  await a.say("one");
  await b.pump();
  const saved = b.joined().encode();
  b.group = await RoomGroup.decode(saved, b.logs.auth);
  assert.equal(b.joined().epoch, 1n);
  assert.equal(b.joined().members().length, 3);
  await a.say("two");
  assert.deepEqual(texts(await b.pump()), ["two"]);
  assert.equal((await b.commit({ update: true })).ok, true);
  await b.say("three");
  assert.deepEqual(texts(await a.pump()), ["three"]);
  assert.deepEqual(texts(await c.pump()), ["one", "two", "three"]);
  assert.deepEqual(
    await b.joined().exporter("SFrame 1.0 Base Key", new Uint8Array(), 16),
    await c.joined().exporter("SFrame 1.0 Base Key", new Uint8Array(), 16),
  );

  for (const bad of [new Uint8Array(), saved.slice(0, saved.length - 1), new Uint8Array([...saved, 0])]) {
    await assert.rejects(
      RoomGroup.decode(bad, b.logs.auth),
      (e: unknown) => e instanceof GroupError && e.code === "invalid_state",
    );
  }
});

test("garbage and tampered ciphertexts are refused without throwing, and change nothing", async () => {
  const { ds, a, b } = await room();
  const seq = await a.say("intact");
  const frame = ds.take(b.ref).find((f) => f.seq === seq);
  assert.ok(frame !== undefined);
  const tampered = frame.ciphertext.slice();
  tampered[tampered.length - 5] = (tampered[tampered.length - 5] ?? 0) ^ 0x01;
  const cases: [Uint8Array, string][] = [
    [new Uint8Array(), "refused:invalid"],
    [crypto.getRandomValues(new Uint8Array(300)), "refused:invalid"],
    [frame.ciphertext.slice(0, 40), "refused:invalid"],
    [new Uint8Array([...frame.ciphertext, 0]), "refused:invalid"],
    [tampered, "refused:undecryptable"],
    [ds.getGroupInfo() ?? new Uint8Array(), "refused:invalid"],
  ];
  let n = 1;
  for (const [ciphertext, expected] of cases) {
    const result = await b.joined().process({ seq: frame.seq + n++ * 1000, sender: a.sender, ciphertext });
    assert.deepEqual(kinds([result]), [expected]);
  }
  const intact = await b.joined().process({ ...frame, seq: frame.seq + 100_000 });
  assert.deepEqual(texts([intact]), ["intact"]);
  assert.throws(() => RoomGroup.welcomeRefs(frame.ciphertext), GroupError);
  assert.equal(RoomGroup.treeHasSigningKey(frame.ciphertext, a.signing.publicKey), false);
});

test("a KeyPackage whose key is not in the key log is refused by the adder and by receivers", async () => {
  const { ds, logs, a, b, c } = await room();
  const rogue = new Device(ds, logs, { inKeyLog: false });
  ds.admit(rogue.ref);
  const keyPackage = await rogue.claimKeyPackage();
  await assert.rejects(
    a.joined().commit({ add: [keyPackage] }),
    (e: unknown) => e instanceof GroupError && e.code === "commit_refused",
  );
  assert.equal(a.joined().pending, undefined);

  // A member whose client checks nothing adds it anyway; the relay cannot tell.
  const careless = await RoomGroup.decode(a.joined().encode(), acceptAll);
  const pending = await careless.commit({ add: [keyPackage] });
  assert.equal(ds.send(a.ref, pending.commit).ok, true);
  for (const device of [b, c]) {
    const results = await device.pump();
    assert.deepEqual(kinds(results), ["refused:invalid"]);
    assert.equal(device.joined().epoch, 1n);
    assert.equal(device.joined().members().length, 3);
  }
});

test("an external commit by a device not in the key log is refused by the members", async () => {
  const { ds, logs, a, b, c } = await room();
  const rogue = new Device(ds, logs, { inKeyLog: false });
  ds.admit(rogue.ref);
  // Its own client checks only the others' leaves, so it makes the commit, and the relay takes it.
  assert.equal((await rogue.joinExternally(false)).ok, true);
  for (const device of [a, b, c]) {
    assert.deepEqual(kinds(await device.pump()), ["refused:invalid"]);
    assert.equal(device.joined().members().length, 3);
  }
});

test("our own commit accepted but lost in a reload is reported, and an external rejoin recovers", async () => {
  const { ds, a, b, c } = await room();
  const saved = b.joined().encode();
  const pending = await b.joined().commit({ update: true });
  const sent = ds.send(b.ref, pending.commit);
  assert.ok(sent.ok);
  // The ack is lost with the device's memory; it reloads and resumes.
  b.group = await RoomGroup.decode(saved, b.logs.auth);
  const replayed: Processed[] = [];
  for (const frame of ds.replay(b.ref, b.joined().lastSeq)) replayed.push(await b.joined().process(frame));
  assert.deepEqual(kinds(replayed), ["refused:own_commit_lost"]);
  // Its GroupInfo upload was lost too: a member that read the commit uploads the current one.
  await a.pump();
  await c.pump();
  assert.deepEqual(ds.putGroupInfo(await a.joined().groupInfo()), { ok: true });
  assert.equal((await b.joinExternally(true)).ok, true);
  await a.pump();
  await c.pump();
  await c.say("all together");
  assert.deepEqual(texts(await b.pump()), ["all together"]);
  assert.deepEqual(texts(await a.pump()), ["all together"]);
});

test("our own commit coming back in a replay while pending is adopted", async () => {
  const { ds, a, b } = await room();
  const pending = await b.joined().commit({ update: true });
  assert.ok(ds.send(b.ref, pending.commit).ok);
  // The socket dropped before the ack; the resume replays the commit.
  const replayed: Processed[] = [];
  for (const frame of ds.replay(b.ref, b.joined().lastSeq)) replayed.push(await b.joined().process(frame));
  const own = replayed[0];
  assert.ok(own?.kind === "commit" && own.own);
  assert.equal(b.joined().epoch, 2n);
  assert.equal(b.joined().pending, undefined);
  await a.pump();
  await b.say("in epoch 2");
  assert.deepEqual(texts(await a.pump()), ["in epoch 2"]);
});

test("frames of our pending commit's epoch that come before its ack are held, then read on adopt", async () => {
  const { ds, logs, a, b } = await room();
  const pending = await b.joined().commit({ update: true });
  const sent = ds.send(b.ref, pending.commit);
  assert.ok(sent.ok);
  await a.pump();
  await a.say("epoch 2, before B's ack");
  const frames = ds.take(b.ref);
  assert.deepEqual(kinds(await Promise.all(frames.map((f) => b.joined().process(f)))), ["held"]);
  assert.equal(b.joined().lastSeq, sent.seq - 1);
  assert.deepEqual(texts(await b.joined().adopt(pending, sent.seq)), ["epoch 2, before B's ack"]);
  assert.equal(b.joined().lastSeq, sent.seq + 1);

  // The same for a device joining by external commit.
  assert.equal(ds.putGroupInfo(await a.joined().groupInfo()).ok, true);
  const d = new Device(ds, logs);
  ds.admit(d.ref);
  const joined = await RoomGroup.externalJoin({
    groupId: ds.groupId,
    self: d.ref,
    signing: d.signing,
    auth: logs.auth,
    groupInfo: ds.getGroupInfo() ?? new Uint8Array(),
    resync: false,
  });
  assert.equal(joined.group.isMember, false);
  assert.throws(
    () => joined.group.encode(),
    (e: unknown) => e instanceof GroupError && e.code === "not_joined",
  );
  const joinSeq = ds.send(d.ref, joined.commit);
  assert.ok(joinSeq.ok);
  await a.pump();
  await a.say("epoch 3, before D's ack");
  const atD = await Promise.all(ds.take(d.ref).map((f) => joined.group.process(f)));
  assert.deepEqual(kinds(atD), ["held"]);
  assert.deepEqual(texts(await joined.group.adopt(joined.pending, joinSeq.seq)), ["epoch 3, before D's ack"]);
  assert.equal(joined.group.isMember, true);
  assert.equal(joined.group.epoch, 3n);
});

test("after adopting our commit, late messages of the old epoch are read once, from the chains we advanced", async () => {
  const { ds, a, b } = await room();
  const pending = await b.joined().commit({ update: true });
  await a.say("epoch 1, while B's commit is pending");
  const [early] = ds.take(b.ref);
  assert.ok(early !== undefined);
  assert.deepEqual(texts([await b.joined().process(early)]), ["epoch 1, while B's commit is pending"]);
  const sent = ds.send(b.ref, pending.commit);
  assert.ok(sent.ok);
  await b.joined().adopt(pending, sent.seq);
  // A has not read B's commit yet and speaks in epoch 1.
  await a.say("epoch 1, after B's commit");
  assert.deepEqual(texts(await b.pump()), ["epoch 1, after B's commit"]);
  // The key of the message read before the adoption is spent in the kept epoch too.
  assert.deepEqual(kinds([await b.joined().process({ ...early, seq: ds.seq + 1 })]), ["refused:invalid"]);
});

test("another group's Welcome and messages are not taken for the room's", async () => {
  const { ds, logs, a, b } = await room();
  const elsewhere = new FakeDS(new TextEncoder().encode("another room's MLS group id....."));
  const host = new Device(elsewhere, logs);
  await host.create();
  const guest = new Device(elsewhere, logs);
  elsewhere.admit(guest.ref);
  const own = await guest.claimKeyPackage();
  const pending = await host.joined().commit({ add: [own] });
  const sent = elsewhere.send(host.ref, pending.commit);
  assert.ok(sent.ok);
  await host.joined().adopt(pending, sent.seq);
  assert.ok(pending.welcome !== undefined);
  const [ref] = RoomGroup.welcomeRefs(pending.welcome);
  const keyPackage = [...guest.packages.values()][0];
  assert.ok(ref !== undefined && keyPackage !== undefined);
  await assert.rejects(
    RoomGroup.fromWelcome({
      groupId: ds.groupId,
      self: guest.ref,
      auth: logs.auth,
      welcome: pending.welcome,
      keyPackage,
    }),
    (e: unknown) => e instanceof GroupError && e.code === "wrong_group",
  );
  const message = await host.joined().encrypt({ kind: "text", text: "elsewhere" });
  const result = await b.joined().process({ seq: ds.seq + 1, sender: host.sender, ciphertext: message });
  assert.deepEqual(kinds([result]), ["skipped:other_group"]);
  // The relay refuses another group's commit (wrong_group) and its GroupInfo.
  const other = await host.joined().commit({ update: true });
  assert.deepEqual(ds.send(a.ref, other.commit), { ok: false, code: "wrong_group" });
  assert.equal(ds.putGroupInfo(other.groupInfo).ok, false);
});
