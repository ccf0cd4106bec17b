// Runs, newest first, filtered by state, label, submitter and project; rows follow /v1/events
// live. A project's page shows its runs with the same list (useRunRows, RunTable).
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, enc } from '../api.js';
import { historyCutoff, noteEventsAfter, onEvent, session } from '../session.js';
import { ErrorBox, Link, State, useLoad, useTick } from '../components.jsx';
import { navigate, queryParams } from '../router.js';
import { listProjects } from '../projects.js';
import { ageOf, frameBatcher, isoTime, RUN_STATES, shellJoin, stateRank } from '../util.js';

const PAGE = 100;

export function commandOf(run) {
  if (run.argv) return shellJoin(run.argv);
  return (run.steps || []).map((s) => shellJoin(s.argv)).join(' && ');
}

function listPath(f, cursor) {
  const q = new URLSearchParams();
  if (f.state) q.append('state', f.state);
  if (f.label) q.append('label', f.label);
  if (f.project) q.append('project', f.project);
  q.append('limit', String(PAGE));
  if (cursor) q.append('cursor', cursor);
  return '/v1/runs?' + q;
}

// `projectId`: the filter's project as an id (the filter may name it).
const matches = (f, run, projectId) =>
  (!f.state || run.state === f.state) &&
  (!f.submitter || run.submitter === f.submitter) &&
  (!f.project || run.project_id === f.project || run.project_id === projectId) &&
  (!f.label || (() => {
    const i = f.label.indexOf('=');
    return run.labels && run.labels[f.label.slice(0, i)] === f.label.slice(i + 1);
  })());

// The runs `filter` ({state, label, submitter, project}, each '' for any) matches, newest first,
// page by page, and kept live: a row moves on with its run's events, and a run that starts to
// match after the list was read is put on top. {list, cursor, error, loading, loadMore}.
export function useRunRows(filter) {
  const rows = useRef(new Map()); // id -> run, in the order loaded (newest first), live ones before
  const [, setVersion] = useState(0);
  const [cursor, setCursor] = useState(null);
  const [error, setError] = useState(null);
  const [loading, setLoading] = useState(true);
  const projectId = useRef('');
  const key = JSON.stringify(filter);

  const loadPage = async (c) => {
    setLoading(true);
    try {
      const page = await api(listPath(filter, c));
      if (!c) noteEventsAfter(page.events_after);
      // The API filtered by state, label and project; the submitter is filtered here.
      for (const r of page.runs) if (matches({ ...filter, project: '' }, r) && !rows.current.has(r.id)) rows.current.set(r.id, r);
      setCursor(page.next_cursor);
      setError(null);
    } catch (e) {
      setError(e);
    } finally {
      setLoading(false);
      setVersion((v) => v + 1);
    }
  };

  useEffect(() => {
    rows.current = new Map();
    projectId.current = filter.project;
    let live = true;
    if (filter.project) {
      // The filter may name the project: its id, for the runs the events bring.
      api('/v1/projects/' + enc(filter.project)).then((p) => { if (live) projectId.current = p.id; }, () => {});
    }
    const bump = frameBatcher(() => setVersion((v) => v + 1));
    const fetching = new Set();
    const again = new Map(); // id -> insert: asked for while a read was on its way, read once more after it
    const refetch = (id, insert) => {
      if (fetching.has(id)) {
        again.set(id, insert || again.get(id) || false);
        return;
      }
      fetching.add(id);
      api('/v1/runs/' + enc(id))
        .then((run) => {
          const have = rows.current.get(id);
          if (have) {
            if (stateRank(run.state) >= stateRank(have.state)) rows.current.set(id, run);
          } else if (insert && matches(filter, run, projectId.current)) {
            rows.current = new Map([[id, run], ...rows.current]);
          }
          bump();
        }, () => {})
        .finally(() => {
          fetching.delete(id);
          if (again.has(id)) {
            const insertToo = again.get(id);
            again.delete(id);
            refetch(id, insertToo);
          }
        });
    };
    const off = onEvent((ev) => {
      if (ev.type !== 'run.status' && ev.type !== 'run.completed') return;
      const have = rows.current.get(ev.run_id);
      if (have) {
        const newer = stateRank(ev.state) > stateRank(have.state);
        if (newer) {
          rows.current.set(ev.run_id, { ...have, state: ev.state });
          bump();
        }
        // The rest (result, approval) from the run itself: run.completed may follow the status
        // event that already said how it ended.
        if ((ev.type === 'run.completed' && !have.finished_at_ms) || (newer && ev.state === 'QUEUED')) refetch(ev.run_id, false);
      } else if (ev.ts >= historyCutoff && (!filter.state || ev.state === filter.state)) {
        refetch(ev.run_id, true);
      }
    });
    loadPage(null);
    return () => {
      live = false;
      off();
    };
  }, [key]);

  return { list: [...rows.current.values()], cursor, error, loading, loadMore: () => loadPage(cursor) };
}

