// The change feed (GET /v1/events/sandboxes), and the waits that follow it instead of polling.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { NotFoundError, Sandboxd, SandboxChanges, WebSocketConnection } from '../dist/index.js';
import { alice, bob, keys, reviewer } from './lib/env.mjs';

const PATH_ENV = { PATH: '/tmp/bin:/usr/bin:/bin' };
const LIMITS = { timeout_s: 600, memory_bytes: 256 << 20 };

let box;
before(async () => {
  box = await alice.sandboxes.create({ limits: LIMITS, labels: { suite: 'changes' } });
  await box.files.write('/tmp/bin/needs-review', '#!/bin/sh\necho reviewed "$@"\n', { mode: 0o755, parents: true });
});
after(async () => {
  await box?.delete();
});

/** Counts the GET requests made with alice's key (the wait's client) while `fn` runs. */
async function countGets(fn) {
  const real = globalThis.fetch;
  const gets = [];
  globalThis.fetch = (url, init = {}) => {
    const auth = init.headers?.Authorization ?? init.headers?.authorization;
    if ((init.method ?? 'GET') === 'GET' && auth === `Bearer ${keys.alice}`) gets.push(new URL(url).pathname);
    return real(url, init);
  };
  try {
    return { value: await fn(), gets };
  } finally {
    globalThis.fetch = real;
  }
}

/** Runs `fn` after `ms`; resolves with the time it was done. */
function later(ms, fn) {
  return new Promise((resolve, reject) => {
    setTimeout(() => fn().then(() => resolve(performance.now()), reject), ms);
  });
}

test('waiting on a process under review follows the feed: prompt, and no GET after GET', async (t) => {
  const p = await box.start(['needs-review', 'late'], { env: PATH_ENV });
  assert.equal(p.state, 'AWAITING_REVIEW');
  const approved = later(1500, () => reviewer.sandboxes.attach(box.id).processes.approve(p.id));
  const { value: done, gets } = await countGets(() => p.wait({ timeoutMs: 30_000 }));
  const waited = performance.now();
  const at = await approved;
  assert.equal(done.state, 'FINISHED');
  assert.equal(done.result?.exit_code, 0);
  assert.ok(waited - at < 1000, `the wait ended ${waited - at} ms after the approval`);
  t.diagnostic(`${gets.length} GETs; returned ${Math.round(waited - at)} ms after the decision`);
  assert.ok(gets.length <= 3, `GETs: ${JSON.stringify(gets)}`);
  assert.equal((await p.logs()).toString(), 'reviewed late\n');
});

test('a rejection ends the wait at once, REJECTED', async (t) => {
  const p = await box.start(['needs-review', 'no'], { env: PATH_ENV });
  const rejected = later(1000, () => reviewer.sandboxes.attach(box.id).processes.reject(p.id, 'not this one'));
  const { value: done, gets } = await countGets(() => p.wait({ timeoutMs: 30_000 }));
  const waited = performance.now();
  const at = await rejected;
  assert.equal(done.state, 'REJECTED');
  assert.ok(waited - at < 1000, `the wait ended ${waited - at} ms after the rejection`);
  t.diagnostic(`${gets.length} GETs; returned ${Math.round(waited - at)} ms after the decision`);
  assert.ok(gets.length <= 3, `GETs: ${JSON.stringify(gets)}`);
});

