// The terminal: a shell with a pty over a WebSocket, input, output, resize.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { inspect } from 'node:util';

import { FailedPreconditionError } from '../dist/index.js';
import { alice, keys } from './lib/env.mjs';

let box;
before(async () => {
  box = await alice.sandboxes.create({ labels: { suite: 'terminal' } });
});
after(async () => {
  await box?.delete();
});

test('a shell with a pty: input, output, resize, exit', async () => {
  const term = await box.terminal({ cols: 80, rows: 24 });
  assert.deepEqual(term.process.info.pty, { cols: 80, rows: 24 });
  assert.ok(!inspect(term, { depth: 10, showHidden: true }).includes(keys.alice));

  await term.write('echo "sum=$((40 + 2))"\n');
  assert.match(await term.readUntil('sum=42'), /sum=42$/);

  // A terminal says it is one. (What is looked for is computed by the shell: the terminal
  // echoes the input too, possibly before the prompt.)
  await term.write('[ -t 0 ] && echo "tty=$((6 * 7))"\n');
  await term.readUntil('tty=42');

  await term.write('stty size\n');
  await term.readUntil('24 80');
  await term.resize(132, 40);
  await term.write('stty size\n');
  await term.readUntil('40 132');
  // The HTTP route resizes as well.
  await term.process.resize(100, 30);
  await term.write('stty size\n');
  await term.readUntil('30 100');

  await term.write('exit 7\n');
  // Output until the terminal closes, then the process's end.
  for await (const _ of term) {
    // drained
  }
  assert.equal(term.closeCode, 1000);
  const info = await term.wait({ timeoutMs: 20_000 });
  assert.equal(info.result.exit_code, 7);
});

test('a terminal reopened shows the recent output first', async () => {
  const term = await box.terminal({ argv: ['sh'] });
  await term.write('echo "marker-$((2 + 3))"\n');
  await term.readUntil('marker-5');
  await term.close();

  const again = await term.process.terminal();
  await again.readUntil('marker-5');
  await again.write('exit\n');
  await again.wait({ timeoutMs: 20_000 });
  await again.close();
});

test('a process without a pty has no terminal', async () => {
  const p = await box.start(['sleep', '30']);
  await assert.rejects(p.terminal(), FailedPreconditionError);
  await p.kill();
});
