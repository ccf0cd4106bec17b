// A daemon with a workspace root for copy-on-write runs. The harness's own when it has one
// (SANDBOXD_WORKSPACE_ROOT names it) and no policy is asked for; else a second one from
// tests/support/with_daemon.py (the binary of SANDBOXD_SERVER) with the root in its config, as
// tests/web/run.sh configures its own, and the policy asked for (commands.yaml text) when given.
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Sandboxd } from '../../dist/index.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const harness = path.join(repo, 'tests/support/with_daemon.py');

// Run by the harness in place of a test command: prints the daemon's environment as one JSON
// line once the daemon is ready, then holds it until its stdin closes.
const HOLD = [
  'import json, os, sys',
  "print(json.dumps({k: v for k, v in os.environ.items() if k.startswith('SANDBOXD_')}), flush=True)",
  'sys.stdin.read()',
].join('\n');

/** Why the suite cannot get such a daemon here (with its own policy: `{policy: true}`), or null
 * when it can. */
export function workspaceDaemonMissing({ policy = false } = {}) {
  if (process.env.SANDBOXD_WORKSPACE_ROOT && !policy) return null;
  if (!process.env.SANDBOXD_SERVER || !existsSync(harness)) {
    return `needs ${policy ? '' : 'SANDBOXD_WORKSPACE_ROOT, or '}SANDBOXD_SERVER and ${harness}`;
  }
  return null;
}

/** { root, client(who), workspace(files), close() }: `who` is alice, bob, rev or admin.
 * `policy`: the command policy (commands.yaml text) of a daemon started for it. */
export async function workspaceDaemon({ policy } = {}) {
  let env = process.env;
  let root = policy === undefined ? process.env.SANDBOXD_WORKSPACE_ROOT : undefined;
  let child = null;
  let exited = null;
  let tmp = null;
  if (!root) {
    tmp = mkdtempSync('/tmp/sbx-sdk-workspaces-');
    chmodSync(tmp, 0o711); // the sandboxes reach their workspaces through it
    root = path.join(tmp, 'workspaces');
    mkdirSync(root, { mode: 0o755 });
    chmodSync(root, 0o755);
    const extra = path.join(tmp, 'extra.yaml');
    writeFileSync(extra, `workspace_roots: [${root}]\nworkspace_cow_root_owned: true\n`);
    const options = [];
    if (policy !== undefined) {
      options.push('--policy', path.join(tmp, 'commands.yaml'));
      writeFileSync(options[1], policy);
    }
    child = spawn('/usr/bin/python3', [harness, '--server', process.env.SANDBOXD_SERVER, '--extra-config', extra, ...options, '--', '/usr/bin/python3', '-c', HOLD],
      { stdio: ['pipe', 'pipe', 'inherit'] });
    exited = once(child, 'exit');
    const lines = createInterface({ input: child.stdout });
    const line = await Promise.race([once(lines, 'line').then(([l]) => l), exited.then(() => null)]);
    lines.close();
    if (line === null) throw new Error(`the second daemon did not start (exit ${child.exitCode}; its log is above)`);
    env = JSON.parse(line);
  }
  const keys = { alice: env.SANDBOXD_API_KEY, bob: env.SANDBOXD_API_KEY_2, rev: env.SANDBOXD_REVIEWER_KEY, admin: env.SANDBOXD_ADMIN_KEY };
  return {
    root,
    client: (who) => new Sandboxd({ url: env.SANDBOXD_URL, apiKey: keys[who] }),
    /** A new directory under the root holding `files` ({relative path: string or Buffer}). */
    workspace(files) {
      const dir = mkdtempSync(path.join(root, 'apply-'));
      chmodSync(dir, 0o755);
      for (const [name, content] of Object.entries(files)) {
        mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
        writeFileSync(path.join(dir, name), content);
      }
      return dir;
    },
    async close() {
      if (child) {
        child.stdin.end(); // the held command ends; the harness stops the daemon
        await exited;
      }
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    },
  };
}
