// Processes: run, start, stream as an async iterator, reattach, signal, stdin, review.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { inspect } from 'node:util';

import { FailedPreconditionError, PermissionDeniedError } from '../dist/index.js';
import { alice, keys, reviewer, take, unique } from './lib/env.mjs';

let box;
before(async () => {
  box = await alice.sandboxes.create({ labels: { suite: 'processes' } });
});
after(async () => {
  await box?.delete();
});

test('run answers the exit code and the output, bytes exact', async () => {
  const r = await box.run(['sh', '-c', 'echo out; echo err >&2; exit 3']);
  assert.equal(r.exitCode, 3);
  assert.equal(r.process.state, 'FINISHED');
  assert.equal(r.stdout.toString(), 'out\n');
  assert.equal(r.stderr.toString(), 'err\n');

  const bin = await box.run(['printf', '\\377\\376\\000A']);
  assert.deepEqual([...bin.stdout], [0xff, 0xfe, 0x00, 0x41]);

  const fed = await box.run(['wc', '-c'], { stdin: new Uint8Array([1, 2, 3, 4, 5]) });
  assert.equal(fed.stdout.toString().trim(), '5');
  const env = await box.run(['sh', '-c', 'echo $GREETING'], { env: { GREETING: 'hi there' } });
  assert.equal(env.stdout.toString(), 'hi there\n');
});

test('a denied command rejects with PermissionDeniedError, starting nothing', async () => {
  const before = (await box.processes.list()).length;
  const err = await box.run(['forbidden', 'thing']).catch((e) => e);
  assert.ok(err instanceof PermissionDeniedError, String(err));
  assert.equal(err.status, 403);
  assert.match(err.message, /denies/);
  await assert.rejects(box.start(['rm', '-rf', '/']), PermissionDeniedError);
  assert.equal((await box.processes.list()).length, before);
});

test('a process waiting for review runs once a reviewer approves it', async () => {
  const p = await box.start(['needs-review', 'please'], { tag: 'reviewed' });
  assert.equal(p.state, 'AWAITING_REVIEW');
  // Not the submitter's own decision.
  await assert.rejects(p.approve(), PermissionDeniedError);
  const approved = await reviewer.sandboxes.attach(box.id).processes.approve(p.id);
  assert.notEqual(approved.state, 'AWAITING_REVIEW');
  const done = await p.wait({ timeoutMs: 20_000 });
  assert.equal(done.state, 'FINISHED');
  assert.ok(done.result);
  assert.equal((await box.processes.get('reviewed')).id, p.id);
});

test('a rejected process ends REJECTED', async () => {
  const p = await box.start(['needs-review', 'no']);
  await reviewer.sandboxes.attach(box.id).processes.reject(p.id, 'not today');
  const done = await p.wait({ timeoutMs: 20_000 });
  assert.equal(done.state, 'REJECTED');
});

test('a running process\'s output streams as an async iterator', async () => {
  const p = await box.start(['sh', '-c', 'echo first; read line; echo "got $line"; echo bye >&2'], { stdinOpen: true });
  const seen = [];
  for await (const chunk of p.output()) {
    seen.push(`${chunk.stream}:${chunk.data.toString()}`);
    // The process waits on its stdin: the rest of its output exists only after this write.
    if (chunk.data.toString() === 'first\n') await p.write('ping\n', { close: true });
  }
  assert.deepEqual(seen, ['stdout:first\n', 'stdout:got ping\n', 'stderr:bye\n']);
  const info = await p.wait();
  assert.equal(info.result.exit_code, 0);
  assertNoKeyIn(p);
});

function assertNoKeyIn(x) {
  assert.ok(!inspect(x, { depth: 10, showHidden: true }).includes(keys.alice));
}

test('reattach goes on after the last seq seen, by id or tag', async () => {
  const tag = unique('tail');
  const p = await box.start(['sh', '-c', 'echo one; echo two; read x; echo three'], { tag, stdinOpen: true });
  // The first stream stops once "one" and "two" came (one event or two), as a client that
  // went away.
  let text = '';
  let lastSeq = 0;
  for await (const ev of p.stream()) {
    lastSeq = ev.seq;
    if (ev.type === 'process.log') text += ev.data.toString();
    if (text === 'one\ntwo\n') break;
  }
  assert.equal(text, 'one\ntwo\n');
  assert.equal(p.lastSeq, lastSeq);
  await p.write('go\n', { close: true });

  // Another program takes it up by tag, from that seq: only what came after.
  const again = await box.processes.reattach(tag, { after: lastSeq });
  assert.equal(again.id, p.id);
  const rest = await take(again.stream());
  assert.ok(rest.every((e) => e.seq > lastSeq));
  assert.deepEqual(rest.filter((e) => e.type === 'process.log').map((e) => e.data.toString()), ['three\n']);
  assert.equal(rest.at(-1).type, 'process.finished');

  // From 0: the whole history again, seq 1, 2, 3 … without gaps.
  const all = await take((await box.processes.reattach(p.id)).stream());
  assert.deepEqual(all.map((e) => e.seq), all.map((_, i) => i + 1));
  assert.equal(all[0].type, 'process.started');

  // The handle resumes where its own last stream stopped.
  assert.deepEqual(await take(p.stream({ after: rest.at(-1).seq })), []);
});

test('signal a sleeping process', async () => {
  const p = await box.start(['sleep', '60']);
  // Its start event says it runs; no sleeping on our side.
  const [started] = await take(p.stream(), 1);
  assert.equal(started.type, 'process.started');
  await p.signal('SIGTERM');
  const info = await p.wait({ timeoutMs: 20_000 });
  assert.equal(info.state, 'FINISHED');
  assert.equal(info.result.reason, 'signaled');
  assert.equal(info.result.signal, 15);

  const q = await box.start(['sleep', '60']);
  await q.kill();
  const killed = await q.wait({ timeoutMs: 20_000 });
  assert.notEqual(killed.result.reason, 'exited');
  await assert.rejects(q.signal('SIGINT'), FailedPreconditionError);
});

test('stdin: write, close, and the stored logs', async () => {
  const p = await box.start(['cat'], { stdinOpen: true });
  await p.write('hello ');
  await p.write(new Uint8Array([0x77, 0x6f, 0x72, 0x6c, 0x64]));
  await p.closeStdin();
  const info = await p.wait({ timeoutMs: 20_000 });
  assert.equal(info.result.exit_code, 0);
  assert.equal((await p.logs()).toString(), 'hello world');
  assert.equal((await p.logs({ offset: 6 })).toString(), 'world');
  assert.equal((await p.logs({ stream: 'stderr' })).length, 0);
});

test('list and get processes', async () => {
  const tag = unique('listed');
  await box.run(['true'], { tag });
  const listed = await box.processes.list({ tag });
  assert.equal(listed.length, 1);
  assert.equal(listed[0].info.tag, tag);
  const got = await box.processes.get(listed[0].id);
  assert.deepEqual(got.info.argv, ['true']);
});
