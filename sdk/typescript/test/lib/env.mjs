// What the tests share: clients for the harness's four keys (tests/support/with_daemon.py), a
// sandbox per test file, and the harness's restart socket.
import net from 'node:net';
import { randomBytes } from 'node:crypto';

import { Sandboxd } from '../../dist/index.js';

for (const v of ['SANDBOXD_URL', 'SANDBOXD_API_KEY', 'SANDBOXD_API_KEY_2', 'SANDBOXD_REVIEWER_KEY']) {
  if (!process.env[v]) throw new Error(`${v} is not set: run the tests under tests/support/with_daemon.py`);
}

export const keys = {
  alice: process.env.SANDBOXD_API_KEY,
  bob: process.env.SANDBOXD_API_KEY_2,
  reviewer: process.env.SANDBOXD_REVIEWER_KEY,
  admin: process.env.SANDBOXD_ADMIN_KEY,
};

/** alice's client reads the environment like any program would. */
export const alice = new Sandboxd();
export const bob = new Sandboxd({ apiKey: keys.bob });
export const reviewer = new Sandboxd({ apiKey: keys.reviewer });

export function unique(prefix) {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** Sends "restart" to the harness and resolves with its answer once the daemon is back. */
export function restartDaemon() {
  return new Promise((resolve, reject) => {
    const s = net.connect(process.env.SANDBOXD_HARNESS, () => s.write('restart\n'));
    let answer = '';
    s.setEncoding('utf8');
    s.on('data', (c) => (answer += c));
    s.on('end', () => resolve(answer.trim()));
    s.on('error', reject);
  });
}

/** Resolves once a TCP connection to the daemon's port is refused (it has stopped listening). */
export async function daemonDown() {
  const u = new URL(process.env.SANDBOXD_URL);
  for (;;) {
    const refused = await new Promise((resolve) => {
      const s = net.connect(Number(u.port), u.hostname);
      s.on('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.on('error', () => resolve(true));
    });
    if (refused) return;
  }
}

/** Collects an async iterable into an array. */
export async function take(iterable, n = Infinity) {
  const out = [];
  for await (const x of iterable) {
    out.push(x);
    if (out.length >= n) break;
  }
  return out;
}
