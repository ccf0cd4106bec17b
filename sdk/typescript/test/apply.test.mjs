// Host changes only after review: a copy-on-write run's change set (runs.changes) and applying it
// (runs.apply): the host directory then holds what the run wrote; a host file changed since the
// run is a ConflictError with its conflicts and nothing written; the submitter is refused.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  AlreadyExistsError,
  ConflictError,
  FailedPreconditionError,
  NotFoundError,
  PermissionDeniedError,
} from '../dist/index.js';
import { workspaceDaemon, workspaceDaemonMissing } from './lib/workspaces.mjs';

const skip = workspaceDaemonMissing() ?? false;
let daemon;
let alice;
let rev;
before(async () => {
  if (skip) return;
  daemon = await workspaceDaemon();
  alice = daemon.client('alice');
  rev = daemon.client('rev');
});
after(async () => {
  await daemon?.close();
});

/** A succeeded copy-on-write run of `script`, by `client`, on a new workspace holding `files`. */
async function cowRun(client, files, script) {
  const dir = daemon.workspace(files);
  const run = await client.runs.submit({ argv: ['sh', '-c', script], workspace: { path: dir, mode: 'cow' } });
  const done = await client.runs.wait(run.id, { timeoutMs: 60_000 });
  assert.equal(done.state, 'SUCCEEDED', JSON.stringify(done.result));
  return { dir, run: done };
}

test('changes, then apply: the host holds what the run wrote, once', { skip }, async () => {
  const { dir, run } = await cowRun(alice, { 'a.txt': 'one\n', 'gone.txt': 'bye\n' },
    "printf 'one\\ntwo\\n' > /workspace/a.txt; rm /workspace/gone.txt; mkdir /workspace/new; " +
    "printf '\\377\\000x' > /workspace/new/b.bin; chmod 700 /workspace/new/b.bin");
  const set = await alice.runs.changes(run.id); // the submitter may read it
  assert.equal(set.run_id, run.id);
  assert.equal(set.applicable, true);
  assert.equal(set.applied, null);
  assert.deepEqual(set.refused, []);
  assert.deepEqual(set.entries.map((e) => [e.path, e.op, e.host, e.mode, e.size]), [
    ['a.txt', 'write', 'file', '0644', 8],
    ['gone.txt', 'delete', 'file', undefined, undefined],
    ['new', 'make_dir', 'absent', '0755', undefined],
    ['new/b.bin', 'write', 'absent', '0700', 3],
  ]);
  const diff = (await alice.runs.artifacts(run.id)).find((a) => a.name === 'diff.patch');
  assert.equal(set.diff_sha256, diff.sha256);
  assert.equal(readFileSync(path.join(dir, 'a.txt'), 'utf8'), 'one\n'); // nothing yet

  const done = await rev.runs.apply(run.id, set.diff_sha256);
  assert.deepEqual([done.run_id, done.diff_sha256], [run.id, diff.sha256]);
  assert.deepEqual([done.files_written, done.files_deleted, done.dirs_made, done.dirs_removed], [2, 1, 1, 0]);
  assert.match(done.changes_sha256, /^[0-9a-f]{64}$/);
  assert.deepEqual(readFileSync(path.join(dir, 'a.txt')), Buffer.from('one\ntwo\n'));
  assert.deepEqual(readFileSync(path.join(dir, 'new/b.bin')), Buffer.from([0xff, 0x00, 0x78]));
  assert.equal(statSync(path.join(dir, 'new/b.bin')).mode & 0o7777, 0o700);
  assert.equal(existsSync(path.join(dir, 'gone.txt')), false);

  const again = await alice.runs.changes(run.id);
  assert.equal(again.applicable, false);
  assert.equal(again.applied.by, 'rev');
  assert.equal(again.applied.files_written, 2);
  assert.equal(again.applied.changes_sha256, done.changes_sha256);
  const twice = await rev.runs.apply(run.id).catch((e) => e);
  assert.ok(twice instanceof AlreadyExistsError, String(twice));
  assert.equal(twice.status, 409);
});

test('a host file changed since the run: ConflictError with the conflicts, nothing written', { skip }, async () => {
  const { dir, run } = await cowRun(alice, { 'a.txt': 'one\n' }, "printf 'run\\n' > /workspace/a.txt; printf 'new\\n' > /workspace/b.txt");
  writeFileSync(path.join(dir, 'a.txt'), 'edited on the host\n');
  const err = await rev.runs.apply(run.id, (await rev.runs.changes(run.id)).diff_sha256).catch((e) => e);
  assert.ok(err instanceof ConflictError, String(err));
  assert.ok(err instanceof FailedPreconditionError);
  assert.deepEqual([err.code, err.status], ['conflict', 409]);
  assert.deepEqual(err.conflicts, [{ path: 'a.txt', why: 'changed on the host since the run started' }]);
  assert.match(err.message, /a\.txt/);
  assert.equal(readFileSync(path.join(dir, 'a.txt'), 'utf8'), 'edited on the host\n');
  assert.equal(existsSync(path.join(dir, 'b.txt')), false);
  assert.equal((await alice.runs.changes(run.id)).applied, null);
});

test('a diff other than the one read is refused', { skip }, async () => {
  const { dir, run } = await cowRun(alice, { 'a.txt': 'one\n' }, "printf 'run\\n' > /workspace/a.txt");
  const err = await rev.runs.apply(run.id, '0'.repeat(64)).catch((e) => e);
  assert.ok(err instanceof FailedPreconditionError && !(err instanceof ConflictError), String(err));
  assert.equal(err.code, 'failed_precondition');
  assert.equal(readFileSync(path.join(dir, 'a.txt'), 'utf8'), 'one\n');
});

test('the submitter is refused (403), a reviewer on its own run too', { skip }, async () => {
  const mine = await cowRun(alice, { 'a.txt': 'one\n' }, "printf 'run\\n' > /workspace/a.txt");
  const err = await alice.runs.apply(mine.run.id).catch((e) => e);
  assert.ok(err instanceof PermissionDeniedError, String(err));
  assert.equal(err.status, 403);
  const own = await cowRun(rev, { 'a.txt': 'one\n' }, "printf 'run\\n' > /workspace/a.txt");
  const ownErr = await rev.runs.apply(own.run.id).catch((e) => e);
  assert.ok(ownErr instanceof PermissionDeniedError, String(ownErr));
  assert.match(ownErr.message, /own/);
  for (const { dir } of [mine, own]) assert.equal(readFileSync(path.join(dir, 'a.txt'), 'utf8'), 'one\n');
  // Another reviewer (an admin here) applies it.
  assert.equal((await daemon.client('admin').runs.apply(own.run.id)).files_written, 1);
  assert.equal(readFileSync(path.join(own.dir, 'a.txt'), 'utf8'), 'run\n');
});

test('a run without a copy-on-write workspace has no change set', { skip }, async () => {
  const run = await alice.runs.submit(['echo', 'no workspace']);
  await alice.runs.wait(run.id, { timeoutMs: 60_000 });
  await assert.rejects(alice.runs.changes(run.id), NotFoundError);
});
