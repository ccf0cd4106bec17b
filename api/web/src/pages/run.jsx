// One run: the plan exactly as stored, the policy's decision, the review, live logs that resume
// where they stopped, per-step results, artifacts, a copy-on-write run's changes to the host
// (applied here by a reviewer) and the audit trail.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, enc } from '../api.js';
import { canReview, mayDecide, session } from '../session.js';
import { ResumableStream } from '../live.js';
import { Action, Code, ErrorBox, KV, Link, Risk, State, useLoad } from '../components.jsx';
import { projectById } from '../projects.js';
import { approvalsOf, b64ToBytes, bytesToSafeText, fmtBytes, fmtMs, frameBatcher, isoTime, terminal, untilOf, visibleControls } from '../util.js';
import { DiffView } from '../diff.jsx';
import { ChangeSet } from '../changes.jsx';
import { verifyAudit } from '../audit.js';

export function RunPage({ id }) {
  const run = useLoad(() => api('/v1/runs/' + enc(id)), [id]);
  const artifacts = useLoad(() => api(`/v1/runs/${enc(id)}/artifacts`), [id]);
  const [auditKey, setAuditKey] = useState(0);
  const r = run.data;

  // The run's own event stream feeds the log, and tells when to re-read the run.
  const log = useRef({ segments: [], last: 0, steps: [] });
  const [, setVersion] = useState(0);
  const [logStatus, setLogStatus] = useState('connecting');
  const [streamFilter, setStreamFilter] = useState('all');
  useEffect(() => {
    log.current = { segments: [], last: 0, steps: [] };
    const bump = frameBatcher(() => setVersion((v) => v + 1));
    let refetchTimer = null;
    const refetch = () => {
      clearTimeout(refetchTimer);
      refetchTimer = setTimeout(() => {
        run.reload();
        artifacts.reload();
        setAuditKey((k) => k + 1);
      }, 100);
    };
    const s = new ResumableStream({
      path: (after) => `/v1/runs/${enc(id)}/events` + (after ? '?after=' + after : ''),
      position: (ev) => ev.seq,
      contiguous: true,
      final: (ev) => ev.type === 'run.completed',
      onStatus: setLogStatus,
      onEvent: (ev) => {
        const L = log.current;
        L.last = ev.seq;
        if (ev.type === 'step.log') {
          const parts = ev.data_b64 !== undefined ? bytesToSafeText(b64ToBytes(ev.data_b64)) : [{ text: visibleControls(ev.data ?? '') }];
          const tail = L.segments[L.segments.length - 1];
          if (tail && tail.step === ev.step && tail.stream === ev.stream && !tail.head) {
            tail.parts.push(...parts);
            tail.last = ev.seq;
          } else {
            L.segments.push({ step: ev.step, stream: ev.stream, parts, first: ev.seq, last: ev.seq });
          }
        } else if (ev.type === 'step.started') {
          L.segments.push({ head: true, text: `▶ ${ev.step}: ${ev.argv.join(' ')}` });
        } else if (ev.type === 'step.finished') {
          L.segments.push({ head: true, text: `■ ${ev.name || ev.step}: ${ev.reason}${ev.exit_code != null ? ' ' + ev.exit_code : ''}` });
          refetch();
        } else if (ev.type === 'run.status' || ev.type === 'run.completed' || ev.type === 'artifact.created') {
          refetch();
        }
        bump();
      },
    }).start();
    return () => {
      s.stop();
      clearTimeout(refetchTimer);
    };
  }, [id]);

  if (!r) return <section><h1>Run <code>{id}</code></h1>{run.error ? <ErrorBox error={run.error} /> : <p aria-busy="true">Loading…</p>}</section>;

  const steps = r.steps || [{ name: 'main', argv: r.argv }];
  const decide = canReview() && r.state === 'AWAITING_REVIEW';
  return (
    <section class="run">
      <h1>Run <code>{r.id}</code> <State s={r.state} /></h1>
      <ErrorBox error={run.error} />
      {r.result && r.result.reason && terminal(r.state) && <p>Ended: <code>{r.result.reason}</code>{r.result.exit_code != null && <> with exit code <code>{r.result.exit_code}</code></>}</p>}

      {decide && (mayDecide(r.submitter) ? <Review run={r} onDone={run.set} /> : <p class="muted" data-testid="own-run">You submitted this run: another reviewer decides.</p>)}
      {!terminal(r.state) && (
        <p><Action class="danger" confirm="Cancel this run?" onRun={async () => run.set(await api(`/v1/runs/${enc(id)}:cancel`, { method: 'POST' }))}>Cancel run</Action></p>
      )}

      <h2>Plan</h2>
      <p class="muted small">Exactly as stored by the daemon. Its SHA-256 (commands, environment values, stdin, limits, workspace or checkout, backend, image, labels): <code data-testid="plan-sha256">{r.plan_sha256}</code>; an approval from this page holds for this plan only.</p>
      <div class="scroll">
        <table class="list" data-testid="plan-steps">
          <thead><tr><th>Step</th><th>argv</th></tr></thead>
          <tbody>
            {steps.map((s) => (
              <tr><td>{s.name}</td><td><ol class="argv">{s.argv.map((a) => <li><Code>{visibleControls(a)}</Code></li>)}</ol></td></tr>
            ))}
          </tbody>
        </table>
      </div>
      <KV rows={[
        r.project_id && ['Project', <ProjectName id={r.project_id} />],
        ['CPUs', r.limits.cpus],
        ['Memory', r.limits.memory != null ? fmtBytes(r.limits.memory) : null],
        ['Pids', r.limits.pids],
        ['Timeout', r.limits.timeout_s != null ? r.limits.timeout_s + ' s' : null],
        ['Output', r.limits.output_bytes != null ? fmtBytes(r.limits.output_bytes) : null],
        r.checkout
          ? ['Checkout', <span data-testid="checkout"><Code>{r.checkout.repo}</Code> at <code class="code" data-testid="checkout-sha">{r.checkout.sha}</code> ({r.checkout.mode === 'cow' ? 'copy-on-write: its changes come back as diff.patch' : 'read-only: a change fails the run'})</span>]
          : ['Workspace', r.workspace ? <><Code>{r.workspace.path}</Code> ({r.workspace.mode === 'cow' ? 'copy-on-write' : 'read-only'})</> : 'none'],
        ['Backend', r.backend + (r.result && r.result.backend ? ` (ran on ${r.result.backend})` : '')],
        ['Image', r.image],
        ['Network', r.network],
        ['Seccomp profile', r.seccomp_profile],
        ['Environment', Object.keys(r.env).length ? <ul class="plain">{Object.keys(r.env).sort().map((k) => <li><Code>{k}</Code> = <span class="masked" title="values are never shown">••••••</span></li>)}</ul> : 'none'],
        ['Stdin', r.stdin_bytes ? fmtBytes(r.stdin_bytes) : 'none'],
        ['Labels', Object.keys(r.labels).length ? Object.entries(r.labels).map(([k, v]) => <span class="tag">{k}={v}</span>) : 'none'],
        ['Idempotency key', r.idempotency_key],
      ]} />

      <h2>Policy decision</h2>
      {r.policy ? (
        <KV rows={[
          ['Decision', <strong data-testid="decision">{r.policy.decision}</strong>],
          ['Risk', <Risk r={r.policy.risk} />],
          ['Rule', r.policy.rule ? <span data-testid="rule"><Code>{r.policy.rule.pattern}</Code> at <Code>{r.policy.rule.file}:{r.policy.rule.line}</Code></span> : <span data-testid="rule">{r.policy.protection ? 'protection: ' + r.policy.protection : 'none (the default decided)'}</span>],
          ['Rule set', r.policy.rule_set || 'top-level rules'],
          ['Command', <Code>{r.policy.command}</Code>],
          ['Reasons', r.policy.reasons.length ? <ul class="plain">{r.policy.reasons.map((x) => <li><Code>{x.code}</Code>: {x.message}</li>)}</ul> : 'none'],
        ]} />
      ) : <p class="muted">Not decided yet.</p>}

      <h2>People</h2>
      <KV rows={[
        ['Submitted by', r.submitter],
        ['Submitted', isoTime(r.created_at_ms)],
        ['Review', r.review ? <span data-testid="review-status">{approvalsOf(r.review)} approvals; expires {untilOf(r.review.expires_at_ms)}</span> : null],
        ['Approvals', r.review && r.review.approvals.length ? (
          <ul class="plain" data-testid="votes">{r.review.approvals.map((v) => (
            <li><strong>{v.by}</strong> at {isoTime(v.at_ms)}{v.comment ? <>: <q>{v.comment}</q></> : null}</li>
          ))}</ul>
        ) : null],
        ['Approved by', r.approval ? `${r.approval.approved_by}${r.approval.rule && r.approval.rule !== 'review' ? ' (rule ' + r.approval.rule + ')' : ''}` : null],
        ['Approved', r.approval ? isoTime(r.approval.approved_at_ms) : null],
        ['Queued', r.queued_at_ms ? isoTime(r.queued_at_ms) : null],
        ['Started', r.started_at_ms ? isoTime(r.started_at_ms) + (r.node ? ' on ' + r.node : '') : null],
        ['Finished', r.finished_at_ms ? isoTime(r.finished_at_ms) : null],
      ]} />

      <h2>Logs</h2>
      <Logs log={log.current} status={logStatus} filter={streamFilter} setFilter={setStreamFilter} />

      <h2>Steps</h2>
      <StepResults run={r} />

      <h2>Artifacts</h2>
      <Artifacts id={id} list={artifacts} />

      {r.workspace && r.workspace.mode === 'cow' && (
        <>
          <h2>Changes to the host</h2>
          {terminal(r.state)
            ? <ChangeSet run={r} version={auditKey} onApplied={() => setAuditKey((k) => k + 1)} />
            : <p class="muted">The run works on a copy of <Code>{r.workspace.path}</Code>; what it changes is kept when it ends, and nothing reaches the host until a reviewer applies it here.</p>}
        </>
      )}

      <h2>Audit trail</h2>
      {canReview() ? <Audit id={id} key={auditKey} /> : <p class="muted">The audit trail is for reviewers and admins.</p>}
    </section>
  );
}

