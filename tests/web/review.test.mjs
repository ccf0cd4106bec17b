// The review path in the browser: a submitter's run appears in the queue, a reviewer reads the
// plan and the rule and approves it, and the logs arrive live; a submitter has no approve button
// on its own run and the API refuses a forged approval.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { api, apiOk, closeBrowser, env, launch, screenshot, signedIn, waitRun } from './lib.mjs';

before(launch);
after(closeBrowser);

const SCRIPT = 'for i in $(seq 1 30); do echo "line $i"; echo "warn $i" >&2; sleep 0.05; done; printf "\\377\\376 raw\\n"';

test('the key lives in memory only: nothing stored, a reload asks again', async () => {
  const page = await signedIn(env.alice);
  assert.equal(await page.textContent('[data-testid=role]'), 'alice · submitter');
  const stored = await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie]);
  assert.deepEqual(stored, [0, 0, '']);
  await page.reload();
  await page.waitForSelector('#apikey');
  // A wrong key: the API's own message.
  await page.fill('#apikey', 'not-a-key');
  await page.click('button[type=submit]');
  const msg = await page.textContent('[role=alert]');
  assert.match(msg, /key/i);
  await page.context().close();
});

test('submitted by alice, seen in the queue, approved by rev, logs live', async () => {
  const alice = await signedIn(env.alice);
  const rev = await signedIn(env.rev);
  await rev.waitForSelector('[data-testid=queue], [data-testid=queue-empty]');
  await alice.waitForSelector('[data-testid=queue], [data-testid=queue-empty]');

  const run = await apiOk(env.alice, 'POST', '/v1/runs', {
    argv: ['bash', '-c', SCRIPT], env: { TOKEN: 'hunter2' }, labels: { team: 'web' }, limits: { memory: '256m' },
  });
  assert.equal(run.state, 'AWAITING_REVIEW');
  // Both queues show it without a reload (the event stream).
  for (const page of [alice, rev]) {
    await page.waitForSelector(`[data-testid=queue] tr[data-id="${run.id}"]`, { timeout: 10000 });
    const row = await page.textContent(`[data-testid=queue] tr[data-id="${run.id}"]`);
    assert.match(row, /alice/);
    assert.match(row, /bash \*/);
  }
  await screenshot(rev, 'queue');

  // The submitter's own run: no approve button.
  await alice.click(`a[href="/ui/runs/${run.id}"]`);
  await alice.waitForSelector('[data-testid=plan-steps]');
  assert.equal(await alice.locator('[data-testid=approve]').count(), 0);
  // A forged approval is refused.
  const forged = await api(env.alice, 'POST', `/v1/runs/${run.id}:approve`);
  assert.equal(forged.status, 403);

  // The reviewer reads the plan and the rule, then approves.
  await rev.click(`a[href="/ui/runs/${run.id}"]`);
  await rev.waitForSelector('[data-testid=approve]');
  const plan = await rev.textContent('[data-testid=plan-steps]');
  assert.ok(plan.includes('bash') && plan.includes('seq 1 30'));
  assert.match(await rev.textContent('[data-testid=rule]'), /bash \*.*commands\.yaml:\d+/);
  assert.match(await rev.textContent('main'), /TOKEN/);
  assert.doesNotMatch(await rev.textContent('main'), /hunter2/);
  // The plan's hash as the API gives it; the approval names it, with the reviewer's comment.
  assert.equal(await rev.textContent('[data-testid=plan-sha256]'), run.plan_sha256);
  await rev.fill('#reason', 'read the script: fine');
  await screenshot(rev, 'run-review');
  await rev.click('[data-testid=approve]');

  // The logs arrive while it runs, stdout and stderr told apart, the raw bytes escaped.
  await rev.waitForFunction(() => /line [1-9]/.test(document.querySelector('[data-testid=log]').textContent), null, { timeout: 15000 });
  await rev.waitForSelector('.state.st-succeeded', { timeout: 20000 });
  await rev.waitForFunction(() => document.querySelector('[data-testid=log]').textContent.includes('raw'));
  const out = await rev.locator('[data-testid=log] [data-stream=stdout]').allTextContents();
  const err = await rev.locator('[data-testid=log] [data-stream=stderr]').allTextContents();
  assert.ok(out.join('').includes('line 30') && !out.join('').includes('warn'));
  assert.ok(err.join('').includes('warn 30') && !err.join('').includes('line'));
  assert.ok(out.join('').includes('\\xff\\xfe raw'), out.join('').slice(-40));
  await rev.waitForSelector('[data-testid=step-results]');
  // The layers this run's sandbox had, from the run itself.
  assert.match(await rev.textContent('[data-testid=run-namespaces]'), /user.*pid.*mount/);
  await rev.waitForSelector('[data-testid=audit-verification].ok');
  assert.match(await rev.textContent('[data-testid=audit]'), /run\.approved/);
  const decided = await apiOk(env.alice, 'GET', '/v1/runs/' + run.id);
  assert.deepEqual(decided.review.approvals.map((v) => [v.by, v.comment, v.plan_sha256]),
    [['rev', 'read the script: fine', run.plan_sha256]]);
  assert.match(await rev.textContent('[data-testid=votes]'), /rev.*read the script: fine/);
  await screenshot(rev, 'run-done');

  // The submitter's page followed along without a reload.
  await alice.waitForSelector('.state.st-succeeded', { timeout: 20000 });
  assert.equal(alice.errors.length + rev.errors.length, 0, String(alice.errors.concat(rev.errors)));
  await alice.context().close();
  await rev.context().close();
});

