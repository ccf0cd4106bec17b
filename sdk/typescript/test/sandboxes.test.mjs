// Sandboxes: create, get, list, delete, pause, resume, snapshot, and tenancy.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { FailedPreconditionError, NotFoundError, PermissionDeniedError } from '../dist/index.js';
import { alice, bob, unique } from './lib/env.mjs';

const made = [];
after(async () => {
  for (const b of made) await b.delete().catch(() => undefined);
});

async function create(req = {}, opts = {}) {
  const b = await alice.sandboxes.create(req, opts);
  made.push(b);
  return b;
}

test('create, get, list by label, delete', async () => {
  const label = unique('l');
  const box = await create({ labels: { run: label }, env: { SECRET: 'value' }, limits: { memory_bytes: '256m', pids: 64 } });
  assert.match(box.id, /^sbx_[a-z2-7]{20}$/);
  assert.equal(box.state, 'RUNNING');
  assert.equal(box.info.submitter, 'alice');
  assert.equal(box.info.env.SECRET, '<redacted>');
  assert.equal(box.info.limits.memory_bytes, 256 << 20);

  const got = await alice.sandboxes.get(box.id);
  assert.equal(got.id, box.id);
  assert.ok(got.info.stats, 'a running sandbox has live stats');

  const other = await create({ labels: { run: label, second: 'yes' } });
  const page = await alice.sandboxes.list({ label: `run=${label}` });
  assert.deepEqual(page.sandboxes.map((s) => s.id), [other.id, box.id]); // newest first
  assert.deepEqual((await alice.sandboxes.list({ label: [`run=${label}`, 'second=yes'] })).sandboxes.map((s) => s.id), [other.id]);

  // Pages: one at a time, then everything through iterate().
  const first = await alice.sandboxes.list({ label: `run=${label}`, limit: 1 });
  assert.equal(first.sandboxes.length, 1);
  assert.ok(first.nextCursor);
  const all = [];
  for await (const s of alice.sandboxes.iterate({ label: `run=${label}`, limit: 1 })) all.push(s.id);
  assert.deepEqual(all, [other.id, box.id]);

  const ended = await box.delete();
  assert.equal(ended.state, 'STOPPED');
  assert.equal(ended.reason, 'deleted');
  assert.equal((await alice.sandboxes.delete(box.id)).state, 'STOPPED'); // idempotent
  await assert.rejects(box.run(['true']), FailedPreconditionError);
  assert.deepEqual((await alice.sandboxes.list({ label: `run=${label}`, state: 'RUNNING' })).sandboxes.map((s) => s.id), [other.id]);
});

test('an idempotency key answers the same sandbox', async () => {
  const key = unique('idem');
  const a = await create({ labels: { k: 'v' } }, { idempotencyKey: key });
  const b = await create({ labels: { k: 'v' } }, { idempotencyKey: key });
  assert.equal(a.id, b.id);
});

test('bob cannot see or touch alice\'s sandbox', async () => {
  const box = await create();
  await assert.rejects(bob.sandboxes.get(box.id), NotFoundError);
  await assert.rejects(bob.sandboxes.attach(box.id).resume(), NotFoundError);
  await assert.rejects(bob.sandboxes.attach(box.id).snapshot('stolen'), NotFoundError);
  await assert.rejects(bob.sandboxes.attach(box.id).processes.list(), NotFoundError);
  assert.ok(!(await bob.sandboxes.list()).sandboxes.some((s) => s.id === box.id));
  // A submitter cannot approve (a reviewer's call).
  await assert.rejects(box.approve(), PermissionDeniedError);
});

test('pause and resume', async () => {
  const box = await create();
  const paused = await box.pause();
  assert.equal(paused.state, 'PAUSED');
  assert.equal((await box.refresh()).stats?.paused, true);
  await assert.rejects(box.run(['true']), FailedPreconditionError);
  assert.equal((await box.resume()).state, 'RUNNING');
  assert.equal((await box.run(['echo', 'awake'])).stdout.toString(), 'awake\n');
  assert.equal((await box.touch()).state, 'RUNNING');
});

test('snapshot and branch from it', async () => {
  const box = await create();
  await box.files.write('/tmp/state.txt', 'saved');
  const name = unique('snap');
  const snap = await box.snapshot(name);
  assert.equal(snap.name, name);
  assert.equal(snap.source_sandbox, box.id);
  assert.ok((await alice.snapshots.list()).some((s) => s.name === name));
  assert.equal((await alice.snapshots.get(name)).id, snap.id);
  await assert.rejects(bob.snapshots.get(name), NotFoundError);

  const branch = await create({ from_snapshot: name });
  assert.equal(await branch.files.readText('/tmp/state.txt'), 'saved');
  await alice.snapshots.delete(name);
  await assert.rejects(alice.snapshots.get(name), NotFoundError);
});