// A run's project by name, linked; its id alone when the caller may not see it (or it is gone).
function ProjectName({ id }) {
  const p = useLoad(() => projectById(id), [id]);
  if (p.data) return <span data-testid="run-project"><Link href={'/ui/projects/' + enc(p.data.id)}>{p.data.name}</Link> <span class="muted small">{id}</span></span>;
  return <span data-testid="run-project"><Code>{id}</Code>{p.loading ? '' : p.error ? <span class="error small"> ({p.error.message})</span> : <span class="muted small"> (not visible to you, or deleted)</span>}</span>;
}

function Review({ run, onDone }) {
  const [reason, setReason] = useState('');
  return (
    <form class="review" onSubmit={(e) => e.preventDefault()} aria-label="Review">
      <h2>Review</h2>
      {run.review && run.review.approvals_required > 1 && (
        <p class="small">This run needs {run.review.approvals_required} distinct reviewers; it has {run.review.approvals.length}.</p>
      )}
      <label for="reason">Comment (recorded with the approval or the rejection)</label>
      <textarea id="reason" rows={2} value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
      <div class="buttons">
        <Action class="primary" data-testid="approve" onRun={async () => onDone(await api(`/v1/runs/${enc(run.id)}:approve`, { method: 'POST', body: { plan_sha256: run.plan_sha256, ...(reason ? { comment: reason } : {}) } }))}>Approve</Action>
        <Action class="danger" data-testid="reject" onRun={async () => onDone(await api(`/v1/runs/${enc(run.id)}:reject`, { method: 'POST', body: reason ? { reason } : {} }))}>Reject</Action>
      </div>
    </form>
  );
}

