// Host changes only after review, in the browser: a copy-on-write run's change set beside its
// diff; a reviewer who did not submit the run applies it (after a confirmation, bound to the
// diff's hash) and the host directory then holds exactly what the run wrote; a host file changed
// since the run is a conflict that the page lists, with nothing written; the submitter has no
// Apply button.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { apiOk, closeBrowser, env, launch, screenshot, signedIn, waitRun } from './lib.mjs';

before(launch);
after(closeBrowser);

const skip = !env.workspaceRoot && 'no workspace root';

// A directory under the daemon's workspace root, with `files` ({relative path: content}).
function workspace(files) {
  const dir = mkdtempSync(path.join(env.workspaceRoot, 'apply-'));
  chmodSync(dir, 0o755);
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

async function cowRun(dir, script, state = 'SUCCEEDED') {
  const run = await apiOk(env.alice, 'POST', '/v1/runs', { argv: ['sh', '-c', script], workspace: { path: dir, mode: 'cow' } });
  const ended = await waitRun(env.alice, run.id, (r) => r.state === 'SUCCEEDED' || r.state === 'FAILED' || r.state === 'CANCELLED', 60000);
  assert.equal(ended.state, state, JSON.stringify(ended.result));
  return ended;
}

// The change list as the page shows it: [path, op] per row.
const rows = (page) => page.locator('[data-testid=change-entries] tbody tr').evaluateAll((trs) => trs.map((tr) => [tr.dataset.path, tr.dataset.op]));

// Answers the next confirmation dialog; resolves with its message once answered.
function answer(page, accept) {
  return new Promise((resolve) => {
    page.once('dialog', async (d) => {
      const message = d.message();
      await (accept ? d.accept() : d.dismiss());
      resolve(message);
    });
  });
}

// Every POST .../:apply the page sends, with its body.
function applyRequests(page) {
  const seen = [];
  page.on('request', (req) => {
    if (req.method() === 'POST' && req.url().endsWith(':apply')) seen.push(JSON.parse(req.postData() || '{}'));
  });
  return seen;
}

test('a reviewer applies a copy-on-write run\'s changes; the host holds them byte for byte; the submitter cannot', { skip }, async () => {
  const dir = workspace({ 'a.txt': 'one\ntwo\n', 'gone.txt': 'bye\n', 'keep.txt': 'kept\n' });
  const run = await cowRun(dir, [
    "printf 'one\\nTWO\\nthree\\n' > /workspace/a.txt",
    'rm /workspace/gone.txt',
    'mkdir /workspace/new',
    "printf '\\377\\001\\000binary' > /workspace/new/blob.bin",
    'chmod 750 /workspace/new/blob.bin',
  ].join('; '));
  const artifacts = await apiOk(env.alice, 'GET', `/v1/runs/${run.id}/artifacts`);
  const diffSha = artifacts.artifacts.find((a) => a.name === 'diff.patch').sha256;
  const expected = [['a.txt', 'write'], ['gone.txt', 'delete'], ['new', 'make_dir'], ['new/blob.bin', 'write']];

  // The submitter sees the set, and no Apply button.
  const alice = await signedIn(env.alice, { path: '/ui/runs/' + run.id });
  await alice.waitForSelector('[data-testid=change-entries]');
  assert.deepEqual(await rows(alice), expected);
  await alice.waitForSelector('[data-testid=apply-not-yours]');
  assert.equal(await alice.locator('[data-testid=apply]').count(), 0);
  assert.match(await alice.textContent('[data-testid=changes-status]'), /Not applied yet/);

  const rev = await signedIn(env.rev, { path: '/ui/runs/' + run.id });
  const sent = applyRequests(rev);
  await rev.waitForSelector('[data-testid=change-entries]');
  assert.deepEqual(await rows(rev), expected);
  const blob = rev.locator('[data-testid=change-entries] tr[data-path="new/blob.bin"]');
  assert.match(await blob.textContent(), /write file.*nothing.*0750.*9 B/);
  assert.match(await rev.locator('[data-testid=change-entries] tr[data-path="a.txt"]').textContent(), /a file.*0644/);
  // The diff beside the list, and the hash it is bound to.
  await rev.waitForSelector('[data-testid=changes-diff]');
  assert.equal(await rev.textContent('[data-testid=changes-diff-sha256]'), diffSha);
  assert.match(await rev.textContent('[data-testid=changes-diff]'), /TWO/);
  const apply = rev.locator('[data-testid=apply]');
  await rev.waitForSelector('[data-testid=apply]:not([disabled])');
  await screenshot(rev, 'run-changes');

  // Asked first: a "no" sends nothing.
  const no = answer(rev, false);
  await apply.click();
  const asked = await no;
  assert.match(asked, /4 changes/);
  assert.ok(asked.includes(dir) && asked.includes(diffSha.slice(0, 12)), asked);
  assert.equal(readFileSync(path.join(dir, 'a.txt'), 'utf8'), 'one\ntwo\n');
  assert.equal(await rev.locator('[data-testid=apply-result]').count(), 0);

  const yes = answer(rev, true);
  await apply.click();
  await yes;
  await rev.waitForSelector('[data-testid=apply-result]');
  assert.match(await rev.textContent('[data-testid=apply-result]'), /2 files written, 1 deleted, 1 directory made, 0 removed/);
  assert.deepEqual(sent, [{ diff_sha256: diffSha }]);

  // The host directory, byte for byte.
  assert.deepEqual(readFileSync(path.join(dir, 'a.txt')), Buffer.from('one\nTWO\nthree\n'));
  assert.deepEqual(readFileSync(path.join(dir, 'new/blob.bin')), Buffer.from([0xff, 0x01, 0x00, ...Buffer.from('binary')]));
  assert.equal(statSync(path.join(dir, 'new/blob.bin')).mode & 0o7777, 0o750);
  assert.ok(statSync(path.join(dir, 'new')).isDirectory());
  assert.equal(existsSync(path.join(dir, 'gone.txt')), false);
  assert.equal(readFileSync(path.join(dir, 'keep.txt'), 'utf8'), 'kept\n');

  // Once only: the page reads the set again and says who applied it.
  await rev.waitForSelector('[data-testid=applied]');
  const applied = await rev.textContent('[data-testid=applied]');
  assert.ok(applied.startsWith(`Applied to ${dir} by rev at `), applied);
  assert.match(applied, /2 files written, 1 deleted, 1 directory made, 0 removed/);
  assert.equal(await apply.isDisabled(), true);
  assert.match(await rev.textContent('[data-testid=apply-why]'), /Applied already, by rev/);
  await rev.waitForFunction(() => /run\.changes_applied/.test(document.querySelector('[data-testid=audit]')?.textContent ?? ''));
  await screenshot(rev, 'run-changes-applied');

  // A second look, by the submitter: applied by rev, still no button.
  const again = await signedIn(env.alice, { path: '/ui/runs/' + run.id });
  await again.waitForSelector('[data-testid=applied]');
  assert.match(await again.textContent('[data-testid=applied]'), /by rev/);
  assert.equal(await again.locator('[data-testid=apply]').count(), 0);

  const errors = alice.errors.concat(rev.errors, again.errors);
  assert.equal(errors.length, 0, String(errors));
  for (const p of [alice, rev, again]) await p.context().close();
});

test('a host file changed since the run: Apply lists the conflict and writes nothing', { skip }, async () => {
  const dir = workspace({ 'a.txt': 'one\n' });
  const run = await cowRun(dir, "printf 'from the run\\n' > /workspace/a.txt; printf 'new\\n' > /workspace/b.txt");
  writeFileSync(path.join(dir, 'a.txt'), 'edited on the host\n');

  const admin = await signedIn(env.admin, { path: '/ui/runs/' + run.id });
  await admin.waitForSelector('[data-testid=change-entries]');
  assert.deepEqual(await rows(admin), [['a.txt', 'write'], ['b.txt', 'write']]);
  await admin.waitForSelector('[data-testid=apply]:not([disabled])');
  const yes = answer(admin, true);
  await admin.click('[data-testid=apply]');
  await yes;
  await admin.waitForSelector('[data-testid=apply-conflicts]');
  const conflicts = await admin.locator('[data-testid=apply-conflicts] tbody tr').evaluateAll((trs) => trs.map((tr) => [tr.dataset.path, tr.cells[1].textContent]));
  assert.deepEqual(conflicts, [['a.txt', 'changed on the host since the run started']]);
  assert.match(await admin.textContent('[data-testid=apply-conflicts]'), /Nothing was written/);
  assert.equal(await admin.locator('[data-testid=apply-result]').count(), 0);
  await screenshot(admin, 'run-changes-conflict');

  // Nothing written: the host's edit stands, the run's new file is not there, nothing applied.
  assert.equal(readFileSync(path.join(dir, 'a.txt'), 'utf8'), 'edited on the host\n');
  assert.equal(existsSync(path.join(dir, 'b.txt')), false);
  const set = await apiOk(env.alice, 'GET', `/v1/runs/${run.id}/changes`);
  assert.equal(set.applied, null);
  assert.equal(await admin.locator('[data-testid=applied]').count(), 0);
  assert.equal(await admin.locator('[data-testid=apply]').isDisabled(), false);
  assert.equal(admin.errors.length, 0, String(admin.errors));
  await admin.context().close();
});

test('a failed copy-on-write run: its changes are listed, and the page says why they cannot be applied', { skip }, async () => {
  const dir = workspace({ 'a.txt': 'one\n' });
  const run = await cowRun(dir, "printf 'half done\\n' > /workspace/a.txt; exit 3", 'FAILED');
  const rev = await signedIn(env.rev, { path: '/ui/runs/' + run.id });
  await rev.waitForSelector('[data-testid=change-entries]');
  assert.deepEqual(await rows(rev), [['a.txt', 'write']]);
  assert.match(await rev.textContent('[data-testid=changes-status]'), /Not applicable\. The run ended FAILED/);
  assert.equal(await rev.locator('[data-testid=apply]').isDisabled(), true);
  assert.match(await rev.textContent('[data-testid=apply-why]'), /ended FAILED/);
  assert.equal(readFileSync(path.join(dir, 'a.txt'), 'utf8'), 'one\n');
  assert.equal(rev.errors.length, 0, String(rev.errors));
  await rev.context().close();
});
