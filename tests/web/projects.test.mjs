// Projects in the browser: an admin makes a project of a directory with a Makefile; its member
// plans an intent on the project's page (each step with the policy's decision, the summary and
// the plan's sha256), runs the plan, and the run waits for review and then succeeds; the runs
// list filters by project; a submitter who is not a member sees no project and gets not-found on
// its page; an intent the planner refuses shows why.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { api, apiOk, closeBrowser, env, launch, screenshot, signedIn, waitRun } from './lib.mjs';

before(launch);
after(closeBrowser);

const skip = !env.workspaceRoot && 'no workspace root';
const ended = (r) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(r.state);

// A project directory under the daemon's workspace root holding a Makefile.
function makeProjectDir() {
  const dir = mkdtempSync(path.join(env.workspaceRoot, 'project-'));
  chmodSync(dir, 0o755);
  writeFileSync(path.join(dir, 'Makefile'), 'build:\n\techo building the web project\ntest:\n\techo all web tests passed\n');
  chmodSync(path.join(dir, 'Makefile'), 0o644);
  return dir;
}

// The plan as the page shows it: [name, argv, decision, risk] per step.
const shownSteps = (page) => page.locator('[data-testid=plan] [data-testid=plan-steps] tbody tr').evaluateAll((trs) => trs.map((tr) => [
  tr.dataset.step,
  [...tr.querySelectorAll('[data-testid=step-argv] li')].map((li) => li.textContent),
  tr.querySelector('[data-testid=step-decision]').textContent,
  tr.querySelector('[data-testid=step-risk]').textContent,
]));

// Plans an intent on the project's page; resolves with the API's answer once the page shows the
// plan it made, or the refusal.
async function planIntent(page, text) {
  await page.fill('#intent', text);
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith('/plans')),
    page.click('[data-testid=plan-intent]'),
  ]);
  const body = await res.json();
  await page.waitForSelector(res.ok() ? `[data-testid=plan][data-id="${body.id}"]` : '[data-testid=plan-error]');
  return { status: res.status(), body };
}

// Every run list the page asks the API for, as its query.
function runListQueries(page) {
  const seen = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (r.method() === 'GET' && u.pathname === '/v1/runs') seen.push(Object.fromEntries(u.searchParams));
  });
  return seen;
}

let project = null;
let dir = null;

before(async () => {
  if (skip) return;
  dir = makeProjectDir();
  project = await apiOk(env.admin, 'POST', '/v1/projects', {
    name: 'web-' + randomBytes(4).toString('hex'), root_path: dir, members: ['alice'], labels: { team: 'web' },
  });
});