export function LogView({ segments, filter, testid = 'log', last }) {
  const ref = useRef(null);
  const stick = useRef(true);
  useEffect(() => {
    const el = ref.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  });
  return (
    <pre class="log" ref={ref} tabIndex={0} data-testid={testid} data-last-seq={last} aria-label="Output"
         onScroll={(e) => { const el = e.currentTarget; stick.current = el.scrollTop + el.clientHeight >= el.scrollHeight - 8; }}>
      {segments.map((s) =>
        s.head ? <div class="loghead">{s.text}</div> :
        filter !== 'all' && filter !== s.stream ? null : (
          <span class={s.stream === 'stderr' ? 'err' : 'out'} data-stream={s.stream}>
            {s.parts.map((p) => (p.raw ? <span class="rawbyte" title="a byte that is not UTF-8">{p.text}</span> : p.text))}
          </span>
        ),
      )}
    </pre>
  );
}

function Logs({ log, status, filter, setFilter }) {
  return (
    <div>
      <div class="logbar">
        <span class={'live live-' + status} data-testid="log-status">{status}</span>
        <span class="legend"><span class="out">stdout</span> <span class="err">stderr</span> <span class="rawbyte">\xNN</span> bytes that are not UTF-8</span>
        <label>Show <select value={filter} onChange={(e) => setFilter(e.currentTarget.value)}>
          <option value="all">both streams</option><option value="stdout">stdout</option><option value="stderr">stderr</option>
        </select></label>
      </div>
      <LogView segments={log.segments} filter={filter} last={log.last} />
    </div>
  );
}

