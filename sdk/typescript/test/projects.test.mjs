// Projects and plans from intent (projects.*): an admin creates a project of a directory with a
// Makefile, a submitter lists only the projects naming it a member and another gets
// NotFoundError, the planner plans an English and a Chinese intent and refuses another action
// with NotFoundError, a run of a plan carries the project and the plan, and a change against a
// stale version is refused with FailedPreconditionError.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';

import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
} from '../dist/index.js';
import { workspaceDaemon, workspaceDaemonMissing } from './lib/workspaces.mjs';

// The harness's test policy, with make sent to review: the planner plans `make test` here.
const POLICY = `version: 1
shell: allow
rules:
  "*": deny
  "echo *": allow
  "true *": allow
  "sh *": allow
  "make *": review
`;
const MAKEFILE = 'build:\n\techo building\ntest:\n\techo all tests passed\n';
const INTENT = 'run the tests and give me a report';

const skip = workspaceDaemonMissing({ policy: true }) ?? false;
const unique = (prefix) => `${prefix}-${randomBytes(4).toString('hex')}`;
let daemon;
let admin;
let alice;
let bob;
let rev;
before(async () => {
  if (skip) return;
  daemon = await workspaceDaemon({ policy: POLICY });
  [admin, alice, bob, rev] = ['admin', 'alice', 'bob', 'rev'].map((who) => daemon.client(who));
});
after(async () => {
  await daemon?.close();
});

/** A new project of a directory holding MAKEFILE, alice its member. */
async function project(input = {}) {
  const dir = daemon.workspace({ Makefile: MAKEFILE });
  const p = await admin.projects.create({ name: unique('sdk'), root_path: dir, members: ['alice'], ...input });
  return { p, dir };
}

/** The error `promise` rejects with (fails when it resolves). */
async function rejection(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  assert.fail('it did not fail');
}

async function all(iterable) {
  const out = [];
  for await (const x of iterable) out.push(x);
  return out;
}

test('an admin creates a project; a submitter sees only its own, another gets not found', { skip }, async () => {
  const { p, dir } = await project({ labels: { team: 'sdk' }, default_workspace_mode: 'ro' });
  assert.match(p.id, /^prj_/);
  assert.deepEqual([p.version, p.members, p.root_path, p.labels, p.created_by], [1, ['alice'], dir, { team: 'sdk' }, 'admin']);
  const { p: others } = await project({ members: [] });

  const mine = (await all(alice.projects.iterate())).map((x) => x.id);
  assert.ok(mine.includes(p.id) && !mine.includes(others.id), mine.join(' '));
  const bobs = (await bob.projects.list()).projects.map((x) => x.id);
  assert.ok(!bobs.includes(p.id) && !bobs.includes(others.id), bobs.join(' '));
  const revs = (await all(rev.projects.iterate())).map((x) => x.id);
  assert.ok(revs.includes(p.id) && revs.includes(others.id));
  assert.equal((await alice.projects.get(p.name)).id, p.id); // by name too

  // Not a member: not found, as if it did not exist, whatever it asks.
  for (const call of [
    () => bob.projects.get(p.id), () => bob.projects.get(p.name), () => bob.projects.plan(p.id, INTENT),
    () => bob.projects.listPlans(p.id), () => bob.runs.list({ project: p.id }),
  ]) {
    const e = await rejection(call());
    assert.ok(e instanceof NotFoundError, String(e));
    assert.equal(e.status, 404);
  }

  // Admins only; a name once; members are configured keys.
  assert.ok(await rejection(alice.projects.create({ name: unique('mine'), root_path: dir })) instanceof PermissionDeniedError);
  const taken = await rejection(admin.projects.create({ name: p.name, root_path: dir }));
  assert.ok(taken instanceof AlreadyExistsError, String(taken));
  assert.ok(taken.message.includes(p.name));
  const unknown = await rejection(admin.projects.create({ name: unique('x'), root_path: dir, members: ['nobody'] }));
  assert.ok(unknown instanceof InvalidArgumentError, String(unknown));
  assert.match(unknown.message, /nobody/);
});