export function RunTable({ list }) {
  return (
    <div class="scroll">
      <table class="list" data-testid="runs" data-count={list.length}>
        <thead><tr><th>Run</th><th>State</th><th>Command</th><th>Submitter</th><th>Created</th><th>Result</th><th>Labels</th></tr></thead>
        <tbody>
          {list.map((r) => (
            <tr key={r.id} data-id={r.id}>
              <td><Link href={'/ui/runs/' + r.id}><code>{r.id}</code></Link></td>
              <td data-testid="state"><State s={r.state} /></td>
              <td class="what"><code>{commandOf(r)}</code></td>
              <td>{r.submitter}</td>
              <td title={isoTime(r.created_at_ms)}>{ageOf(r.created_at_ms)} ago</td>
              <td data-testid="result">{r.result ? `${r.result.reason}${r.result.exit_code !== null && r.result.exit_code !== undefined ? ' ' + r.result.exit_code : ''}` : ''}</td>
              <td class="small">{Object.entries(r.labels || {}).map(([k, v]) => <span class="tag">{k}={v}</span>)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function RunsPage() {
  const q = queryParams();
  const filter = { state: q.state || '', label: q.label || '', submitter: q.submitter || '', project: q.project || '' };
  const [form, setForm] = useState(filter);
  const projects = useLoad(() => listProjects(), []);
  const { list, cursor, error, loading, loadMore } = useRunRows(filter);
  useTick(5000);
  const key = JSON.stringify(filter);
  useEffect(() => setForm(filter), [key]);

  const apply = (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const k of ['state', 'label', 'submitter', 'project']) if (form[k].trim()) p.set(k, form[k].trim());
    navigate('/ui/runs' + (p.toString() ? '?' + p : ''));
  };
  const known = projects.data || [];
  // A project the URL names that the list does not hold (by name, or not visible) stays chosen.
  const unlisted = form.project && !known.some((p) => p.id === form.project) ? form.project : null;

  return (
    <section>
      <h1>Runs</h1>
      <form class="filters" onSubmit={apply} aria-label="Filter runs">
        <label>State
          <select value={form.state} onChange={(e) => setForm({ ...form, state: e.currentTarget.value })} name="state">
            <option value="">any</option>
            {RUN_STATES.map((s) => <option value={s}>{s}</option>)}
          </select>
        </label>
        <label>Label
          <input name="label" placeholder="key=value" value={form.label} pattern="[^=]+=.*"
                 onInput={(e) => setForm({ ...form, label: e.currentTarget.value })} />
        </label>
        <label>Submitter
          <input name="submitter" placeholder={session.role === 'submitter' ? 'only yours are listed' : 'key name'} value={form.submitter}
                 onInput={(e) => setForm({ ...form, submitter: e.currentTarget.value })} />
        </label>
        <label>Project
          <select value={form.project} onChange={(e) => setForm({ ...form, project: e.currentTarget.value })} name="project"
                  title={projects.error ? 'The projects could not be listed: ' + projects.error.message : undefined}>
            <option value="">any</option>
            {known.map((p) => <option value={p.id}>{p.name}</option>)}
            {unlisted && <option value={unlisted}>{unlisted}</option>}
          </select>
        </label>
        <button type="submit">Filter</button>
      </form>
      <ErrorBox error={error} />
      <RunTable list={list} />
      {loading ? <p aria-busy="true">Loading…</p> : list.length === 0 && <p>No runs match.</p>}
      {cursor && !loading && <button type="button" onClick={loadMore}>Load more</button>}
      {filter.submitter && <p class="muted small">The submitter filter is applied in the page (the API filters runs by state, label and project).</p>}
    </section>
  );
}
