// Sandboxes and processes follow the page's one connection to /v1/events/sandboxes: no timer
// re-reads a list. A process that enters review appears in the queue and leaves it when
// approved; a sandbox paused or resumed through the API changes in the list and on its page
// without a reload; after the connection drops the page reconnects and lists again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { apiOk, closeBrowser, env, launch, report, signedIn } from './lib.mjs';

before(launch);
after(closeBrowser);

const feed = (page) => page.evaluate(() => window.sandboxdTest.sandboxFeed());
const feedLive = (page) => page.waitForFunction(() => window.sandboxdTest.sandboxFeed().status === 'live');

// Every request of the page under /v1/sandboxes, as "METHOD PATH?QUERY".
function sandboxRequests(page) {
  const seen = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith('/v1/sandboxes')) seen.push(`${r.method()} ${u.pathname}${u.search}`);
  });
  return seen;
}
// A list read: the sandboxes or a sandbox's processes.
const isList = (req) => /^GET \/v1\/sandboxes(\?|$)|^GET \/v1\/sandboxes\/[^/]+\/processes(\?|$)/.test(req);

test('a process entering review appears in the queue within a second, and leaves it when approved', async () => {
  const box = await apiOk(env.bob, 'POST', '/v1/sandboxes', {});
  const page = await signedIn(env.rev);
  // Both connections open, and the first lists in.
  await feedLive(page);
  await page.waitForSelector('[data-testid=events-status][data-runs=live]');
  await page.waitForSelector('section[data-others=listed]');
  const reqs = sandboxRequests(page);

  const t0 = Date.now();
  const proc = await apiOk(env.bob, 'POST', `/v1/sandboxes/${box.id}/processes`, { argv: ['needs-review', 'feed'] });
  assert.equal(proc.state, 'AWAITING_REVIEW');
  const row = `[data-testid=queue] tr[data-id="${box.id}/${proc.id}"]`;
  await page.waitForSelector(row, { timeout: 5000 });
  const shownMs = Date.now() - t0;
  assert.ok(shownMs < 1000, `shown after ${shownMs} ms`);
  // No list was read: the one request is the process's own record (its command and rule, which
  // a change does not carry).
  assert.deepEqual(reqs, [`GET /v1/sandboxes/${box.id}/processes/${proc.id}`]);
  assert.match(await page.textContent(row), /needs-review feed/);

  reqs.length = 0;
  const t1 = Date.now();
  await apiOk(env.rev, 'POST', `/v1/sandboxes/${box.id}/processes/${proc.id}:approve`);
  await page.waitForSelector(row, { state: 'detached', timeout: 5000 });
  const goneMs = Date.now() - t1;
  assert.ok(goneMs < 1000, `gone after ${goneMs} ms`);
  // Longer than any timer the queue had (4 s): not one request.
  await page.waitForTimeout(5000);
  assert.deepEqual(reqs, []);
  report({ metric: 'queue_process_review_to_page_ms', shown: shownMs, gone: goneMs });
  assert.equal(page.errors.length, 0, String(page.errors));
  await apiOk(env.bob, 'DELETE', '/v1/sandboxes/' + box.id);
  await page.context().close();
});

test("a sandbox's state changes in the list and on its page without a reload", async () => {
  const box = await apiOk(env.alice, 'POST', '/v1/sandboxes', {});
  const page = await signedIn(env.alice, { path: '/ui/sandboxes' });
  const cell = `[data-testid=sandboxes] tr[data-id="${box.id}"] [data-testid=state]`;
  await page.waitForSelector(cell);
  await feedLive(page);
  await page.evaluate(() => { window.notReloaded = true; });
  const reqs = sandboxRequests(page);
  const stateIs = (sel, s) => page.waitForFunction(([q, v]) => document.querySelector(q)?.textContent.startsWith(v), [sel, s], { timeout: 1000 });

  await apiOk(env.alice, 'POST', `/v1/sandboxes/${box.id}:pause`);
  await stateIs(cell, 'PAUSED');
  assert.deepEqual(reqs, []);

  // Its page (the router's, not a load): the sandbox and its processes are listed once.
  await page.click(`a[href="/ui/sandboxes/${box.id}"]`);
  const head = 'main h1 .state';
  await stateIs(head, 'PAUSED');
  assert.deepEqual(reqs.filter(isList), [`GET /v1/sandboxes/${box.id}/processes?limit=1000`]);
  reqs.length = 0;
  await apiOk(env.alice, 'POST', `/v1/sandboxes/${box.id}:resume`);
  await stateIs(head, 'RUNNING');
  // A process started through the API shows up in its list.
  const proc = await apiOk(env.alice, 'POST', `/v1/sandboxes/${box.id}/processes`, { argv: ['needs-review', 'x'] });
  await stateIs(`[data-testid=processes] tr[data-id="${proc.id}"] [data-testid=state]`, 'AWAITING_REVIEW');
  await apiOk(env.alice, 'POST', `/v1/sandboxes/${box.id}:pause`);
  await stateIs(head, 'PAUSED');
  // What else it asked for: its live figures (the one timer, every 2 s) and the new process.
  assert.deepEqual(reqs.filter(isList), []);
  assert.ok(reqs.every((r) => r === `GET /v1/sandboxes/${box.id}` || r === `GET /v1/sandboxes/${box.id}/processes/${proc.id}`), reqs.join(', '));

  await apiOk(env.alice, 'DELETE', '/v1/sandboxes/' + box.id);
  await stateIs(head, 'STOPPED');
  await page.goBack();
  await stateIs(cell, 'STOPPED');
  assert.equal(await page.evaluate(() => window.notReloaded), true);
  assert.equal(page.errors.length, 0, String(page.errors));
  await page.context().close();
});

test('after the connection drops the page reconnects, lists again and shows what it missed', async () => {
  const box = await apiOk(env.alice, 'POST', '/v1/sandboxes', {});
  const page = await signedIn(env.alice, { path: '/ui/sandboxes' });
  const cell = `[data-testid=sandboxes] tr[data-id="${box.id}"] [data-testid=state]`;
  await page.waitForSelector(cell);
  await feedLive(page);
  const { opens } = await feed(page);
  const reqs = sandboxRequests(page);

  // Off the network, the change is missed.
  await page.context().setOffline(true);
  await page.evaluate(() => window.sandboxdTest.dropSockets());
  await apiOk(env.alice, 'POST', `/v1/sandboxes/${box.id}:pause`);
  await page.waitForTimeout(500);
  assert.match(await page.textContent(cell), /^RUNNING/);
  await page.context().setOffline(false);
  await page.waitForFunction((n) => window.sandboxdTest.sandboxFeed().opens > n, opens, { timeout: 15000 });
  await page.waitForFunction((q) => document.querySelector(q)?.textContent.startsWith('PAUSED'), cell, { timeout: 5000 });
  assert.ok(reqs.some((r) => r === 'GET /v1/sandboxes?limit=200'), reqs.join(', '));
  // And it follows again.
  await apiOk(env.alice, 'POST', `/v1/sandboxes/${box.id}:resume`);
  await page.waitForFunction((q) => document.querySelector(q)?.textContent.startsWith('RUNNING'), cell, { timeout: 1000 });
  await apiOk(env.alice, 'DELETE', '/v1/sandboxes/' + box.id);
  assert.equal(page.errors.length, 0, String(page.errors));
  await page.context().close();
});
