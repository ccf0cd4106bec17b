// Runs: submit, wait, stream the logs and events, artifacts, review, cancel.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';

import { NotFoundError, PermissionDeniedError, FailedPreconditionError } from '../dist/index.js';
import { alice, bob, reviewer, unique } from './lib/env.mjs';

test('submit, stream the logs, wait, read the artifacts', async () => {
  const run = await alice.runs.submit({
    argv: ['sh', '-c', 'echo out; echo err >&2; mkdir -p /artifacts/sub; printf data > /artifacts/sub/x.txt'],
    labels: { suite: 'runs' },
  });
  assert.match(run.id, /^run_[a-z2-7]{20}$/);

  // The log follows the run to its end.
  const chunks = [];
  for await (const c of alice.runs.streamLogs(run.id)) chunks.push(c);
  assert.equal(Buffer.concat(chunks).toString(), 'out\nerr\n');

  const done = await alice.runs.wait(run.id, { timeoutMs: 30_000 });
  assert.equal(done.state, 'SUCCEEDED');
  assert.equal(done.result.exit_code, 0);
  assert.equal((await alice.runs.logs(run.id, { stream: 'stdout' })).toString(), 'out\n');
  assert.equal((await alice.runs.logs(run.id, { stream: 'stderr' })).toString(), 'err\n');

  const artifacts = await alice.runs.artifacts(run.id);
  const names = artifacts.map((a) => a.name).sort();
  assert.deepEqual(names, ['audit.json', 'diff.patch', 'files/sub/x.txt', 'report.md']);
  const x = await alice.runs.artifact(run.id, 'files/sub/x.txt');
  assert.equal(x.toString(), 'data');
  const listed = artifacts.find((a) => a.name === 'files/sub/x.txt');
  assert.equal(createHash('sha256').update(x).digest('hex'), listed.sha256);
  assert.match((await alice.runs.artifact(run.id, 'report.md')).toString(), /#/);

  // bob sees none of it.
  await assert.rejects(bob.runs.get(run.id), NotFoundError);
  await assert.rejects(bob.runs.artifacts(run.id), NotFoundError);
});

test('events: replayed in seq order, log bytes as Buffers, ending with run.completed', async () => {
  const run = await alice.runs.submit(['printf', '\\377abc']);
  const events = [];
  for await (const ev of alice.runs.events(run.id)) events.push(ev);
  assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1));
  assert.equal(events.at(-1).type, 'run.completed');
  assert.equal(events.at(-1).state, 'SUCCEEDED');
  const log = Buffer.concat(events.filter((e) => e.type === 'step.log').map((e) => e.data));
  assert.deepEqual([...log], [0xff, 0x61, 0x62, 0x63]);
  // From a seq on: only what came after.
  const later = [];
  for await (const ev of alice.runs.events(run.id, { after: 2 })) later.push(ev.seq);
  assert.deepEqual(later, events.slice(2).map((e) => e.seq));
  // After the last one: nothing, and the stream ends.
  const none = [];
  for await (const ev of alice.runs.events(run.id, { after: events.at(-1).seq })) none.push(ev);
  assert.deepEqual(none, []);
});

test('a run waiting for review runs once a reviewer approves it', async () => {
  const run = await alice.runs.submit(['needs-review', 'run']);
  assert.equal(run.state, 'AWAITING_REVIEW');
  await assert.rejects(alice.runs.approve(run.id), PermissionDeniedError);
  const approved = await reviewer.runs.approve(run.id);
  assert.equal(approved.approval.approved_by, 'rev');
  const done = await alice.runs.wait(run.id, { timeoutMs: 30_000 });
  assert.ok(['SUCCEEDED', 'FAILED'].includes(done.state), done.state);
  await assert.rejects(reviewer.runs.approve(run.id), FailedPreconditionError);

  const other = await alice.runs.submit(['needs-review', 'nope']);
  await reviewer.runs.reject(other.id, 'not now');
  const rejected = await alice.runs.wait(other.id);
  assert.equal(rejected.state, 'CANCELLED');
  assert.match(rejected.result.reason, /rejected: not now/);
});

test('a denied run ends CANCELLED with the policy\'s reason', async () => {
  const run = await alice.runs.submit(['forbidden', 'x']);
  const done = await alice.runs.wait(run.id);
  assert.equal(done.state, 'CANCELLED');
  assert.match(done.result.reason, /^policy_denied/);
});

test('cancel a running run', async () => {
  const run = await alice.runs.submit(['sleep', '60']);
  // Its RUNNING event says it runs.
  for await (const ev of alice.runs.events(run.id)) {
    if (ev.type === 'run.status' && ev.state === 'RUNNING') break;
  }
  await alice.runs.cancel(run.id);
  const done = await alice.runs.wait(run.id, { timeoutMs: 30_000 });
  assert.equal(done.state, 'CANCELLED');
});

test('an idempotency key answers the same run; list filters by label', async () => {
  const key = unique('idem');
  const label = unique('lbl');
  const a = await alice.runs.submit({ argv: ['true'], labels: { batch: label } }, { idempotencyKey: key });
  const b = await alice.runs.submit({ argv: ['true'], labels: { batch: label } }, { idempotencyKey: key });
  assert.equal(a.id, b.id);
  const page = await alice.runs.list({ label: `batch=${label}` });
  assert.deepEqual(page.runs.map((r) => r.id), [a.id]);
  const ids = [];
  for await (const r of alice.runs.iterate({ label: `batch=${label}` })) ids.push(r.id);
  assert.deepEqual(ids, [a.id]);
  await alice.runs.wait(a.id);
});
