// Retries across a daemon restart: an idempotent GET is retried until the daemon is back, a
// POST is not. The harness restarts the daemon, which ends every sandbox: scripts/test.sh runs
// this file alone, after the others.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConnectionError, Sandboxd } from '../dist/index.js';
import { daemonDown, keys, restartDaemon } from './lib/env.mjs';

test('a GET is retried across a restart', async () => {
  const retries = [];
  const c = new Sandboxd({ apiKey: keys.alice, maxRetries: 10, onRetry: (i) => retries.push(i) });
  const run = await c.runs.submit(['echo', 'before the restart']);
  await c.runs.wait(run.id);

  const restarted = restartDaemon();
  await daemonDown();
  // The daemon is down now: the GET fails, waits, tries again until it is back.
  const got = await c.runs.get(run.id);
  assert.equal(got.id, run.id);
  assert.equal(got.state, 'SUCCEEDED');
  assert.ok(retries.length >= 1, 'the GET was retried');
  assert.ok(retries.every((r) => r.method === 'GET' && r.path === `v1/runs/${run.id}`));
  assert.ok(retries.every((r) => !JSON.stringify(r).includes(keys.alice)));
  assert.equal(await restarted, 'ok');
});

test('a POST is not retried', async () => {
  const retries = [];
  const c = new Sandboxd({ apiKey: keys.alice, maxRetries: 10, onRetry: (i) => retries.push(i) });
  const restarted = restartDaemon();
  await daemonDown();
  const err = await c.runs.submit(['echo', 'during the restart']).catch((e) => e);
  assert.ok(err instanceof ConnectionError, String(err));
  assert.equal(err.status, 0);
  assert.ok(!String(err).includes(keys.alice));
  assert.deepEqual(retries, []);
  assert.equal(await restarted, 'ok');
  // Back: the same POST goes through now.
  const run = await c.runs.submit(['echo', 'after the restart']);
  assert.equal((await c.runs.wait(run.id)).state, 'SUCCEEDED');
});