test('a member plans "run the tests and give me a report", runs the plan, a reviewer approves, it succeeds', { skip }, async () => {
  const alice = await signedIn(env.alice, { path: '/ui/projects' });
  await alice.waitForSelector(`[data-testid=projects] tr[data-id="${project.id}"]`);
  const row = alice.locator(`[data-testid=projects] tr[data-id="${project.id}"]`);
  assert.match(await row.textContent(), new RegExp(project.name));
  assert.ok((await row.textContent()).includes(dir));
  assert.equal(await row.locator('[data-testid=members]').textContent(), 'alice');
  assert.equal(await row.locator('[data-testid=mode]').textContent(), 'read-only');
  assert.equal(await alice.getAttribute('nav a[href="/ui/projects"]', 'aria-current'), 'page');
  await screenshot(alice, 'projects');

  await row.locator('a').first().click();
  await alice.waitForURL(new RegExp(`/ui/projects/${project.id}$`));
  await alice.waitForSelector('[data-testid=plans-empty]');
  assert.equal(await alice.textContent('h1'), 'Project ' + project.name);
  assert.equal(await alice.textContent('[data-testid=project-members]'), 'alice');

  const answer = await planIntent(alice, 'run the tests and give me a report');
  assert.equal(answer.status, 201);
  assert.equal(await alice.locator('[data-testid=plan-error]').count(), 0);
  // What the page shows is the plan the API stored.
  const { plans } = await apiOk(env.alice, 'GET', `/v1/projects/${project.id}/plans`);
  assert.equal(plans.length, 1);
  const plan = plans[0];
  assert.equal(plan.id, answer.body.id);
  assert.deepEqual(plan.steps.map((s) => s.argv), [['make', 'test']]);
  assert.deepEqual(await shownSteps(alice), [[plan.steps[0].name, ['make', 'test'], 'review', plan.steps[0].decision.risk]]);
  assert.match(await alice.textContent('[data-testid=plan] [data-testid=plan-steps]'), /Makefile defines a "test" target/);
  assert.equal(await alice.textContent('[data-testid=plan-sha256]'), plan.sha256);
  assert.equal(await alice.textContent('[data-testid=plan-summary]'), plan.summary);
  assert.match(plan.summary, /make/);
  assert.equal(await alice.textContent('[data-testid=plan-decision]'), 'review');
  // The plans list has it, newest first.
  await alice.waitForSelector(`[data-testid=plans] tr[data-id="${plan.id}"]`);
  await screenshot(alice, 'project-plan');

  await alice.click('[data-testid=run-plan]');
  await alice.waitForURL(/\/ui\/runs\/run_[a-z0-9]+$/);
  const runId = new URL(alice.url()).pathname.split('/').pop();
  await alice.waitForSelector('.state.st-awaiting_review');
  await alice.waitForSelector('[data-testid=run-project] a');
  assert.match(await alice.textContent('[data-testid=run-project]'), new RegExp(`^${project.name} ${project.id}$`));
  assert.match(await alice.textContent('[data-testid=plan-steps]'), /make.*test/);
  const run = await apiOk(env.alice, 'GET', '/v1/runs/' + runId);
  assert.equal(run.state, 'AWAITING_REVIEW');
  assert.equal(run.project_id, project.id);
  assert.equal(run.submitter, 'alice');
  assert.deepEqual([run.labels.plan, run.labels.plan_sha256], [plan.id, plan.sha256]);
  assert.deepEqual(run.steps.map((s) => s.argv), [['make', 'test']]);
  assert.deepEqual(run.workspace, { path: dir, mode: 'ro' });

  // A reviewer approves it through the API; the submitter's page follows it to the end.
  await apiOk(env.rev, 'POST', `/v1/runs/${runId}:approve`, { plan_sha256: run.plan_sha256 });
  const done = await waitRun(env.alice, runId, ended, 60000);
  assert.equal(done.state, 'SUCCEEDED', JSON.stringify(done.result));
  await alice.waitForSelector('.state.st-succeeded', { timeout: 20000 });
  await alice.waitForFunction(() => document.querySelector('[data-testid=log]').textContent.includes('all web tests passed'));

  // The project's page lists the run, and the plan.
  await alice.click('[data-testid=run-project] a');
  await alice.waitForURL(new RegExp(`/ui/projects/${project.id}$`));
  await alice.waitForSelector(`[data-testid=runs] tr[data-id="${runId}"]`);
  assert.equal(await alice.textContent(`[data-testid=runs] tr[data-id="${runId}"] [data-testid=state]`), 'SUCCEEDED');
  assert.equal(await alice.locator('[data-testid=runs] tbody tr').count(), 1);
  await alice.waitForSelector(`[data-testid=plans] tr[data-id="${plan.id}"]`);
  // An older plan is shown again from the list.
  await alice.click(`[data-testid=plans] tr[data-id="${plan.id}"] button`);
  await alice.waitForSelector(`[data-testid=plan][data-id="${plan.id}"]`);
  assert.equal(await alice.textContent('[data-testid=plan-sha256]'), plan.sha256);
  assert.equal(alice.errors.length, 0, String(alice.errors));
  await alice.context().close();
});

