// A copy-on-write run's diff.patch side by side, and report.md rendered without anything the
// program wrote running in the page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { apiOk, closeBrowser, env, launch, screenshot, signedIn, waitRun } from './lib.mjs';

before(launch);
after(closeBrowser);

test('diff.patch of a copy-on-write run, side by side; report.md sanitized', { skip: !env.workspaceRoot && 'no workspace root' }, async () => {
  const dir = mkdtempSync(path.join(env.workspaceRoot, 'project-'));
  chmodSync(dir, 0o755);
  writeFileSync(path.join(dir, 'a.txt'), 'one\ntwo\nthree\nfour\n');
  writeFileSync(path.join(dir, 'gone.txt'), 'bye\n');
  mkdirSync(path.join(dir, 'src'));
  writeFileSync(path.join(dir, 'src/main.c'), 'int main(void) {\n  return 0;\n}\n');
  const script = [
    "printf 'one\\nTWO\\nthree\\nfour\\nfive\\n' > /workspace/a.txt",
    'rm /workspace/gone.txt',
    "echo 'new file' > /workspace/src/new.txt",
    `echo '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>[click](javascript:window.__xss=3)'`,
  ].join('; ');
  const run = await apiOk(env.alice, 'POST', '/v1/runs', { argv: ['sh', '-c', script], workspace: { path: dir, mode: 'cow' } });
  await waitRun(env.alice, run.id, (r) => r.state === 'SUCCEEDED' || r.state === 'FAILED', 60000);

  const page = await signedIn(env.alice, { path: '/ui/runs/' + run.id });
  await page.waitForSelector('[data-testid="show-diff.patch"]');
  await page.click('[data-testid="show-diff.patch"]');
  await page.waitForSelector('[data-testid=diff]');
  const files = await page.locator('.diff-file h4 code').allTextContents();
  assert.ok(files.some((f) => f.endsWith('a.txt')), files.join());
  assert.ok(files.some((f) => f.endsWith('gone.txt')));
  assert.ok(files.some((f) => f.endsWith('src/new.txt')));
  // The changed line on both sides of one row.
  const row = page.locator('table.sbs tr', { has: page.locator('td.del') }).filter({ hasText: 'two' }).first();
  assert.match(await row.locator('td.del').textContent(), /^two$/);
  assert.match(await row.locator('td.add').textContent(), /^TWO$/);
  assert.ok((await page.locator('td.add', { hasText: 'five' }).count()) >= 1);
  await screenshot(page, 'run-diff');

  await page.click('[data-testid="show-report.md"]');
  await page.waitForSelector('.markdown');
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(await page.locator('.markdown script, .markdown img, .markdown [onerror]').count(), 0);
  const hrefs = await page.locator('.markdown a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  assert.ok(hrefs.every((h) => h === null || !/^javascript:/i.test(h)), hrefs.join());
  assert.match(await page.textContent('.markdown'), /\S/);
  await screenshot(page, 'run-report');

  // Other files download (fetched with the key, saved from a blob).
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('[data-testid=artifacts] li', { hasText: 'audit.json' }).locator('button', { hasText: 'Download' }).click(),
  ]);
  assert.equal(download.suggestedFilename(), 'audit.json');
  assert.equal(page.errors.length, 0, String(page.errors));
  await page.context().close();
});
