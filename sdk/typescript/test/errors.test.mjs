// Typed errors, retries only where a request is idempotent, and the API key kept out of every
// error, string and inspect output.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { inspect } from 'node:util';

import {
  ConflictError,
  ConnectionError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  SandboxdError,
  Sandboxd,
  UnauthenticatedError,
  UnavailableError,
  errorFromResponse,
} from '../dist/index.js';
import { alice, bob, keys } from './lib/env.mjs';

/** Every way an error or the client can be shown. */
function renderings(x) {
  return [String(x), inspect(x, { depth: 10, showHidden: true }), JSON.stringify(x) ?? '', x?.stack ?? '',
    x?.cause ? inspect(x.cause, { depth: 10, showHidden: true }) : ''];
}

function assertNoKey(x, key) {
  for (const s of renderings(x)) assert.ok(!s.includes(key), `the key shows in: ${s.slice(0, 300)}`);
}

let box;
before(async () => {
  box = await alice.sandboxes.create({ labels: { suite: 'errors' } });
});
after(async () => {
  await box?.delete();
});

test('the client never shows its key', () => {
  assertNoKey(alice, keys.alice);
  assertNoKey(alice.sandboxes, keys.alice);
  assertNoKey(box, keys.alice);
  assertNoKey(box.files, keys.alice);
  assert.match(inspect(alice), /Sandboxd \{ url: 'http:\/\/127\.0\.0\.1:\d+\/' \}/);
});

test('a wrong key is UnauthenticatedError (401), and the key is not in it', async () => {
  const wrong = 'sbx_test_not_a_key_' + 'x'.repeat(20);
  const c = new Sandboxd({ apiKey: wrong });
  const err = await c.sandboxes.list().catch((e) => e);
  assert.ok(err instanceof UnauthenticatedError, String(err));
  assert.equal(err.code, 'unauthenticated');
  assert.equal(err.status, 401);
  assertNoKey(err, wrong);
  assertNoKey(c, wrong);
  // The same over a WebSocket handshake.
  const werr = await c.runs.events('run_aaaaaaaaaaaaaaaaaaaa').next().catch((e) => e);
  assert.ok(werr instanceof UnauthenticatedError, String(werr));
  assertNoKey(werr, wrong);
});

test('errors carry code, status and message, one class per code', async () => {
  const nf = await alice.runs.get('run_aaaaaaaaaaaaaaaaaaaa').catch((e) => e);
  assert.ok(nf instanceof NotFoundError && nf instanceof SandboxdError);
  assert.deepEqual([nf.code, nf.status], ['not_found', 404]);
  assert.match(nf.message, /run_aaaaaaaaaaaaaaaaaaaa/);
  assert.match(String(nf), /^NotFoundError \[not_found 404\]: /);

  // A submitter approving a run (a reviewer's route).
  await assert.rejects(alice.runs.approve('run_aaaaaaaaaaaaaaaaaaaa'), (e) => e instanceof PermissionDeniedError && e.status === 403);

  const bad = await alice.sandboxes.create({ limits: { cpus: -1 } }).catch((e) => e);
  assert.ok(bad instanceof InvalidArgumentError, String(bad));
  assert.equal(bad.status, 400);
  assertNoKey(bad, keys.alice);
});

/** A port on 127.0.0.1 that nothing listens on. */
async function closedPort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

test('a GET is retried after connection errors, a POST is not; the key stays out of the error', async () => {
  const port = await closedPort();
  const retries = [];
  const c = new Sandboxd({ url: `http://127.0.0.1:${port}`, apiKey: keys.alice, maxRetries: 2, retryBaseMs: 1, retryMaxMs: 2, onRetry: (i) => retries.push(i) });

  const get = await c.sandboxes.list().catch((e) => e);
  assert.ok(get instanceof ConnectionError && get instanceof UnavailableError, String(get));
  assert.equal(get.status, 0);
  assert.deepEqual(retries.map((r) => [r.method, r.attempt, r.reason]), [['GET', 1, 'connection'], ['GET', 2, 'connection']]);
  assertNoKey(get, keys.alice);
  for (const r of retries) assertNoKey(r, keys.alice);

  retries.length = 0;
  const post = await c.sandboxes.create().catch((e) => e);
  assert.ok(post instanceof ConnectionError, String(post));
  assert.equal(retries.length, 0);
  assertNoKey(post, keys.alice);

  // A WebSocket that cannot connect.
  const ws = await c.runs.events('run_aaaaaaaaaaaaaaaaaaaa').next().catch((e) => e);
  assert.ok(ws instanceof ConnectionError, String(ws));
  assertNoKey(ws, keys.alice);
});

test('bob does not see alice\'s sandbox: NotFoundError everywhere', async () => {
  await assert.rejects(bob.sandboxes.get(box.id), NotFoundError);
  await assert.rejects(bob.sandboxes.delete(box.id), NotFoundError);
  const page = await bob.sandboxes.list();
  assert.ok(!page.sandboxes.some((s) => s.id === box.id));
  const bobs = bob.sandboxes.attach(box.id);
  await assert.rejects(bobs.run(['echo', 'hi']), NotFoundError);
  await assert.rejects(bobs.files.read('/etc/hostname'), NotFoundError);
  await assert.rejects(bobs.pause(), NotFoundError);
  await assert.rejects(bobs.terminal(), NotFoundError);
  assert.equal((await alice.sandboxes.get(box.id)).state, 'RUNNING');
});

test('ConflictError from an answer carries its conflicts', () => {
  const e = errorFromResponse(409, JSON.stringify({ error: { code: 'conflict', message: '1 conflicts' }, conflicts: [{ path: 'a', why: 'gone from the host' }] }));
  assert.ok(e instanceof ConflictError);
  assert.deepEqual(e.conflicts, [{ path: 'a', why: 'gone from the host' }]);
  assert.deepEqual([e.code, e.status, e.message], ['conflict', 409, '1 conflicts']);
  const other = errorFromResponse(409, JSON.stringify({ error: { code: 'failed_precondition', message: 'no' } }));
  assert.ok(other instanceof FailedPreconditionError && !(other instanceof ConflictError));
});
