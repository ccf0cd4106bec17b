// Sandboxes, processes and a terminal (xterm.js on the pty WebSocket); the policies page; narrow
// screens and the keyboard.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { apiOk, closeBrowser, env, launch, screenshot, signedIn } from './lib.mjs';

before(launch);
after(closeBrowser);

test('a terminal in an open sandbox', async () => {
  const box = await apiOk(env.alice, 'POST', '/v1/sandboxes', { labels: { web: 'test' } });
  assert.equal(box.state, 'RUNNING');
  const page = await signedIn(env.alice, { path: '/ui/sandboxes' });
  await page.waitForSelector(`[data-testid=sandboxes] tr[data-id="${box.id}"]`);
  await screenshot(page, 'sandboxes');
  await page.click(`a[href="/ui/sandboxes/${box.id}"]`);
  await page.waitForSelector('[data-testid=start-process]');
  await page.fill('input[name=command]', 'sh');
  await page.click('[data-testid=start-process]');
  await page.waitForURL(/\/processes\/\d+$/);
  await page.click('[data-testid=open-terminal]');
  await page.waitForSelector('[data-testid=terminal-status]:text("live")', { timeout: 20000 });
  await page.waitForSelector('.xterm-rows');
  await page.click('[data-testid=terminal]');
  await page.keyboard.type('echo hello-$((6*7))\n', { delay: 5 });
  await page.waitForFunction(() => document.querySelector('.xterm-rows')?.textContent.includes('hello-42'), null, { timeout: 10000 });
  await screenshot(page, 'sandbox-terminal');
  // Escape twice leaves the terminal for the page.
  await page.keyboard.press('Escape');
  await page.keyboard.press('Escape');
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'open-terminal');
  // The process's own log (its events WebSocket) has the same output.
  await page.waitForFunction(() => document.querySelector('[data-testid=process-log]')?.textContent.includes('hello-42'));
  await page.keyboard.press('Tab');
  await apiOk(env.alice, 'DELETE', '/v1/sandboxes/' + box.id);
  assert.equal(page.errors.length, 0, String(page.errors));
  await page.context().close();
});

test('a process awaiting review, decided from the queue by a reviewer', async () => {
  const box = await apiOk(env.bob, 'POST', '/v1/sandboxes', {});
  const proc = await apiOk(env.bob, 'POST', `/v1/sandboxes/${box.id}/processes`, { argv: ['needs-review', 'now'] });
  assert.equal(proc.state, 'AWAITING_REVIEW');
  const page = await signedIn(env.rev);
  const row = `[data-testid=queue] tr[data-id="${box.id}/${proc.id}"]`;
  await page.waitForSelector(row, { timeout: 10000 });
  await page.click(row + ' a');
  await page.waitForSelector('[data-testid=approve]');
  await page.fill('.review input', 'no');
  await page.click('[data-testid=reject]');
  await page.waitForSelector('.process .state.st-rejected', { timeout: 10000 });
  await apiOk(env.bob, 'DELETE', '/v1/sandboxes/' + box.id);
  await page.context().close();
});

test('policies: profiles in force and the evaluate box', async () => {
  const page = await signedIn(env.alice, { path: '/ui/policies' });
  await page.waitForSelector('[data-testid=seccomp-profiles] tbody tr');
  assert.match(await page.textContent('[data-testid=seccomp-profiles]'), /default/);
  await page.fill('input[name=command]', 'forbidden thing');
  await page.keyboard.press('Enter');
  await page.waitForSelector('[data-testid=evaluation]');
  assert.match(await page.textContent('[data-testid=evaluation]'), /deny/);
  await page.fill('input[name=command]', 'needs-review --now');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('[data-testid=evaluation]').textContent.includes('review'));
  await screenshot(page, 'policies');
  await page.context().close();
});

test("an API error shows the API's error.message", async () => {
  const page = await signedIn(env.alice, { path: '/ui/runs?label=nolabel' });
  await page.waitForSelector('main [role=alert]');
  assert.equal(await page.textContent('main [role=alert]'), 'label: use label=KEY=VALUE');
  await page.context().close();
});

test('narrow screen and keyboard', async () => {
  const page = await signedIn(env.rev, { path: '/ui/queue', viewport: { width: 380, height: 800 } });
  await page.waitForSelector('[data-testid=queue], [data-testid=queue-empty]');
  // Nothing wider than the screen but the scrolling tables.
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 380 + 1, 'page is ' + wide + ' px wide');
  await screenshot(page, 'queue-narrow');
  // Focus is on the page's heading: back up to the Runs link and follow it with Enter.
  let found = false;
  for (let i = 0; i < 10 && !found; i++) {
    await page.keyboard.press('Shift+Tab');
    found = await page.evaluate(() => document.activeElement?.textContent === 'Runs');
  }
  assert.ok(found, 'Runs link reached by Tab');
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/ui\/runs$/);
  await page.waitForSelector('[data-testid=runs]');
  await screenshot(page, 'runs-narrow');
  await page.context().close();
});
