// A copy-on-write run's change set (GET /v1/runs/{id}/changes): what applying it would write into
// the host directory, with the diff it makes; and, for a reviewer or admin who did not submit the
// run, applying it (POST /v1/runs/{id}:apply) bound to the hash of the diff this page shows.
import { useState } from 'preact/hooks';
import { api, enc } from './api.js';
import { canReview, isOwn, mayDecide } from './session.js';
import { Action, Code, ErrorBox, useLoad } from './components.jsx';
import { DiffView } from './diff.jsx';
import { sha256HexOfBytes } from './sha256.js';
import { fmtBytes, isoTime, visibleControls } from './util.js';

const OPS = { make_dir: 'make directory', write: 'write file', delete: 'delete', remove_dir: 'remove directory' };
const FOUND = { absent: 'nothing', file: 'a file', symlink: 'a symbolic link', dir: 'a directory' };

const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;

// "2 files written, 1 deleted, 1 directory made, 0 removed" (an apply answer, or `applied`).
export function countsText(c) {
  return [
    count(c.files_written, 'file written', 'files written'),
    `${c.files_deleted} deleted`,
    count(c.dirs_made, 'directory made', 'directories made'),
    `${c.dirs_removed} removed`,
  ].join(', ');
}

// Why the daemon would not apply the set, or null when it would.
function setWhyNot(run, set) {
  if (set.applied) return `Applied already, by ${set.applied.by}.`;
  if (run.state !== 'SUCCEEDED') return `The run ended ${run.state}: only a succeeded run's changes are applied.`;
  if (set.refused.length) return `${count(set.refused.length, 'change is', 'changes are')} refused (listed below): apply does not make ${set.refused.length === 1 ? 'it' : 'them'}.`;
  if (!set.applicable) return 'The daemon does not apply this set.';
  if (!set.diff_sha256) return 'The run has no diff.patch: what would be written cannot be shown.';
  return null;
}

// Why this page cannot apply the set now, or null when it can.
function whyNot(run, set, diff) {
  const why = setWhyNot(run, set);
  if (why) return why;
  if (diff.error) return 'The diff could not be read: ' + diff.error.message;
  if (!diff.data) return 'Reading the diff…';
  if (diff.data.sha256 !== set.diff_sha256) {
    return `The diff this page read (sha256 ${diff.data.sha256.slice(0, 12)}…) is not the change set's (${set.diff_sha256.slice(0, 12)}…): reload the page.`;
  }
  return null;
}

