// Files: write, read, list, stat, mkdir, move, remove, tar upload and download, watch, and
// paths that try to leave the sandbox.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { InvalidArgumentError, NotFoundError, PermissionDeniedError, SandboxdError, createTar, readTar } from '../dist/index.js';
import { alice } from './lib/env.mjs';

let box;
before(async () => {
  box = await alice.sandboxes.create({ labels: { suite: 'files' } });
});
after(async () => {
  await box?.delete();
});

test('write, read, stat, list, range', async () => {
  const w = await box.files.write('/tmp/dir/a.txt', 'hello world', { parents: true, mode: 0o640 });
  assert.equal(w.size, 11);
  assert.equal(await box.files.readText('/tmp/dir/a.txt'), 'hello world');
  assert.equal((await box.files.read('/tmp/dir/a.txt', { offset: 6 })).toString(), 'world');
  assert.equal((await box.files.read('/tmp/dir/a.txt', { offset: 0, length: 5 })).toString(), 'hello');
  const st = await box.files.stat('/tmp/dir/a.txt');
  assert.deepEqual([st.type, st.size, st.mode], ['file', 11, '0640']);

  const bytes = new Uint8Array(256).map((_, i) => i);
  await box.files.write('/tmp/dir/b.bin', bytes);
  assert.deepEqual([...(await box.files.read('/tmp/dir/b.bin'))], [...bytes]);

  const list = await box.files.list('/tmp/dir');
  assert.deepEqual(list.map((e) => e.name).sort(), ['a.txt', 'b.bin']);
  assert.equal(list.truncated, false);
  // What the sandbox's processes see is the same file.
  assert.equal((await box.run(['cat', '/tmp/dir/a.txt'])).stdout.toString(), 'hello world');
});

test('mkdir, move, remove, exists', async () => {
  await box.files.mkdir('/tmp/m/n/o');
  assert.equal((await box.files.stat('/tmp/m/n/o')).type, 'directory');
  await box.files.write('/tmp/m/x', 'x');
  await box.files.move('/tmp/m/x', '/tmp/m/n/y');
  assert.equal(await box.files.exists('/tmp/m/x'), false);
  assert.equal(await box.files.readText('/tmp/m/n/y'), 'x');
  await assert.rejects(box.files.remove('/tmp/m'), SandboxdError);
  await box.files.remove('/tmp/m', { recursive: true });
  assert.equal(await box.files.exists('/tmp/m'), false);
  await assert.rejects(box.files.read('/tmp/m/n/y'), NotFoundError);
});

test('hostile paths are refused with a typed error', async () => {
  for (const path of ['../../etc/passwd', '/tmp/../../etc/passwd', '/../etc/shadow']) {
    const err = await box.files.read(path).catch((e) => e);
    assert.ok(err instanceof InvalidArgumentError, `${path}: ${err}`);
    assert.equal(err.status, 400);
    await assert.rejects(box.files.write(path, 'owned'), InvalidArgumentError);
    await assert.rejects(box.files.list(path), InvalidArgumentError);
  }
  // A symlink pointing out resolves inside the sandbox's root, not the host's; a magic link
  // is refused.
  await box.run(['sh', '-c', 'ln -s /../../../../etc /tmp/out; ln -s /proc/1/root /tmp/magic']);
  assert.deepEqual(await box.files.read('/tmp/out/passwd'), await box.files.read('/etc/passwd'));
  await assert.rejects(box.files.read('/tmp/magic/etc/passwd'), PermissionDeniedError);
});

test('upload a tar, download it back', async () => {
  const stats = await box.files.upload('/tmp/up', [
    { name: 'src/', type: 'directory' },
    { name: 'src/main.c', data: 'int main(void) { return 0; }\n' },
    { name: 'README', data: 'read me', mode: 0o600 },
  ], { parents: true });
  assert.equal(stats.entries, 3);
  assert.equal(await box.files.readText('/tmp/up/src/main.c'), 'int main(void) { return 0; }\n');

  const tar = await box.files.download('/tmp/up');
  const files = readTar(tar).filter((f) => f.type === 'file').map((f) => [f.name.replace(/^\.\//, ''), f.data.toString()]).sort();
  assert.deepEqual(files, [['README', 'read me'], ['src/main.c', 'int main(void) { return 0; }\n']]);

  // Raw tar bytes and an async iterable of them work too.
  async function* pieces() {
    const t = createTar([{ name: 'c.txt', data: 'ccc' }]);
    yield t.subarray(0, 700);
    yield t.subarray(700);
  }
  await box.files.upload('/tmp/up', pieces());
  assert.equal(await box.files.readText('/tmp/up/c.txt'), 'ccc');
});

test('a tar with a name leading out is refused and writes nothing', async () => {
  for (const name of ['../evil.txt', '/etc/evil.txt', 'a/../../evil.txt']) {
    const tar = createTar([{ name: 'ok.txt', data: 'fine' }, { name, data: 'evil' }]);
    const err = await box.files.upload('/tmp/hostile', tar, { parents: true }).catch((e) => e);
    assert.ok(err instanceof InvalidArgumentError || err instanceof PermissionDeniedError, `${name}: ${err}`);
  }
  assert.equal(await box.files.exists('/tmp/hostile/ok.txt'), false);
  assert.equal(await box.files.exists('/tmp/evil.txt'), false);
});

test('watch a directory', async () => {
  await box.files.mkdir('/tmp/w');
  const w = await box.files.watch('/tmp/w');
  // The watch is in place once watch() resolved: no waiting before the change.
  await box.files.write('/tmp/w/new.txt', 'n');
  const seen = [];
  for await (const ev of w) {
    seen.push(ev);
    if (ev.path === 'new.txt') break;
  }
  assert.ok(['created', 'modified'].includes(seen.at(-1).type), JSON.stringify(seen));
  await box.files.remove('/tmp/w/new.txt');
  for await (const ev of w) {
    if (ev.type === 'deleted' && ev.path === 'new.txt') break;
  }
  await w.close();
});