function StepResults({ run }) {
  const res = run.result;
  const iso = session.info && session.info.isolation;
  return (
    <>
      {res && res.steps.length ? (
        <div class="scroll">
          <table class="list" data-testid="step-results">
            <thead><tr><th>Step</th><th>Result</th><th>Exit</th><th>Signal</th><th>Wall</th><th>CPU</th><th>Memory peak</th><th>Seccomp denials</th></tr></thead>
            <tbody>
              {res.steps.map((s) => (
                <tr>
                  <td>{s.name}</td><td><Code>{s.reason}</Code></td><td>{s.exit_code ?? '—'}</td><td>{s.signal ?? '—'}</td>
                  <td>{fmtMs(s.wall_ms)}</td><td>{fmtMs(s.cpu_ms)}</td><td>{fmtBytes(s.memory_peak_bytes)}</td>
                  <td>{s.seccomp_denials && s.seccomp_denials.length ? s.seccomp_denials.map((d) => `${d.syscall} ×${d.count}`).join(', ') : 'none'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : <p class="muted">No step has finished.</p>}
      {res && res.output_truncated && <p class="error">Output was cut at the run's output limit.</p>}
      <details open={!!(res && res.isolation)}>
        <summary>Isolation layers</summary>
        {res && res.isolation ? (
          <>
            <p class="muted small">What this run's sandbox had, as the engine reported it{res.backend ? ` (the ${res.backend} backend)` : ''}.</p>
            <KV rows={[
              ['Namespaces', <span data-testid="run-namespaces">{res.isolation.namespaces.join(', ')}</span>],
              ['Network', res.isolation.network],
              ['cgroup', `${res.isolation.cgroup.version}${res.isolation.cgroup.controllers.length ? ' (' + res.isolation.cgroup.controllers.join(', ') + ')' : ''}`],
              ['Seccomp profile', res.isolation.seccomp_profile],
              ['User', res.isolation.user],
              ['Capabilities', res.isolation.capabilities],
              ['no_new_privs', String(res.isolation.no_new_privs)],
            ]} />
          </>
        ) : (
          <>
            <p class="muted small">No sandbox was built for this run yet; the daemon's layers (GET /v1/info):</p>
            {iso && <KV rows={[
              ['Namespaces', iso.namespaces.join(', ')],
              ['cgroup', `${iso.cgroup.layout}${iso.cgroup.unified_mount ? ' at ' + iso.cgroup.unified_mount : ''}`],
              ['Seccomp', `${iso.seccomp} (profile ${run.seccomp_profile})`],
              ['Capabilities', iso.capabilities],
              ['no_new_privs', String(iso.no_new_privs)],
              ['Network', run.network],
            ]} />}
          </>
        )}
      </details>
    </>
  );
}

async function download(id, name) {
  const res = await api(`/v1/runs/${enc(id)}/artifacts/${name.split('/').map(enc).join('/')}`, { raw: true });
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = name.split('/').pop();
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function Artifacts({ id, list }) {
  const [open, setOpen] = useState(null); // {name, kind, html|text}
  const [error, setError] = useState(null);
  const show = async (name) => {
    setError(null);
    try {
      const text = await api(`/v1/runs/${enc(id)}/artifacts/${enc(name)}`, { raw: true }).then((r) => r.text());
      if (name === 'report.md') {
        const { renderMarkdown } = await import('../markdown.js');
        setOpen({ name, html: renderMarkdown(text) });
      } else {
        setOpen({ name, text });
      }
    } catch (e) {
      setError(e);
    }
  };
  if (list.error) return <ErrorBox error={list.error} />;
  const items = (list.data && list.data.artifacts) || [];
  if (!items.length) return <p class="muted">None yet.</p>;
  return (
    <>
      <ul class="artifacts" data-testid="artifacts">
        {items.map((a) => (
          <li>
            <Code>{a.name}</Code> <span class="muted small">{fmtBytes(a.size)} · sha256 {a.sha256.slice(0, 12)}…</span>{' '}
            {(a.name === 'report.md' || a.name === 'diff.patch') && <button type="button" onClick={() => show(a.name)} data-testid={'show-' + a.name}>{a.name === 'diff.patch' ? 'Show diff' : 'Show report'}</button>}{' '}
            <Action onRun={() => download(id, a.name)}>Download</Action>
          </li>
        ))}
      </ul>
      <ErrorBox error={error} />
      {open && (
        <div class="artifact-view" data-testid="artifact-view">
          <h3><Code>{open.name}</Code> <button type="button" class="link" onClick={() => setOpen(null)}>Close</button></h3>
          {open.html !== undefined ? <div class="markdown" dangerouslySetInnerHTML={{ __html: open.html }} /> : <DiffView text={open.text} />}
        </div>
      )}
    </>
  );
}

function Audit({ id }) {
  const audit = useLoad(async () => verifyAudit(await api('/v1/audit?run_id=' + enc(id), { raw: true }).then((r) => r.text())), [id]);
  if (audit.error) return <ErrorBox error={audit.error} />;
  if (!audit.data) return <p aria-busy="true">Loading…</p>;
  const a = audit.data;
  return (
    <>
      <p data-testid="audit-verification" class={a.broken || a.badLinks ? 'error' : 'ok'}>
        {a.broken || a.badLinks
          ? `Chain check FAILED: ${a.broken} record(s) do not match their hash, ${a.badLinks} link(s) broken.`
          : `Chain check passed in this page: ${a.verified} of ${a.records.length} records match their hashes; ${a.links} link(s) between consecutive records hold.`}
        <span class="muted small"> (The API gives no verification status; the page recomputes each hash.)</span>
      </p>
      <div class="scroll">
        <table class="list" data-testid="audit">
          <thead><tr><th>#</th><th>Time</th><th>Actor</th><th>Action</th><th>Details</th><th>Hash</th></tr></thead>
          <tbody>
            {a.records.map((x) => (
              <tr>
                <td>{x.id}</td><td>{isoTime(x.ts_ms)}</td><td>{x.actor}</td><td><Code>{x.action}</Code></td>
                <td><details><summary>details</summary><pre class="json">{JSON.stringify(x.details, null, 2)}</pre></details></td>
                <td title={x.hash}><span class={x.verified ? 'ok' : 'error'}>{x.verified ? '✓' : '✗'}</span> <Code>{x.hash.slice(0, 10)}…</Code></td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
