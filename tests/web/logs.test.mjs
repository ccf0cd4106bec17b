// Live logs survive dropped WebSockets: the page reconnects with ?after=SEQ and shows every line
// once, in order.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { apiOk, closeBrowser, env, launch, signedIn, waitRun } from './lib.mjs';

before(launch);
after(closeBrowser);

const N = 120;

test('logs resume after the WebSocket drops, without gap or repeat', async () => {
  const run = await apiOk(env.alice, 'POST', '/v1/runs', {
    argv: ['sh', '-c', `for i in $(seq 1 ${N}); do echo "line $i"; sleep 0.04; done`],
  });
  const page = await signedIn(env.alice, { path: '/ui/runs/' + run.id });
  await page.waitForFunction(() => /line \d/.test(document.querySelector('[data-testid=log]')?.textContent || ''), null, { timeout: 20000 });
  let drops = 0;
  for (let k = 0; k < 4; k++) {
    drops += await page.evaluate(() => window.sandboxdTest.dropSockets());
    await page.waitForTimeout(500);
  }
  // And a drop of the network itself.
  await page.context().setOffline(true);
  await page.evaluate(() => window.sandboxdTest.dropSockets());
  await page.waitForTimeout(700);
  await page.context().setOffline(false);
  assert.ok(drops >= 4, 'dropped ' + drops);
  const done = await waitRun(env.alice, run.id, (r) => r.state === 'SUCCEEDED', 60000);
  assert.equal(done.state, 'SUCCEEDED');
  await page.waitForFunction((n) => document.querySelector('[data-testid=log]').textContent.includes(`line ${n}\n`), N, { timeout: 20000 });
  const text = await page.textContent('[data-testid=log]');
  const lines = text.split('\n').map((l) => l.replace(/^.*?(line \d+)$/, '$1')).filter((l) => /^line \d+$/.test(l));
  assert.deepEqual(lines, Array.from({ length: N }, (_, i) => `line ${i + 1}`));
  assert.equal(page.errors.length, 0, String(page.errors));
  await page.context().close();
});