export function ChangeSet({ run, version, onApplied }) {
  const changes = useLoad(() => api(`/v1/runs/${enc(run.id)}/changes`), [run.id, version]);
  const set = changes.data;
  const diffSha = set ? set.diff_sha256 : null;
  // The diff's bytes: shown, and hashed here, so that the approval names what was read.
  const diff = useLoad(async () => {
    if (!diffSha) return null;
    const res = await api(`/v1/runs/${enc(run.id)}/artifacts/diff.patch`, { raw: true });
    const bytes = new Uint8Array(await res.arrayBuffer());
    return { sha256: sha256HexOfBytes(bytes), text: new TextDecoder().decode(bytes) };
  }, [run.id, diffSha]);
  const [outcome, setOutcome] = useState(null); // {result} | {conflicts}

  if (!set) {
    if (changes.error && changes.error.status === 404) return <p class="muted" data-testid="changes-none">No change set: {changes.error.message}.</p>;
    return changes.error ? <ErrorBox error={changes.error} /> : <p aria-busy="true">Loading…</p>;
  }

  const apply = async () => {
    setOutcome(null);
    try {
      const result = await api(`/v1/runs/${enc(run.id)}:apply`, { method: 'POST', body: { diff_sha256: diff.data.sha256 } });
      setOutcome({ result });
    } catch (e) {
      if (e.status === 409 && e.body && Array.isArray(e.body.conflicts)) {
        setOutcome({ conflicts: e.body.conflicts });
      } else {
        // Applied by someone else meanwhile, or the run is not what this page read: read again.
        if (e.status === 409) changes.reload();
        throw e;
      }
    } finally {
      if (onApplied) onApplied();
    }
    changes.reload();
  };

  const why = whyNot(run, set, diff);
  const flagged = set.entries.filter((e) => e.changed_on_host_during_run).length;
  return (
    <div class="changes" data-testid="changes" data-applicable={String(set.applicable)}>
      {set.applied ? (
        <p class="ok" data-testid="applied">
          Applied to <Code>{set.applied.workspace}</Code> by <strong>{set.applied.by}</strong> at {isoTime(set.applied.at_ms)}: {countsText(set.applied)}.
        </p>
      ) : (
        <p data-testid="changes-status">{set.applicable ? 'Not applied yet: nothing of it is on the host.' : 'Not applicable. ' + setWhyNot(run, set)}</p>
      )}
      <p class="muted small">
        {count(set.entries.length, 'change', 'changes')} to <Code>{run.workspace.path}</Code>, {fmtBytes(set.total_bytes)} of new content.
        {' '}"The run found" is what was on the host at each path when it ran; apply refuses any path that is not that now.
      </p>
      {flagged > 0 && <p class="error small" data-testid="changed-during-run">{count(flagged, 'path', 'paths')} changed on the host while the run ran: applying refuses {flagged === 1 ? 'it' : 'them'}.</p>}
      {set.entries.length ? (
        <div class="scroll">
          <table class="list" data-testid="change-entries">
            <thead><tr><th>Change</th><th>Path</th><th>The run found</th><th>Mode</th><th>Size</th><th>Notes</th></tr></thead>
            <tbody>
              {set.entries.map((e) => (
                <tr data-path={e.path} data-op={e.op}>
                  <td><span class={'op op-' + e.op}>{OPS[e.op] || e.op}</span></td>
                  <td class="what"><Code>{visibleControls(e.path)}</Code></td>
                  <td>{FOUND[e.host] || e.host}</td>
                  <td>{e.mode ? <Code>{e.mode}</Code> : <span class="muted">—</span>}</td>
                  <td>{e.size != null ? fmtBytes(e.size) : <span class="muted">—</span>}</td>
                  <td>{e.changed_on_host_during_run ? <span class="tag warn" data-testid="changed-flag">changed on the host while the run ran</span> : null}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : <p class="muted">The run changed nothing in the workspace.</p>}
      {set.refused.length > 0 && (
        <>
          <h3>Refused</h3>
          <ul class="plain" data-testid="change-refused">
            {set.refused.map((x) => <li><Code>{x.path ? visibleControls(x.path) : '(the whole set)'}</Code>: {x.why}</li>)}
          </ul>
        </>
      )}
      {set.diff_sha256 && (
        <details open class="changes-diff">
          <summary>The diff of these changes (diff.patch, sha256 <code class="code" data-testid="changes-diff-sha256">{set.diff_sha256}</code>)</summary>
          {diff.error ? <ErrorBox error={diff.error} /> : diff.data ? <DiffView text={diff.data.text} testid="changes-diff" /> : <p aria-busy="true">Loading…</p>}
        </details>
      )}
      {mayDecide(run.submitter) ? (
        <div class="apply" data-testid="apply-panel">
          <div class="buttons">
            <Action class="primary" data-testid="apply" disabled={why !== null} aria-describedby={why ? 'apply-why' : undefined}
                    confirm={diff.data && `Write ${count(set.entries.length, 'change', 'changes')} into ${run.workspace.path} on the host? They are the diff shown (sha256 ${diff.data.sha256.slice(0, 12)}…).`}
                    onRun={apply}>Apply to host</Action>
          </div>
          {why && <p class="muted small" id="apply-why" data-testid="apply-why">{why}</p>}
          {outcome && outcome.result && <p class="ok" role="status" data-testid="apply-result">Written to the host: {countsText(outcome.result)}.</p>}
          {outcome && outcome.conflicts && (
            <div class="conflicts" role="alert" data-testid="apply-conflicts">
              <p class="error"><strong>Nothing was written:</strong> {count(outcome.conflicts.length, 'path on the host is', 'paths on the host are')} no longer what the run found.</p>
              <div class="scroll">
                <table class="list">
                  <thead><tr><th>Path</th><th>Conflict</th></tr></thead>
                  <tbody>
                    {outcome.conflicts.map((c) => <tr data-path={c.path}><td class="what"><Code>{visibleControls(c.path)}</Code></td><td>{c.why}</td></tr>)}
                  </tbody>
                </table>
              </div>
            </div>
          )}
        </div>
      ) : !set.applied && (
        <p class="muted small" data-testid="apply-not-yours">
          {canReview() && isOwn(run.submitter) ? 'You submitted this run: another reviewer applies its changes.' : 'A reviewer or admin who did not submit this run applies its changes to the host.'}
        </p>
      )}
    </div>
  );
}
