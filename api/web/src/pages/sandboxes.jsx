// Long-lived sandboxes. Their states and their processes' follow the page's one connection to
// /v1/events/sandboxes (feed.js); their live figures have no event and are re-read on a
// sandbox's own page only; a process's output comes over its events WebSocket (resuming by seq)
// and a terminal over its pty WebSocket.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, enc } from '../api.js';
import { canReview, isOwn, mayDecide } from '../session.js';
import { ResumableStream } from '../live.js';
import { followList, recordReader } from '../feed.js';
import { Action, Code, ErrorBox, KV, Link, Risk, State, useLoad, usePoll, useTick } from '../components.jsx';
import { navigate, queryParams } from '../router.js';
import { ageOf, b64ToBytes, bytesToSafeText, fmtBytes, fmtMs, frameBatcher, isoTime, ruleText, shellJoin, visibleControls } from '../util.js';
import { LogView } from './run.jsx';

const SANDBOX_STATES = ['PENDING', 'AWAITING_REVIEW', 'STARTING', 'RUNNING', 'PAUSED', 'STOPPED', 'FAILED'];
const open = (s) => s === 'RUNNING' || s === 'PAUSED' || s === 'STARTING';

// A record with the state (and the reason it ended, if given) that a change reports.
const changed = (rec, ev) => ({ ...rec, state: ev.state, reason: ev.reason ?? rec.reason });

