// Projects: the list the caller may see (a submitter: those naming it a member), and a project's
// page: its settings, a box that plans an intent with the daemon's planner (each step with the
// policy's decision), its plans, newest first, and its runs. "Run this plan" submits a plan as it
// is; the run then goes through review like any other.
import { useState } from 'preact/hooks';
import { api, enc } from '../api.js';
import { session } from '../session.js';
import { navigate } from '../router.js';
import { Action, Code, ErrorBox, KV, Link, Risk, useLoad } from '../components.jsx';
import { listProjects, modeText } from '../projects.js';
import { RunTable, useRunRows } from './runs.jsx';
import { ageOf, fmtBytes, isoTime, shellJoin, visibleControls } from '../util.js';

const tags = (map) => {
  const entries = Object.entries(map || {});
  return entries.length ? entries.map(([k, v]) => <span class="tag">{k}={v}</span>) : null;
};

function limitsText(l) {
  if (!l) return null;
  const parts = [];
  if (l.cpus != null) parts.push(`${l.cpus} CPU${l.cpus === 1 ? '' : 's'}`);
  const mem = l.memory_bytes ?? l.memory;
  if (mem != null) parts.push(`${typeof mem === 'number' ? fmtBytes(mem) : mem} memory`);
  if (l.pids != null) parts.push(`${l.pids} pids`);
  if (l.timeout_s != null) parts.push(`${l.timeout_s} s timeout`);
  if (l.output_bytes != null) parts.push(`${typeof l.output_bytes === 'number' ? fmtBytes(l.output_bytes) : l.output_bytes} output`);
  return parts.length ? parts.join(', ') : null;
}