test('the runs stream starts where the page read its lists, not at the start of history', async () => {
  // History from before the sign-in: a run, submitted and decided.
  const old = await apiOk(env.alice, 'POST', '/v1/runs', { argv: ['bash', '-c', 'true'] });
  await apiOk(env.rev, 'POST', `/v1/runs/${old.id}:reject`, {});
  const before = (await apiOk(env.rev, 'GET', '/v1/info')).events_after;
  assert.ok(before > 0);
  const sockets = [];
  const page = await signedIn(env.rev, {
    setup: (p) => p.on('websocket', (ws) => sockets.push(new URL(ws.url()))),
  });
  await page.waitForSelector('[data-testid=events-status][data-runs=live]');
  const runs = sockets.filter((u) => u.pathname === '/v1/events');
  assert.equal(runs.length, 1, sockets.map(String).join(' '));
  const after = Number(runs[0].searchParams.get('after'));
  assert.ok(after >= before, `the stream opened after=${after}, history ends at ${before}`);
  // And it is live from there: a run entering review shows in the queue.
  const next = await apiOk(env.alice, 'POST', '/v1/runs', { argv: ['bash', '-c', 'true'] });
  assert.equal(next.state, 'AWAITING_REVIEW');
  await page.waitForSelector(`[data-testid=queue] tr[data-id="${next.id}"]`, { timeout: 10000 });
  await apiOk(env.rev, 'POST', `/v1/runs/${next.id}:reject`, {});
  assert.equal(page.errors.length, 0, String(page.errors));
  await page.context().close();
});

test('runs list: filters, and rows change state without a reload', async () => {
  const page = await signedIn(env.rev, { path: '/ui/runs?label=list%3Dyes' });
  await page.waitForSelector('[data-testid=runs]');
  const run = await apiOk(env.bob, 'POST', '/v1/runs', { argv: ['needs-review', 'x'], labels: { list: 'yes' } });
  const other = await apiOk(env.bob, 'POST', '/v1/runs', { argv: ['needs-review', 'y'], labels: { list: 'no' } });
  await page.waitForSelector(`[data-testid=runs] tr[data-id="${run.id}"]`);
  assert.equal(await page.locator(`tr[data-id="${other.id}"]`).count(), 0);
  await apiOk(env.rev, 'POST', `/v1/runs/${run.id}:reject`, { reason: 'not today' });
  await page.waitForFunction((id) => document.querySelector(`tr[data-id="${id}"] [data-testid=state]`).textContent === 'CANCELLED', run.id);
  // The submitter filter (in the page) and the state filter (the API's).
  await page.selectOption('select[name=state]', 'CANCELLED');
  await page.fill('input[name=submitter]', 'bob');
  await page.click('form.filters button[type=submit]');
  await page.waitForURL(/state=CANCELLED/);
  await page.waitForSelector(`[data-testid=runs] tr[data-id="${run.id}"]`);
  await screenshot(page, 'runs');
  await page.context().close();
});

test('roles come from GET /v1/info; a reviewer never gets approve on its own records', async () => {
  const run = await apiOk(env.rev, 'POST', '/v1/runs', { argv: ['needs-review', 'mine'] });
  const box = await apiOk(env.rev, 'POST', '/v1/sandboxes', {});
  const proc = await apiOk(env.rev, 'POST', `/v1/sandboxes/${box.id}/processes`, { argv: ['needs-review', 'mine'] });
  assert.equal(proc.state, 'AWAITING_REVIEW');
  const page = await signedIn(env.rev, { path: '/ui/runs/' + run.id });
  assert.equal(await page.textContent('[data-testid=role]'), 'rev · reviewer');
  await page.waitForSelector('[data-testid=plan-steps]');
  await page.waitForSelector('[data-testid=own-run]');
  assert.equal(await page.locator('[data-testid=approve]').count(), 0);
  const forged = await api(env.rev, 'POST', `/v1/runs/${run.id}:approve`);
  assert.equal(forged.status, 403);
  await waitRun(env.rev, run.id, (r) => r.state === 'AWAITING_REVIEW');
  // Its own process waiting in its own sandbox: no approve either.
  await page.click(`a[href="/ui/queue"]`);
  const row = `[data-testid=queue] tr[data-id="${box.id}/${proc.id}"]`;
  await page.waitForSelector(row, { timeout: 10000 });
  await page.click(row + ' a');
  await page.waitForSelector('[data-testid=own-record]');
  assert.equal(await page.locator('[data-testid=approve]').count(), 0);
  await page.context().close();

  // An admin is an admin, and decides on the reviewer's run.
  const admin = await signedIn(env.admin, { path: '/ui/runs/' + run.id });
  assert.equal(await admin.textContent('[data-testid=role]'), 'admin · admin');
  await admin.waitForSelector('[data-testid=approve]');
  assert.equal(await admin.locator('[data-testid=own-run]').count(), 0);
  await admin.fill('#reason', 'not now');
  await admin.click('[data-testid=reject]');
  await waitRun(env.rev, run.id, (r) => r.state === 'CANCELLED');
  assert.equal(admin.errors.length, 0, String(admin.errors));
  await admin.context().close();
  await apiOk(env.rev, 'DELETE', '/v1/sandboxes/' + box.id);
});