export function SandboxesPage() {
  const state = queryParams().state || '';
  const rows = useRef(new Map()); // id -> sandbox, newest first
  const [, setVersion] = useState(0);
  const [error, setError] = useState(null);
  const [loading, setLoading] = useState(true);
  useTick(5000);
  useEffect(() => {
    rows.current = new Map();
    setLoading(true);
    const bump = frameBatcher(() => setVersion((v) => v + 1));
    const onChange = (ev) => {
      if (ev.type !== 'sandbox.state' || reader.held(ev.sandbox_id, ev)) return;
      const have = rows.current.get(ev.sandbox_id);
      if (have) {
        rows.current.set(ev.sandbox_id, changed(have, ev));
        bump();
        // Started: its expiry is set then (a change does not carry it).
        if (ev.state === 'RUNNING' && have.state !== 'RUNNING' && have.state !== 'PAUSED') reader.read(ev.sandbox_id);
      } else if (!state || ev.state === state) {
        reader.read(ev.sandbox_id); // new here
      }
    };
    const reader = recordReader(
      (id) => api('/v1/sandboxes/' + enc(id)),
      (id, box) => {
        if (rows.current.has(id)) rows.current.set(id, box);
        else if (!state || box.state === state) rows.current = new Map([[id, box], ...rows.current]);
        bump();
      },
      onChange,
    );
    return followList({
      list: () => api('/v1/sandboxes?limit=200' + (state ? '&state=' + enc(state) : '')),
      onList: (answer) => {
        rows.current = new Map(answer.sandboxes.map((b) => [b.id, b]));
        setError(null);
        setLoading(false);
        bump();
      },
      onChange,
      onError: (e) => {
        setError(e);
        setLoading(false);
      },
    });
  }, [state]);
  const boxes = [...rows.current.values()];
  return (
    <section>
      <h1>Sandboxes</h1>
      <div class="filters">
        <label>State
          <select value={state} onChange={(e) => navigate('/ui/sandboxes' + (e.currentTarget.value ? '?state=' + e.currentTarget.value : ''))}>
            <option value="">any</option>
            {SANDBOX_STATES.map((s) => <option value={s}>{s}</option>)}
          </select>
        </label>
        <Action onRun={async () => { const b = await api('/v1/sandboxes', { method: 'POST', body: {} }); navigate('/ui/sandboxes/' + b.id); }}>New sandbox</Action>
      </div>
      <p class="muted small">States change live (/v1/events/sandboxes); memory is as listed (a sandbox's page follows its figures).</p>
      <ErrorBox error={error} />
      <div class="scroll">
        <table class="list" data-testid="sandboxes" data-count={boxes.length}>
          <thead><tr><th>Sandbox</th><th>State</th><th>Submitter</th><th>Created</th><th>Expires</th><th>Workspace</th><th>Memory</th></tr></thead>
          <tbody>
            {boxes.map((b) => (
              <tr key={b.id} data-id={b.id}>
                <td><Link href={'/ui/sandboxes/' + b.id}><code>{b.id}</code></Link></td>
                <td data-testid="state"><State s={b.state} />{b.reason && <div class="muted small">{b.reason}</div>}</td>
                <td>{b.submitter}</td>
                <td title={isoTime(b.created_at)}>{ageOf(b.created_at)} ago</td>
                <td>{b.expires_at && open(b.state) ? isoTime(b.expires_at) : '—'}</td>
                <td>{b.workspace ? <><Code>{b.workspace.path}</Code> ({b.workspace.mode})</> : 'none'}</td>
                <td>{b.stats && open(b.state) ? fmtBytes(b.stats.memory_current_bytes) : '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {loading ? <p aria-busy="true">Loading…</p> : !boxes.length && <p>No sandboxes.</p>}
    </section>
  );
}

// Words of a command line: spaces split, single and double quotes group, backslash escapes.
export function splitWords(s) {
  const out = [];
  let cur = null;
  let q = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (q) {
      if (c === q) q = null;
      else if (c === '\\' && q === '"' && i + 1 < s.length) cur += s[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      q = c;
      cur ??= '';
    } else if (c === '\\' && i + 1 < s.length) {
      cur = (cur ?? '') + s[++i];
    } else if (/\s/.test(c)) {
      if (cur !== null) out.push(cur);
      cur = null;
    } else {
      cur = (cur ?? '') + c;
    }
  }
  if (cur !== null) out.push(cur);
  return out;
}

export function SandboxPage({ id, pid }) {
  const box = useRef(null);
  const procs = useRef(new Map()); // process id -> process
  const [, setVersion] = useState(0);
  const [error, setError] = useState(null);
  const [cmd, setCmd] = useState('sh');
  const [pty, setPty] = useState(true);
  const bump = useRef(null);
  bump.current ??= frameBatcher(() => setVersion((v) => v + 1));
  const setBox = (b) => {
    box.current = b;
    bump.current();
  };
  const setProc = (p) => {
    procs.current.set(p.id, p);
    bump.current();
  };
  useEffect(() => {
    box.current = null;
    procs.current = new Map();
    const onChange = (ev) => {
      if (ev.sandbox_id !== id) return;
      if (ev.type === 'sandbox.state') {
        const have = box.current;
        if (boxReader.held(id, ev) || !have || have.state === ev.state) return;
        setBox(changed(have, ev));
        // A pause or a resume changes the state alone; any other change also sets what a change
        // does not carry (the approval, the expiry, the end).
        if (!(open(have.state) && open(ev.state) && have.state !== 'STARTING')) boxReader.read(id);
      } else {
        const have = procs.current.get(ev.process_id);
        if (procReader.held(ev.process_id, ev) || (have && have.state === ev.state)) return;
        if (have) setProc({ ...have, state: ev.state });
        procReader.read(ev.process_id); // new here, or its start or result
      }
    };
    const boxReader = recordReader(() => api('/v1/sandboxes/' + enc(id)), (_, b) => setBox(b), onChange);
    const procReader = recordReader((n) => api(`/v1/sandboxes/${enc(id)}/processes/${n}`), (_, p) => setProc(p), onChange);
    return followList({
      list: () => Promise.all([api('/v1/sandboxes/' + enc(id)), api(`/v1/sandboxes/${enc(id)}/processes?limit=1000`)]),
      onList: ([b, answer]) => {
        procs.current = new Map(answer.processes.map((p) => [p.id, p]));
        setError(null);
        setBox(b);
      },
      onChange,
      onError: setError,
    });
  }, [id]);
  // Live figures (CPU, memory, pids) have no event: while the sandbox is open they are re-read
  // every 2 s, and only they are taken from the answer (the state follows the feed). The one
  // timer of the sandbox pages.
  usePoll(() => {
    if (!box.current || !open(box.current.state)) return;
    api('/v1/sandboxes/' + enc(id)).then((fresh) => box.current && setBox({ ...box.current, stats: fresh.stats }), () => {});
  }, 2000, [id]);
  const b = box.current;
  if (!b) return <section><h1>Sandbox <code>{id}</code></h1>{error ? <ErrorBox error={error} /> : <p aria-busy="true">Loading…</p>}</section>;
  const st = b.stats;
  const act = (verb) => async () => setBox(await api(`/v1/sandboxes/${enc(id)}:${verb}`, { method: 'POST' }));
  const list = [...procs.current.values()].sort((x, y) => x.id - y.id);
  const start = async (e) => {
    const argv = splitWords(cmd);
    if (!argv.length) throw new Error('Give a command.');
    const body = { argv };
    if (pty) body.pty = { cols: 100, rows: 30 };
    const p = await api(`/v1/sandboxes/${enc(id)}/processes`, { method: 'POST', body });
    if (!procs.current.has(p.id)) setProc(p);
    navigate(`/ui/sandboxes/${id}/processes/${p.id}`);
  };
  return (
    <section>
      <h1>Sandbox <code>{b.id}</code> <State s={b.state} /></h1>
      <ErrorBox error={error} />
      {b.state === 'AWAITING_REVIEW' && (mayDecide(b.submitter) ? (
        <Decide base={`/v1/sandboxes/${enc(id)}`} onDone={setBox} />
      ) : <Waiting submitter={b.submitter} what="sandbox" />)}
      <div class="buttons">
        {b.state === 'RUNNING' && <Action onRun={act('pause')}>Pause</Action>}
        {b.state === 'PAUSED' && <Action onRun={act('resume')}>Resume</Action>}
        {open(b.state) && <Action onRun={act('touch')}>Keep alive</Action>}
        {b.state !== 'STOPPED' && b.state !== 'FAILED' && (
          <Action class="danger" confirm="End this sandbox and everything running in it?" onRun={async () => setBox(await api('/v1/sandboxes/' + enc(id), { method: 'DELETE' }))}>Delete</Action>
        )}
      </div>
      <div class="cols">
        <div>
          <h2>Settings</h2>
          <KV rows={[
            ['Submitter', b.submitter],
            ['Reason', b.reason || null],
            ['Approval', b.approval ? `${b.approval.approved_by}${b.approval.rule ? ' (' + b.approval.rule + ')' : ''}` : null],
            ['Policy', b.policy ? <><Risk r={b.policy.risk} /> {b.policy.decision} · <Code>{ruleText(b.policy)}</Code></> : null],
            ['CPUs', b.limits && b.limits.cpus],
            ['Memory', b.limits && fmtBytes(b.limits.memory_bytes ?? b.limits.memory)],
            ['Pids', b.limits && b.limits.pids],
            ['Network', b.network],
            ['Seccomp profile', b.seccomp_profile],
            ['Workspace', b.workspace ? <><Code>{b.workspace.path}</Code> ({b.workspace.mode})</> : 'none'],
            ['Environment', Object.keys(b.env || {}).length ? Object.keys(b.env).map((k) => <span class="tag">{k}=••••</span>) : 'none'],
            ['Created', isoTime(b.created_at)],
            ['Expires', b.expires_at ? isoTime(b.expires_at) : null],
            ['Idle timeout', b.idle_timeout_s ? b.idle_timeout_s + ' s' : null],
            ['Node', b.node],
          ]} />
        </div>
        <div>
          <h2>Live figures</h2>
          {st ? (
            <KV rows={[
              ['CPU time', fmtMs(Math.round(st.cpu_usec / 1000))],
              ['Memory', fmtBytes(st.memory_current_bytes)],
              ['Memory peak', fmtBytes(st.memory_peak_bytes)],
              ['Pids', st.pids_current],
              ['Block I/O', st.io_read_bytes != null ? `${fmtBytes(st.io_read_bytes)} read, ${fmtBytes(st.io_write_bytes)} written` : null],
              ['Processes', st.processes],
              ['Paused', String(st.paused)],
            ]} />
          ) : <p class="muted">None: the sandbox is not running here.</p>}
          <p class="muted small">Re-read every 2 s (no stream of figures exists).</p>
          {b.isolation && <details><summary>Isolation layers</summary><pre class="json">{JSON.stringify(b.isolation, null, 2)}</pre></details>}
        </div>
      </div>

      <h2>Processes</h2>
      {open(b.state) && (
        <form class="filters" onSubmit={(e) => e.preventDefault()} aria-label="Start a process">
          <label>Command <input value={cmd} onInput={(e) => setCmd(e.currentTarget.value)} name="command" /></label>
          <label class="check"><input type="checkbox" checked={pty} onChange={(e) => setPty(e.currentTarget.checked)} /> terminal (pty)</label>
          <Action onRun={start} data-testid="start-process">Start</Action>
        </form>
      )}
      <div class="scroll">
        <table class="list" data-testid="processes">
          <thead><tr><th>#</th><th>State</th><th>Command</th><th>Tag</th><th>Started</th><th>Result</th></tr></thead>
          <tbody>
            {list.map((p) => (
              <tr key={p.id} data-id={p.id} class={String(p.id) === pid ? 'selected' : ''}>
                <td><Link href={`/ui/sandboxes/${id}/processes/${p.id}`}>{p.id}</Link></td>
                <td data-testid="state"><State s={p.state} /></td>
                <td class="what"><Code>{shellJoin(p.argv)}</Code>{p.pty && <span class="tag">pty</span>}</td>
                <td>{p.tag || ''}</td>
                <td>{isoTime(p.started_at || p.created_at)}</td>
                <td>{p.result ? `${p.result.reason}${p.result.exit_code != null ? ' ' + p.result.exit_code : ''} · ${fmtMs(p.result.wall_ms)}` : ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {pid && <ProcessPanel key={pid} sandbox={b} pid={pid} record={procs.current.get(Number(pid))} onRecord={setProc} />}
    </section>
  );
}

// Instead of approve and reject: why the caller does not decide.
function Waiting({ submitter, what }) {
  if (canReview() && isOwn(submitter)) return <p class="muted" data-testid="own-record">You submitted this {what}: another reviewer decides.</p>;
  return <p class="muted">Waiting for a reviewer.</p>;
}

function Decide({ base, onDone }) {
  const [reason, setReason] = useState('');
  return (
    <form class="review" onSubmit={(e) => e.preventDefault()} aria-label="Review">
      <label>Comment (recorded with a rejection)
        <input value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
      </label>
      <div class="buttons">
        <Action class="primary" data-testid="approve" onRun={async () => onDone(await api(base + ':approve', { method: 'POST' }))}>Approve</Action>
        <Action class="danger" data-testid="reject" onRun={async () => onDone(await api(base + ':reject', { method: 'POST', body: reason ? { reason } : {} }))}>Reject</Action>
      </div>
    </form>
  );
}

// `record`: the process as the sandbox's list has it (kept current by the feed); read here only
// when the list lacks it.
function ProcessPanel({ sandbox, pid, record, onRecord }) {
  const base = `/v1/sandboxes/${enc(sandbox.id)}/processes/${enc(pid)}`;
  const own = useLoad(() => (record ? Promise.resolve(null) : api(base)), [base]);
  const log = useRef({ segments: [], last: 0 });
  const [, setVersion] = useState(0);
  const [status, setStatus] = useState('connecting');
  const [filter, setFilter] = useState('all');
  const [term, setTerm] = useState(false);
  const p = record || own.data;
  const waiting = p && p.state === 'AWAITING_REVIEW';
  useEffect(() => {
    if (!p || waiting) return undefined;
    log.current = { segments: [], last: 0 };
    const bump = frameBatcher(() => setVersion((v) => v + 1));
    const s = new ResumableStream({
      path: (after) => base + '/events' + (after ? '?after=' + after : ''),
      position: (ev) => ev.seq,
      contiguous: true,
      final: (ev) => ev.type === 'process.finished',
      onStatus: setStatus,
      onEvent: (ev) => {
        const L = log.current;
        L.last = ev.seq;
        if (ev.type === 'process.log') {
          const parts = ev.data_b64 !== undefined ? bytesToSafeText(b64ToBytes(ev.data_b64)) : [{ text: visibleControls(ev.data ?? '') }];
          const tail = L.segments[L.segments.length - 1];
          if (tail && !tail.head && tail.stream === ev.stream) tail.parts.push(...parts);
          else L.segments.push({ stream: ev.stream, parts });
        } else if (ev.type === 'process.finished') {
          L.segments.push({ head: true, text: `■ ${ev.result ? ev.result.reason + (ev.result.exit_code != null ? ' ' + ev.result.exit_code : '') : 'finished'}` });
        }
        bump();
      },
    }).start();
    return () => s.stop();
  }, [base, !!p, waiting]);
  if (!p) return own.error ? <ErrorBox error={own.error} /> : <p aria-busy="true">Loading…</p>;
  return (
    <section class="process" aria-label={'Process ' + p.id}>
      <h2>Process {p.id} <State s={p.state} /></h2>
      <p><Code>{shellJoin(p.argv)}</Code> in <Code>{p.cwd || '/'}</Code> · by {p.submitter}</p>
      {p.policy && <p class="small">Policy: {p.policy.decision} · <Risk r={p.policy.risk} /> · <Code>{ruleText(p.policy)}</Code></p>}
      {waiting && (mayDecide(p.submitter) ? <Decide base={base} onDone={onRecord} /> : <Waiting submitter={p.submitter} what="process" />)}
      <div class="buttons">
        {p.state === 'RUNNING' && <Action class="danger" onRun={() => api(base + ':kill', { method: 'POST' })}>Kill</Action>}
        {p.pty && p.state === 'RUNNING' && <button type="button" onClick={() => setTerm(!term)} data-testid="open-terminal">{term ? 'Close terminal' : 'Open terminal'}</button>}
      </div>
      {term && p.pty && <TerminalView path={base + '/pty'} />}
      {!waiting && (
        <>
          <div class="logbar">
            <span class={'live live-' + status}>{status}</span>
            <label>Show <select value={filter} onChange={(e) => setFilter(e.currentTarget.value)}>
              <option value="all">both streams</option><option value="stdout">stdout</option><option value="stderr">stderr</option>
            </select></label>
          </div>
          <LogView segments={log.current.segments} filter={filter} last={log.current.last} testid="process-log" />
        </>
      )}
    </section>
  );
}

function TerminalView({ path }) {
  const el = useRef(null);
  const [status, setStatus] = useState('loading');
  const [error, setError] = useState(null);
  const handle = useRef(null);
  useEffect(() => {
    let gone = false;
    import('../terminal.js').then(
      ({ attachTerminal }) => {
        if (!gone) handle.current = attachTerminal(el.current, path, setStatus, () => el.current.closest('.process').querySelector('[data-testid=open-terminal]').focus());
      },
      setError,
    );
    return () => {
      gone = true;
      if (handle.current) handle.current.dispose();
    };
  }, [path]);
  return (
    <div class="terminal-wrap">
      <div class="logbar">
        <span class={'live live-' + status} data-testid="terminal-status">{status}</span>
        {(status === 'closed' || status === 'ended') && <button type="button" onClick={() => handle.current && handle.current.reconnect()}>Reconnect</button>}
        <span class="muted small">Every key goes to the process; press Escape twice to leave the terminal.</span>
      </div>
      <ErrorBox error={error} />
      <div class="terminal" ref={el} data-testid="terminal" />
    </div>
  );
}