test('run() of a command under review waits on the feed too', async () => {
  const approved = (async () => {
    // The process appears in the list once started; approve it then.
    for (;;) {
      const waiting = await reviewer.sandboxes.attach(box.id).processes.list({ state: 'AWAITING_REVIEW' });
      const p = waiting.find((x) => x.info.argv[1] === 'via-run');
      if (p) return p.approve();
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const r = await box.run(['needs-review', 'via-run'], { env: PATH_ENV, timeoutMs: 30_000 });
  await approved;
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout.toString(), 'reviewed via-run\n');
});

test('waitRunning on a sandbox under review returns once a reviewer approved it', async (t) => {
  // Beyond the test policy's allow_within: the sandbox waits for a reviewer.
  const big = await alice.sandboxes.create({ limits: { timeout_s: 600, memory_bytes: 4 * 2 ** 30 } });
  try {
    assert.equal(big.state, 'AWAITING_REVIEW');
    const approved = later(1500, () => reviewer.sandboxes.attach(big.id).approve());
    const { value: info, gets } = await countGets(() => big.waitRunning({ timeoutMs: 30_000 }));
    const waited = performance.now();
    const at = await approved;
    assert.equal(info.state, 'RUNNING');
    assert.ok(waited - at < 1000, `the wait ended ${waited - at} ms after the approval`);
    t.diagnostic(`${gets.length} GETs; returned ${Math.round(waited - at)} ms after the decision`);
  assert.ok(gets.length <= 3, `GETs: ${JSON.stringify(gets)}`);
  } finally {
    await big.delete();
  }
});

test('a wait on a decision already taken returns at once', async () => {
  const p = await box.start(['needs-review', 'early'], { env: PATH_ENV });
  await reviewer.sandboxes.attach(box.id).processes.reject(p.id);
  assert.equal(p.state, 'AWAITING_REVIEW'); // the handle's copy
  const t0 = performance.now();
  assert.equal((await p.wait({ timeoutMs: 10_000 })).state, 'REJECTED');
  assert.ok(performance.now() - t0 < 2000);
});

test('a wait can be aborted while the review is pending', async () => {
  const p = await box.start(['needs-review', 'never'], { env: PATH_ENV });
  const ctl = new AbortController();
  setTimeout(() => ctl.abort(), 300);
  const err = await p.wait({ signal: ctl.signal }).catch((e) => e);
  assert.equal(err.code, 'aborted');
  const timedOut = await p.wait({ timeoutMs: 300 }).catch((e) => e);
  assert.equal(timedOut.code, 'deadline_exceeded');
  await reviewer.sandboxes.attach(box.id).processes.reject(p.id);
});

test('without the feed (a daemon that answers 404) the wait polls', async (t) => {
  const client = new Sandboxd({ apiKey: keys.alice });
  const real = WebSocketConnection.connect;
  WebSocketConnection.connect = (url, opts) => url.pathname.endsWith('/v1/events/sandboxes')
    ? Promise.reject(new NotFoundError('no route', { code: 'not_found', status: 404 }))
    : real.call(WebSocketConnection, url, opts);
  try {
    const p = await client.sandboxes.attach(box.id).start(['needs-review', 'polled'], { env: PATH_ENV });
    const approved = later(1000, () => reviewer.sandboxes.attach(box.id).processes.approve(p.id));
    const { value: done, gets } = await countGets(() => p.wait({ timeoutMs: 30_000 }));
    await approved;
    assert.equal(done.state, 'FINISHED');
    t.diagnostic(`${gets.length} GETs (polling)`);
    assert.ok(gets.length > 3, `it polled: ${gets.length} GETs`);
  } finally {
    WebSocketConnection.connect = real;
  }
});

test('changes() follows a process as it changes, and ends when aborted', async () => {
  const ctl = new AbortController();
  const feed = alice.sandboxes.changes({ signal: ctl.signal });
  assert.ok(feed instanceof SandboxChanges);
  await feed.ready;
  const p = await box.start(['sh', '-c', 'echo hi']);
  const states = [];
  let last;
  for await (const c of feed) {
    if (c.type !== 'process.state' || c.sandbox_id !== box.id || c.process_id !== p.id) continue;
    states.push(c.state);
    last = c;
    if (c.state === 'FINISHED') {
      setTimeout(() => ctl.abort(), 50); // ends the loop below
    }
  }
  assert.equal(states.at(-1), 'FINISHED');
  assert.equal(last.submitter, 'alice');
  assert.equal(last.reason, 'exited');
  assert.equal(typeof last.ts, 'number');
  // break closes it too.
  const again = alice.sandboxes.changes();
  await again.ready;
  const q = box.start(['true']);
  for await (const c of again) if (c.type === 'process.state') break;
  await q;
});

test('one submitter never sees another\'s sandboxes in the feed', async () => {
  const bobs = bob.sandboxes.changes();
  const alices = alice.sandboxes.changes();
  await Promise.all([bobs.ready, alices.ready]);
  const mine = await alice.sandboxes.create({ limits: LIMITS });
  await mine.run(['echo', 'alice']);
  await mine.delete();
  // bob's own, after alice's: once bob saw it stop, alice's changes would have come before.
  const his = await bob.sandboxes.create({ limits: LIMITS });
  await his.run(['echo', 'bob']);
  await his.delete();
  // And alice's last one, after bob's: the same for alice's feed.
  const lastRun = await box.run(['true']);

  const got = [];
  for await (const c of bobs) {
    got.push(c);
    if (c.sandbox_id === his.id && c.type === 'sandbox.state' && c.state === 'STOPPED') break;
  }
  assert.ok(got.every((c) => c.submitter === 'bob'), JSON.stringify(got));
  assert.ok(!got.some((c) => c.sandbox_id === mine.id));
  assert.ok(got.some((c) => c.type === 'process.state'));

  const hers = [];
  for await (const c of alices) {
    hers.push(c);
    if (c.sandbox_id === box.id && c.process_id === lastRun.process.id && c.state === 'FINISHED') break;
  }
  assert.ok(hers.every((c) => c.submitter === 'alice'), JSON.stringify(hers));
  assert.ok(!hers.some((c) => c.sandbox_id === his.id));
  assert.ok(hers.some((c) => c.sandbox_id === mine.id && c.state === 'STOPPED'));
});