test('plans from an English and a Chinese intent', { skip }, async () => {
  const { p, dir } = await project();
  const en = await alice.projects.plan(p.id, INTENT);
  assert.equal(en.project_id, p.id);
  assert.deepEqual(en.steps.map((s) => s.argv), [['make', 'test']]);
  assert.equal(en.steps[0].decision.decision, 'review');
  assert.match(en.steps[0].why, /test/);
  assert.equal(en.decision.decision, 'review');
  assert.deepEqual([en.goals, en.report], [['test', 'report'], true]);
  assert.match(en.sha256, /^[0-9a-f]{64}$/);
  assert.match(en.summary, /make/);
  assert.deepEqual(en.workspace, { path: dir, mode: 'ro' });
  assert.deepEqual(en.project, { id: p.id, name: p.name, version: 1 });

  const zh = await alice.projects.plan(p.name, '运行测试并生成报告');
  assert.equal(zh.intent_text, '运行测试并生成报告');
  assert.deepEqual(zh.steps.map((s) => s.argv), [['make', 'test']]);
  assert.deepEqual(zh.goals, ['test', 'report']);
  assert.notEqual(zh.sha256, en.sha256); // the intent is part of the plan

  assert.deepEqual(await alice.projects.getPlan(en.id), en);
  assert.deepEqual((await alice.projects.listPlans(p.id)).map((x) => x.id), [zh.id, en.id]);
  assert.deepEqual((await alice.projects.listPlans(p.id, { limit: 1 })).map((x) => x.id), [zh.id]);
  assert.ok(await rejection(bob.projects.getPlan(en.id)) instanceof NotFoundError);
});

test('an intent it does not plan is not found', { skip }, async () => {
  const { p } = await project();
  for (const intent of ['deploy to production', '删除所有文件']) {
    const e = await rejection(alice.projects.plan(p.id, intent));
    assert.ok(e instanceof NotFoundError, String(e));
    assert.match(e.message, /no plan/);
  }
  assert.ok(await rejection(alice.projects.plan(p.id, '')) instanceof InvalidArgumentError);
  assert.deepEqual(await alice.projects.listPlans(p.id), []);
});

test('runPlan makes a run of the project and the plan; it succeeds once approved', { skip }, async () => {
  const { p, dir } = await project();
  const plan = await alice.projects.plan(p.id, INTENT);
  const run = await alice.projects.runPlan(p.id, plan.id, { idempotencyKey: unique('plan-run') });
  assert.deepEqual([run.state, run.project_id, run.submitter], ['AWAITING_REVIEW', p.id, 'alice']);
  assert.deepEqual([run.labels.plan, run.labels.plan_sha256], [plan.id, plan.sha256]);
  assert.deepEqual(run.steps.map((s) => s.argv), [['make', 'test']]);
  assert.deepEqual(run.workspace, { path: dir, mode: 'ro' });
  // The same key answers the same run.
  const key = unique('again');
  const first = await alice.projects.runPlan(p.name, plan.id, { idempotencyKey: key });
  assert.equal((await alice.projects.runPlan(p.id, plan.id, { idempotencyKey: key })).id, first.id);
  await alice.runs.cancel(first.id);

  await rev.runs.approve(run.id);
  const done = await alice.runs.wait(run.id, { timeoutMs: 60_000 });
  assert.equal(done.state, 'SUCCEEDED', JSON.stringify(done.result));
  assert.match((await alice.runs.output(run.id)).toString(), /all tests passed/);

  // A run submitted with the project, by name; the list of the project's runs.
  const other = await alice.runs.submit({ argv: ['echo', 'in the project'], project: p.name });
  assert.equal(other.project_id, p.id);
  assert.equal((await alice.runs.wait(other.id, { timeoutMs: 60_000 })).state, 'SUCCEEDED');
  const outside = await alice.runs.submit(['echo', 'outside']);
  assert.equal(outside.project_id, null);
  await alice.runs.wait(outside.id, { timeoutMs: 60_000 });
  assert.deepEqual((await alice.runs.list({ project: p.id })).runs.map((r) => r.id), [other.id, first.id, run.id]);
  assert.deepEqual((await all(alice.runs.iterate({ project: p.name, state: 'SUCCEEDED' }))).map((r) => r.id), [other.id, run.id]);
});

test('a change against a stale version is refused', { skip }, async () => {
  const { p } = await project();
  const moved = await admin.projects.update(p.id, { version: 1, labels: { stage: 'two' }, members: ['alice', 'bob'] });
  assert.deepEqual([moved.version, moved.labels, moved.members], [2, { stage: 'two' }, ['alice', 'bob']]);
  const stale = await rejection(admin.projects.update(p.id, { version: 1, labels: { stage: 'stale' } }));
  assert.ok(stale instanceof FailedPreconditionError, String(stale));
  assert.equal(stale.status, 409);
  assert.match(stale.message, /version/);
  assert.deepEqual((await admin.projects.get(p.id)).labels, { stage: 'two' });
  assert.equal((await admin.projects.update(p.id, { version: 2, default_workspace_mode: 'cow' })).version, 3);
  // Without a version, the change is unconditional; only admins change projects.
  assert.equal((await admin.projects.update(p.id, { labels: {} })).version, 4);
  assert.ok(await rejection(alice.projects.update(p.id, { labels: { x: 'y' } })) instanceof PermissionDeniedError);

  assert.deepEqual(await admin.projects.delete(p.id), { deleted: p.id });
  assert.ok(await rejection(admin.projects.get(p.id)) instanceof NotFoundError);
  assert.ok(await rejection(admin.projects.delete(p.id)) instanceof NotFoundError);
});