export function ProjectsPage() {
  const projects = useLoad(() => listProjects(), []);
  const list = projects.data || [];
  return (
    <section>
      <h1>Projects</h1>
      <p class="muted small">
        A project is a directory (or repository) with the defaults its runs inherit. Plan an intent on a
        project's page: the daemon turns it into steps with the project's own tooling, and each step
        gets the command policy's decision before anything runs.
      </p>
      <ErrorBox error={projects.error} />
      {projects.loading && !projects.data ? <p aria-busy="true">Loading…</p> : list.length === 0 ? (
        <p data-testid="projects-empty">{session.role === 'submitter' ? 'No project lists you as a member.' : 'No projects yet.'}</p>
      ) : (
        <div class="scroll">
          <table class="list" data-testid="projects" data-count={list.length}>
            <thead><tr><th>Name</th><th>Directory</th><th>Members</th><th>Default workspace</th><th>Labels</th><th>Updated</th></tr></thead>
            <tbody>
              {list.map((p) => (
                <tr key={p.id} data-id={p.id} data-name={p.name}>
                  <td><Link href={'/ui/projects/' + enc(p.id)}>{p.name}</Link><div class="muted small"><code>{p.id}</code></div></td>
                  <td class="what">{p.root_path ? <Code>{p.root_path}</Code> : <span class="muted">repository <Code>{p.repo}</Code></span>}</td>
                  <td data-testid="members">{p.members.length ? p.members.join(', ') : <span class="muted">none</span>}</td>
                  <td data-testid="mode">{modeText(p.default_workspace_mode)}</td>
                  <td class="small">{tags(p.labels)}</td>
                  <td title={isoTime(p.updated_at_ms)}>{ageOf(p.updated_at_ms)} ago</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {session.role === 'admin' && <NewProject />}
    </section>
  );
}

const words = (text) => text.split(/[\s,]+/).filter(Boolean);

// Admins only (the API refuses others).
function NewProject() {
  const [form, setForm] = useState({ name: '', root_path: '', repo: '', mode: 'ro', members: '' });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (e) => setForm({ ...form, [k]: e.currentTarget.value });
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = { name: form.name.trim(), default_workspace_mode: form.mode, members: words(form.members) };
      if (form.root_path.trim()) body.root_path = form.root_path.trim();
      if (form.repo.trim()) body.repo = form.repo.trim();
      const p = await api('/v1/projects', { method: 'POST', body });
      navigate('/ui/projects/' + enc(p.id));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <h2>New project</h2>
      <form class="filters" onSubmit={submit} aria-label="New project" data-testid="new-project">
        <label>Name
          <input name="name" value={form.name} onInput={set('name')} required pattern="[a-z0-9][a-z0-9_.\-]{0,63}" placeholder="web-app" />
        </label>
        <label class="grow">Directory (under the workspace roots)
          <input name="root_path" value={form.root_path} onInput={set('root_path')} placeholder="/srv/checkouts/web-app" />
        </label>
        <label>Repository (optional)
          <input name="repo" value={form.repo} onInput={set('repo')} />
        </label>
        <label>Default workspace
          <select name="mode" value={form.mode} onChange={set('mode')}>
            <option value="ro">read-only</option>
            <option value="cow">copy-on-write</option>
          </select>
        </label>
        <label>Members (API key names)
          <input name="members" value={form.members} onInput={set('members')} placeholder="alice, bob" />
        </label>
        <button type="submit" disabled={busy}>Create</button>
      </form>
      <ErrorBox error={error} />
    </>
  );
}

export function ProjectPage({ id }) {
  const project = useLoad(() => api('/v1/projects/' + enc(id)), [id]);
  const plans = useLoad(() => api(`/v1/projects/${enc(id)}/plans`).then((r) => r.plans), [id]);
  const [shown, setShown] = useState(null); // the plan shown in full
  const p = project.data;
  if (!p) return <section><h1>Project <code>{id}</code></h1>{project.error ? <ErrorBox error={project.error} /> : <p aria-busy="true">Loading…</p>}</section>;

  const planned = (plan) => {
    setShown(plan);
    plans.set([plan, ...(plans.data || []).filter((x) => x.id !== plan.id)]);
  };
  return (
    <section class="project">
      <h1>Project {p.name}</h1>
      <ErrorBox error={project.error} />
      <KV rows={[
        ['Id', <Code>{p.id}</Code>],
        ['Directory', p.root_path ? <Code>{p.root_path}</Code> : null],
        ['Repository', p.repo ? <Code>{p.repo}</Code> : null],
        ['Default workspace', <span data-testid="project-mode">{modeText(p.default_workspace_mode)}</span>],
        ['Default limits', limitsText(p.default_limits) || 'the daemon\'s'],
        ['Labels', tags(p.labels) || 'none'],
        ['Members', <span data-testid="project-members">{p.members.length ? p.members.join(', ') : 'none (reviewers and admins only)'}</span>],
        ['Version', p.version],
        ['Created', `${isoTime(p.created_at_ms)} by ${p.created_by}`],
        ['Updated', isoTime(p.updated_at_ms)],
      ]} />
      {session.role === 'admin' && (
        <p>
          <Action class="danger" confirm={`Delete project ${p.name} and its plans? Its runs stay.`}
                  onRun={async () => { await api('/v1/projects/' + enc(p.id), { method: 'DELETE' }); navigate('/ui/projects'); }}>Delete project</Action>
        </p>
      )}

      <h2>Plan an intent</h2>
      <IntentForm project={p} onPlanned={planned} onRefused={() => setShown(null)} />
      {shown && <PlanView plan={shown} project={p} />}

      <h2>Plans</h2>
      <ErrorBox error={plans.error} />
      {plans.data && (plans.data.length === 0 ? <p class="muted" data-testid="plans-empty">No plans yet.</p> : (
        <div class="scroll">
          <table class="list" data-testid="plans" data-count={plans.data.length}>
            <thead><tr><th>Planned</th><th>By</th><th>Intent</th><th>Steps</th><th>Decision</th><th>SHA-256</th><th></th></tr></thead>
            <tbody>
              {plans.data.map((x) => (
                <tr key={x.id} data-id={x.id} class={shown && shown.id === x.id ? 'selected' : undefined}>
                  <td title={isoTime(x.created_at_ms)}>{ageOf(x.created_at_ms)} ago</td>
                  <td>{x.created_by}</td>
                  <td class="what">{visibleControls(x.intent_text)}</td>
                  <td class="what"><code>{x.steps.map((s) => shellJoin(s.argv)).join(' && ')}</code></td>
                  <td><strong class={'decision-' + x.decision.decision}>{x.decision.decision}</strong></td>
                  <td title={x.sha256}><Code>{x.sha256.slice(0, 12)}…</Code></td>
                  <td><button type="button" onClick={() => setShown(x)} aria-pressed={shown && shown.id === x.id}>Show</button></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}

      <h2>Runs</h2>
      <ProjectRuns project={p} />
    </section>
  );
}

function IntentForm({ project, onPlanned, onRefused }) {
  const [text, setText] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onPlanned(await api(`/v1/projects/${enc(project.id)}/plans`, { method: 'POST', body: { intent_text: text } }));
    } catch (err) {
      setError(err);
      onRefused();
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={submit} aria-label="Plan an intent" class="intent">
      <label for="intent">What should a run of this project do? In English or Chinese: tests, lint, build, type-check, a report.</label>
      <textarea id="intent" name="intent" rows={2} maxLength={4096} value={text} required
                placeholder="run the tests and give me a report" onInput={(e) => setText(e.currentTarget.value)} />
      <div class="buttons">
        <button type="submit" class="primary" disabled={busy || !text.trim()} data-testid="plan-intent">Plan</button>
        <span class="muted small">Nothing runs yet: the plan is shown first.</span>
      </div>
      {error && <div data-testid="plan-error"><ErrorBox error={error} /></div>}
    </form>
  );
}

function PlanView({ plan, project }) {
  const d = plan.decision;
  const run = async () => {
    const r = await api(`/v1/projects/${enc(project.id)}/runs`, { method: 'POST', body: { plan_id: plan.id } });
    navigate('/ui/runs/' + enc(r.id));
  };
  return (
    <div class="review plan" data-testid="plan" data-id={plan.id}>
      <h3>Plan <code>{plan.id}</code></h3>
      <p data-testid="plan-summary">{plan.summary}</p>
      <div class="scroll">
        <table class="list" data-testid="plan-steps">
          <thead><tr><th>Step</th><th>argv</th><th>Why</th><th>Decision</th><th>Risk</th><th>Rule</th></tr></thead>
          <tbody>
            {plan.steps.map((s) => (
              <tr data-step={s.name}>
                <td>{s.name}</td>
                <td><ol class="argv" data-testid="step-argv">{s.argv.map((a) => <li><Code>{visibleControls(a)}</Code></li>)}</ol></td>
                <td>{s.why}</td>
                <td data-testid="step-decision"><strong class={'decision-' + s.decision.decision}>{s.decision.decision}</strong></td>
                <td data-testid="step-risk"><Risk r={s.decision.risk} /></td>
                <td class="small">
                  {s.decision.rule ? <><Code>{s.decision.rule.pattern}</Code> at <Code>{s.decision.rule.file.split('/').pop()}:{s.decision.rule.line}</Code></> : (s.decision.protection ? 'protection: ' + s.decision.protection : 'the default')}
                  {s.decision.reasons && s.decision.reasons.length > 0 && <ul class="plain">{s.decision.reasons.map((r) => <li>{r.message}</li>)}</ul>}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <KV rows={[
        ['Intent', visibleControls(plan.intent_text)],
        ['Goals', plan.goals.join(', ') + (plan.report ? ' (the report is the run\'s report.md)' : '')],
        ['Decision', <span><strong data-testid="plan-decision" class={'decision-' + d.decision}>{d.decision}</strong> (<Risk r={d.risk} /> risk, for the whole plan, as the review gate will decide)</span>],
        ['Workspace', plan.workspace ? <><Code>{plan.workspace.path}</Code> ({modeText(plan.workspace.mode)})</> : 'none'],
        ['Limits', limitsText(plan.limits)],
        ['Labels', tags(plan.labels) || 'none'],
        ['Planned', `${isoTime(plan.created_at_ms)} by ${plan.created_by} (${plan.planner} planner, project version ${plan.project.version})`],
        ['SHA-256', <code class="code" data-testid="plan-sha256">{plan.sha256}</code>],
      ]} />
      {plan.project.version !== project.version && (
        <p class="small" data-testid="plan-stale">Planned against version {plan.project.version}; the project is at version {project.version} now. A run of this plan is this plan, as shown.</p>
      )}
      {d.decision === 'deny' && <p class="error small" data-testid="plan-denied">The command policy denies this plan: a run of it would end at once, without running.</p>}
      <div class="buttons">
        <Action class="primary" data-testid="run-plan" onRun={run}>Run this plan</Action>
        {d.decision !== 'deny' && <span class="muted small">{d.decision === 'allow' ? 'The policy lets it run without review.' : 'The run waits for a reviewer first.'}</span>}
      </div>
    </div>
  );
}

function ProjectRuns({ project }) {
  const { list, cursor, error, loading, loadMore } = useRunRows({ state: '', label: '', submitter: '', project: project.id });
  return (
    <>
      <ErrorBox error={error} />
      <RunTable list={list} />
      {loading ? <p aria-busy="true">Loading…</p> : list.length === 0 && <p class="muted">No runs of this project yet.</p>}
      {cursor && !loading && <button type="button" onClick={loadMore}>Load more</button>}
      <p class="small"><Link href={'/ui/runs?project=' + enc(project.id)}>All its runs, with filters</Link></p>
    </>
  );
}
