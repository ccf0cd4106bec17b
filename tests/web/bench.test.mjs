// Measured: the queue's first paint with 1,000 runs waiting for review, and the time from a
// run's state change in the daemon to the page showing it. Printed as JSON lines (and written
// to $BENCH_OUT/web.jsonl when set).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { apiOk, closeBrowser, env, launch, report, screenshot, signedIn } from './lib.mjs';

before(launch);
after(closeBrowser);

const RUNS = Number(process.env.WEB_BENCH_RUNS || 1000);
const SAMPLES = Number(process.env.WEB_BENCH_SAMPLES || 5);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

test(`queue first paint with ${RUNS} runs awaiting review`, async () => {
  const t0 = Date.now();
  for (let i = 0; i < RUNS; i += 25) {
    await Promise.all(Array.from({ length: Math.min(25, RUNS - i) }, (_, k) =>
      apiOk(env.bob, 'POST', '/v1/runs', { argv: ['needs-review', 'bench', String(i + k)], labels: { bench: 'queue' } })));
  }
  const createMs = Date.now() - t0;
  const waiting = (await apiOk(env.rev, 'GET', '/v1/runs?state=AWAITING_REVIEW&limit=1000')).runs.length;
  assert.ok(waiting >= Math.min(RUNS, 1000));
  const samples = [];
  let rows = 0;
  // From the click on "Sign in" (the page's mark `signin`) to the frame that shows the queue
  // with every run in the document (`queue-painted`, whose detail counts the rows then). Rows
  // off screen are in the document but laid out only when scrolled near (content-visibility).
  for (let k = 0; k < SAMPLES; k++) {
    const page = await signedIn(env.rev);
    await page.waitForFunction(() => performance.getEntriesByName('queue-painted').length > 0, null, { timeout: 60000 });
    const m = await page.evaluate(() => {
      const painted = performance.getEntriesByName('queue-painted')[0];
      return {
        ms: painted.startTime - performance.getEntriesByName('signin')[0].startTime,
        rows: painted.detail?.rows ?? document.querySelectorAll('[data-testid=queue] tbody tr').length,
      };
    });
    samples.push(m.ms);
    rows = m.rows;
    if (k === 0) await screenshot(page, 'queue-1000');
    await page.context().close();
  }
  assert.ok(rows >= RUNS, `${rows} rows`);
  report({ metric: 'queue_first_paint_ms', runs_in_queue: rows, median: Math.round(median(samples)), samples: samples.map(Math.round), created_runs_in_ms: createMs });
});

test('state change to page', async () => {
  const page = await signedIn(env.rev, { path: '/ui/runs?label=bench%3Dlatency' });
  await page.waitForSelector('[data-testid=runs]');
  const lat = [];
  for (let k = 0; k < 20; k++) {
    const run = await apiOk(env.bob, 'POST', '/v1/runs', { argv: ['needs-review', 'latency', String(k)], labels: { bench: 'latency' } });
    await page.waitForSelector(`tr[data-id="${run.id}"]`, { timeout: 10000 });
    const shown = page.evaluate((id) => new Promise((resolve) => {
      const check = () => document.querySelector(`tr[data-id="${id}"] [data-testid=state]`)?.textContent === 'CANCELLED';
      if (check()) return resolve(Date.now());
      const mo = new MutationObserver(() => {
        if (check()) {
          mo.disconnect();
          resolve(Date.now());
        }
      });
      mo.observe(document.body, { subtree: true, childList: true, characterData: true });
    }), run.id);
    const before = Date.now();
    const rejected = await apiOk(env.rev, 'POST', `/v1/runs/${run.id}:reject`, { reason: 'bench' });
    const changedAt = rejected.finished_at_ms || before;
    lat.push((await shown) - changedAt);
  }
  report({ metric: 'state_change_to_page_ms', runs_in_store: RUNS + 20, n: lat.length, median: median(lat), p95: pct(lat, 0.95), max: Math.max(...lat) });
  await page.context().close();
});
