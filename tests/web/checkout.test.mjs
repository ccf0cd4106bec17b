// A pinned checkout's run in the browser: the run page names the repository and the full SHA the
// run saw, says the tree was read-only, and the plan's hash covers it; a run that changed its
// checkout shows why it failed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { apiOk, closeBrowser, env, launch, screenshot, signedIn, waitRun } from './lib.mjs';

before(launch);
after(closeBrowser);

let git = true;
try { execFileSync('git', ['--version']); } catch { git = false; }
const skip = (!env.workspaceRoot && 'no workspace root') || (!git && 'no git binary');

// A repository under the workspace root with one commit of `files`; its path and the commit.
function repository(files) {
  const dir = mkdtempSync(path.join(env.workspaceRoot, 'repo-'));
  chmodSync(dir, 0o755);
  const run = (...args) => execFileSync('git', ['-C', dir, '-c', 'user.email=t@example.org', '-c', 'user.name=t', ...args]).toString();
  run('init', '-q');
  for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), content);
  run('add', '-A');
  run('commit', '-q', '-m', 'pinned');
  return { dir, sha: run('rev-parse', 'HEAD').trim() };
}

test('a checkout run shows its repository and the exact commit; a change to it fails the run', { skip }, async () => {
  const { dir, sha } = repository({ 'f.txt': 'pinned\n' });
  const run = await apiOk(env.alice, 'POST', '/v1/runs', { argv: ['cat', '/workspace/f.txt'], checkout: { repo: dir, sha } });
  const ended = await waitRun(env.alice, run.id, (r) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(r.state), 60000);
  assert.equal(ended.state, 'SUCCEEDED', JSON.stringify(ended.result));
  const page = await signedIn(env.rev, { path: '/ui/runs/' + run.id });
  await page.waitForSelector('[data-testid=checkout-sha]');
  assert.equal(await page.textContent('[data-testid=checkout-sha]'), sha);
  const shown = await page.textContent('[data-testid=checkout]');
  assert.ok(shown.includes(dir), shown);
  assert.match(shown, /read-only/);
  assert.equal(await page.textContent('[data-testid=plan-sha256]'), ended.plan_sha256);
  await screenshot(page, 'run-checkout');

  const dirty = await apiOk(env.alice, 'POST', '/v1/runs', { argv: ['sh', '-c', 'echo x >> /workspace/f.txt'], checkout: { repo: dir, sha } });
  const failed = await waitRun(env.alice, dirty.id, (r) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(r.state), 60000);
  assert.equal(failed.result.reason, 'checkout_dirty: modified f.txt');
  const again = await signedIn(env.alice, { path: '/ui/runs/' + dirty.id });
  await again.waitForFunction(() => document.body.textContent.includes('checkout_dirty'));
});