test('the runs list filters by project, from the first page and as runs come', { skip }, async () => {
  const outside = await apiOk(env.alice, 'POST', '/v1/runs', { argv: ['echo', 'not in a project'] });
  await waitRun(env.alice, outside.id, ended);
  const page = await signedIn(env.alice, { path: '/ui/runs' });
  const queries = runListQueries(page);
  await page.waitForSelector(`[data-testid=runs] tr[data-id="${outside.id}"]`);
  await page.waitForSelector(`select[name=project] option[value="${project.id}"]`, { state: 'attached' });
  assert.equal(await page.textContent(`select[name=project] option[value="${project.id}"]`), project.name);
  await page.selectOption('select[name=project]', project.id);
  await page.click('form.filters button[type=submit]');
  await page.waitForURL(new RegExp(`project=${project.id}`));
  const expected = (await apiOk(env.alice, 'GET', `/v1/runs?project=${project.id}`)).runs.map((r) => r.id);
  assert.equal(expected.length, 1);
  const rowIds = () => page.locator('[data-testid=runs] tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.id));
  await page.waitForFunction((want) => JSON.stringify([...document.querySelectorAll('[data-testid=runs] tbody tr')].map((tr) => tr.dataset.id)) === want,
    JSON.stringify(expected));
  assert.deepEqual(queries.at(-1), { project: project.id, limit: '100' });
  assert.ok(!(await rowIds()).includes(outside.id));
  await page.waitForSelector('[data-testid=events-status][data-runs=live]');

  // Live: a run outside the project stays out; one submitted with the project comes in.
  const other = await apiOk(env.alice, 'POST', '/v1/runs', { argv: ['echo', 'still not in it'] });
  await waitRun(env.alice, other.id, ended);
  const inside = await apiOk(env.alice, 'POST', '/v1/runs', { argv: ['echo', 'in the project'], project: project.name });
  assert.equal(inside.project_id, project.id);
  await page.waitForSelector(`[data-testid=runs] tr[data-id="${inside.id}"]`, { timeout: 10000 });
  await page.waitForFunction((id) => document.querySelector(`tr[data-id="${id}"] [data-testid=state]`).textContent === 'SUCCEEDED', inside.id);
  // How it ended, read from the run once it completed.
  await page.waitForFunction((id) => document.querySelector(`tr[data-id="${id}"] [data-testid=result]`).textContent === 'exited 0', inside.id);
  assert.equal(await page.locator(`tr[data-id="${other.id}"]`).count(), 0);
  assert.deepEqual(await rowIds(), [inside.id, ...expected]);
  await screenshot(page, 'runs-by-project');
  assert.equal(page.errors.length, 0, String(page.errors));
  await page.context().close();
});

test('a submitter who is not a member sees no project, and not-found on its page', { skip }, async () => {
  const bob = await signedIn(env.bob, { path: '/ui/projects' });
  await bob.waitForSelector('[data-testid=projects-empty]');
  assert.equal(await bob.textContent('[data-testid=projects-empty]'), 'No project lists you as a member.');
  assert.equal(await bob.locator('[data-testid=new-project]').count(), 0);

  await bob.goto(env.web + '/ui/projects/' + project.id);
  await bob.fill('#apikey', env.bob);
  await bob.click('button[type=submit]');
  await bob.waitForSelector('main [role=alert]');
  assert.match(await bob.textContent('main [role=alert]'), /not found/);
  assert.equal(await bob.locator('#intent').count(), 0);
  assert.equal(await bob.textContent('main').then((t) => t.includes(dir)), false);
  // By name too, and as a filter of the runs list.
  const byName = await api(env.bob, 'GET', '/v1/projects/' + project.name);
  assert.equal(byName.status, 404);
  await bob.click('nav a[href="/ui/runs"]');
  await bob.waitForSelector('[data-testid=runs]');
  assert.equal(await bob.locator(`select[name=project] option[value="${project.id}"]`).count(), 0);
  assert.equal(bob.errors.length, 0, String(bob.errors));
  await bob.context().close();
});

test('an intent the planner refuses shows why, and no plan; a Chinese intent plans', { skip }, async () => {
  const alice = await signedIn(env.alice, { path: '/ui/projects/' + project.id });
  await alice.waitForSelector('#intent');
  const before = (await apiOk(env.alice, 'GET', `/v1/projects/${project.id}/plans`)).plans.length;

  const zh = await planIntent(alice, '运行测试并生成报告');
  assert.equal(zh.status, 201);
  assert.deepEqual((await shownSteps(alice)).map((s) => s[1]), [['make', 'test']]);

  const refused = await planIntent(alice, 'deploy to production');
  assert.equal(refused.status, 404);
  assert.equal(await alice.textContent('[data-testid=plan-error]'), refused.body.error.message);
  assert.match(await alice.textContent('[data-testid=plan-error]'), /no plan for this intent.*deploy/);
  assert.equal(await alice.locator('[data-testid=plan]').count(), 0);
  assert.equal(await alice.locator('[data-testid=run-plan]').count(), 0);
  await screenshot(alice, 'project-plan-refused');
  // The refusal stored nothing; the Chinese intent's plan is there.
  const after = (await apiOk(env.alice, 'GET', `/v1/projects/${project.id}/plans`)).plans;
  assert.equal(after.length, before + 1);
  assert.equal(after[0].intent_text, '运行测试并生成报告');
  assert.equal(await alice.locator('[data-testid=plans] tbody tr').count(), after.length);
  assert.equal(alice.errors.length, 0, String(alice.errors));
  await alice.context().close();
});

test('an admin creates a project from the page', { skip }, async () => {
  const other = makeProjectDir();
  const name = 'web-form-' + randomBytes(4).toString('hex');
  const admin = await signedIn(env.admin, { path: '/ui/projects' });
  await admin.waitForSelector('[data-testid=new-project]');
  await admin.fill('[data-testid=new-project] input[name=name]', name);
  await admin.fill('[data-testid=new-project] input[name=root_path]', other);
  await admin.selectOption('[data-testid=new-project] select[name=mode]', 'cow');
  await admin.fill('[data-testid=new-project] input[name=members]', 'bob, alice');
  await admin.click('[data-testid=new-project] button[type=submit]');
  await admin.waitForURL(/\/ui\/projects\/prj_[a-z0-9]+$/);
  await admin.waitForSelector('[data-testid=project-mode]');
  const made = await apiOk(env.admin, 'GET', '/v1/projects/' + name);
  assert.equal(new URL(admin.url()).pathname, '/ui/projects/' + made.id);
  assert.deepEqual([made.root_path, made.default_workspace_mode, made.members], [other, 'cow', ['alice', 'bob']]);
  assert.equal(await admin.textContent('[data-testid=project-mode]'), 'copy-on-write');

  // A name taken: the API's message, and no second project.
  await admin.click('nav a[href="/ui/projects"]');
  await admin.waitForSelector(`[data-testid=projects] tr[data-id="${made.id}"]`);
  await admin.fill('[data-testid=new-project] input[name=name]', name);
  await admin.fill('[data-testid=new-project] input[name=root_path]', other);
  await admin.click('[data-testid=new-project] button[type=submit]');
  await admin.waitForSelector('main [role=alert]');
  assert.match(await admin.textContent('main [role=alert]'), new RegExp(name));
  const all = (await apiOk(env.admin, 'GET', '/v1/projects')).projects.filter((p) => p.name === name);
  assert.equal(all.length, 1);
  assert.equal(admin.errors.length, 0, String(admin.errors));
  await admin.context().close();
  await apiOk(env.admin, 'DELETE', '/v1/projects/' + made.id);
});
