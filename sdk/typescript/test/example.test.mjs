// The README's example runs as written.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { promisify } from 'node:util';

const root = new URL('..', import.meta.url);

test('examples/hello.mjs is the README\'s example, and it runs', async () => {
  const example = await readFile(new URL('examples/hello.mjs', root), 'utf8');
  const readme = await readFile(new URL('README.md', root), 'utf8');
  assert.ok(readme.includes(example.trim()), 'README.md shows examples/hello.mjs as it is');
  assert.equal(example.trim().split('\n').length, 10);

  const { stdout } = await promisify(execFile)(process.execPath, ['examples/hello.mjs'], { cwd: root, timeout: 30_000 });
  assert.match(stdout, /^exit 0: hello from a sandbox\n/);
  assert.match(stdout, /\ntmp\n/);
});
