// Everything waiting for a reviewer: runs (kept live by /v1/events), sandboxes and processes
// (kept live by the page's connection to /v1/events/sandboxes, feed.js).
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { api, enc } from '../api.js';
import { historyCutoff, holdEvents, noteEventsAfter, onEvent, takeEarly } from '../session.js';
import { followList, recordReader } from '../feed.js';
import { ErrorBox, useTick } from '../components.jsx';
import { navigate } from '../router.js';
import { ageOf, approvalsOf, isoTime, frameBatcher, ruleText, shellJoin, stateRank, untilOf } from '../util.js';

// Every page of a list (runs and sandboxes page by cursor); the first one may have been
// requested with the sign-in.
export async function listAll(path, field, maxPages = 20) {
  const all = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await ((!cursor && takeEarly(path)) || api(path + (cursor ? sep + 'cursor=' + enc(cursor) : '')));
    if (i === 0) noteEventsAfter(page.events_after); // run lists name it
    all.push(...page[field]);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return all;
}

async function loadBoxesAndProcesses() {
  const [waiting, open] = await Promise.all([
    listAll('/v1/sandboxes?state=AWAITING_REVIEW&limit=1000', 'sandboxes'),
    listAll('/v1/sandboxes?state=RUNNING&state=PAUSED&state=STARTING&limit=1000', 'sandboxes'),
  ]);
  const procs = (
    await Promise.all(
      open.map((b) =>
        api(`/v1/sandboxes/${enc(b.id)}/processes?state=AWAITING_REVIEW&limit=1000`).then(
          (r) => r.processes.map((p) => ({ ...p, sandbox: b })),
          () => [],
        ),
      ),
    )
  ).flat();
  return { waiting, procs };
}

// The runs waiting for review, in one request (the API's largest page); the page asks for it
// with the sign-in when it opens on the queue.
export const QUEUE_RUNS = '/v1/runs?state=AWAITING_REVIEW&limit=1000';

const HEAD = ['Kind', 'What', 'Requester', 'Age', 'Risk', 'Rule', 'Approvals', 'Review expires'];

// One click handler for every row's link (not a Link per row: the queue may hold thousands).
function follow(e) {
  const a = e.target.closest && e.target.closest('a[href^="/ui/"]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(a.getAttribute('href'));
}

function commandOf(run) {
  if (run.argv) return shellJoin(run.argv);
  return (run.steps || []).map((s) => shellJoin(s.argv)).join(' && ');
}

export function QueuePage() {
  const runs = useRef(new Map()); // id -> run awaiting review
  const seen = useRef(new Map()); // id -> highest state rank the event stream reported
  const [, setVersion] = useState(0);
  const [error, setError] = useState(null);
  const [loaded, setLoaded] = useState(false);
  const others = useRef({ waiting: new Map(), procs: new Map(), listed: false }); // key -> record awaiting review
  const [othersError, setOthersError] = useState(null);
  // The event stream starts after this page's list, from the cursor the list was read at.
  const [release] = useState(holdEvents);
  const painted = useRef(false);
  useTick(5000);

  // Before the first paint: the list is the one request the page waits for.
  useLayoutEffect(() => {
    let listed = false;
    const bump = frameBatcher(() => setVersion((v) => v + 1));
    const fetching = new Set();
    const early = new Set(); // runs that entered review while the list was on its way
    const fetchRun = (id) => {
      if (fetching.has(id)) return;
      fetching.add(id);
      api('/v1/runs/' + enc(id))
        .then((run) => {
          if (run.state === 'AWAITING_REVIEW' && (seen.current.get(run.id) ?? -1) <= stateRank('AWAITING_REVIEW')) {
            runs.current.set(run.id, run);
            bump();
          }
        }, () => {})
        .finally(() => fetching.delete(id));
    };
    const off = onEvent((ev) => {
      if (ev.type !== 'run.status' && ev.type !== 'run.completed') return;
      const rank = stateRank(ev.state);
      if (rank > (seen.current.get(ev.run_id) ?? -1)) seen.current.set(ev.run_id, rank);
      const known = runs.current.get(ev.run_id);
      if (known) {
        if (rank > stateRank(known.state)) {
          runs.current.delete(ev.run_id);
          bump();
        } else if (typeof ev.approvals === 'number') {
          fetchRun(ev.run_id); // one more approval: who, and with what comment
        }
      } else if (ev.state === 'AWAITING_REVIEW' && ev.ts >= historyCutoff) {
        if (listed) fetchRun(ev.run_id);
        else early.add(ev.run_id);
      }
    });
    listAll(QUEUE_RUNS, 'runs').then(
      (list) => {
        for (const r of list) {
          // The stream may already have seen it move on.
          if ((seen.current.get(r.id) ?? -1) <= stateRank(r.state)) runs.current.set(r.id, r);
        }
        listed = true;
        for (const id of early) {
          if (!runs.current.has(id) && (seen.current.get(id) ?? -1) <= stateRank('AWAITING_REVIEW')) fetchRun(id);
        }
        early.clear();
        setLoaded(true);
      },
      (e) => {
        listed = true;
        setError(e);
        setLoaded(true);
        release();
      },
    );
    return () => {
      off();
      release();
    };
  }, []);

  useLayoutEffect(() => {
    if (!loaded || painted.current) return;
    painted.current = true;
    const rows = document.querySelectorAll('[data-testid=queue] > tbody > tr').length;
    // After the frame that shows the rows: then the event stream may open.
    requestAnimationFrame(() => setTimeout(() => {
      performance.mark('queue-painted', { detail: { rows } });
      release();
    }, 0));
  }, [loaded]);

  // Sandboxes and processes: listed once the feed is open (and again after it reconnects), then
  // a change that enters review reads that one record and one that leaves it drops the row.
  useEffect(() => {
    const bump = frameBatcher(() => setVersion((v) => v + 1));
    const rows = others.current;
    const keyOf = (ev) => (ev.type === 'sandbox.state' ? ev.sandbox_id : `${ev.sandbox_id}/${ev.process_id}`);
    const onChange = (ev) => {
      const key = keyOf(ev);
      if (reader.held(key, ev)) return;
      const map = ev.type === 'sandbox.state' ? rows.waiting : rows.procs;
      if (ev.state === 'AWAITING_REVIEW') {
        if (!map.has(key)) reader.read(key);
      } else if (map.delete(key)) {
        bump();
      }
    };
    const reader = recordReader(
      (key) => {
        const [sid, pid] = key.split('/');
        return api('/v1/sandboxes/' + enc(sid) + (pid ? '/processes/' + enc(pid) : ''));
      },
      (key, rec) => {
        if (rec.state !== 'AWAITING_REVIEW') return;
        (key.includes('/') ? rows.procs : rows.waiting).set(key, rec);
        bump();
      },
      onChange,
      // A sandbox the policy allows passes through review at once: not read then.
      (ev) => ev.state === 'AWAITING_REVIEW',
    );
    return followList({
      list: loadBoxesAndProcesses,
      onList: ({ waiting, procs }) => {
        rows.waiting = new Map(waiting.map((b) => [b.id, b]));
        rows.procs = new Map(procs.map((p) => [`${p.sandbox_id}/${p.id}`, p]));
        rows.listed = true;
        setOthersError(null);
        bump();
      },
      onChange,
      onError: setOthersError,
    });
  }, []);

  const items = [];
  for (const r of runs.current.values()) {
    items.push({
      kind: 'run', id: r.id, href: '/ui/runs/' + r.id, what: commandOf(r), submitter: r.submitter,
      created: r.created_at_ms, policy: r.policy, review: r.review,
    });
  }
  for (const b of others.current.waiting.values()) {
    items.push({
      kind: 'sandbox', id: b.id, href: '/ui/sandboxes/' + b.id, what: `sandbox (${b.network || 'none'} network, ${b.workspace ? 'workspace ' + b.workspace.mode : 'no workspace'})`,
      submitter: b.submitter, created: b.created_at, policy: b.policy,
    });
  }
  for (const p of others.current.procs.values()) {
    items.push({
      kind: 'process', id: `${p.sandbox_id}/${p.id}`, href: `/ui/sandboxes/${p.sandbox_id}/processes/${p.id}`,
      what: shellJoin(p.argv), submitter: p.submitter, created: p.created_at, policy: p.policy,
    });
  }
  items.sort((a, b) => a.created - b.created || (a.id < b.id ? -1 : 1));

  return (
    <section data-others={others.current.listed ? 'listed' : 'loading'}>
      <h1>Review queue</h1>
      <p class="muted small">
        Waiting for a reviewer, oldest first, updated live. How many reviewers a run needs and
        when its review expires come from the policy's <code>review:</code> section; sandboxes
        and processes need one reviewer and never expire.
      </p>
      <ErrorBox error={error} />
      <ErrorBox error={othersError} />
      {!loaded ? <p aria-busy="true">Loading…</p> : items.length === 0 ? <p data-testid="queue-empty">Nothing is waiting for review.</p> : (
        <div class="scroll">
          <table class="list queue" role="table" data-testid="queue" data-count={items.length} onClick={follow}>
            <thead role="rowgroup">
              <tr role="row">{HEAD.map((h) => <th role="columnheader">{h}</th>)}</tr>
            </thead>
            <tbody role="rowgroup">
              {items.map((it) => {
                const risk = it.policy && it.policy.risk;
                return (
                  <tr role="row" key={it.kind + it.id} data-id={it.id}>
                    <td role="cell">{it.kind}</td>
                    <td role="cell" class="what"><a href={it.href} class="code">{it.what}</a><div class="muted small">{it.id}</div></td>
                    <td role="cell">{it.submitter}</td>
                    <td role="cell" title={isoTime(it.created)}>{ageOf(it.created)}</td>
                    <td role="cell" class={risk ? 'risk risk-' + risk : 'muted'}>{risk || '—'}</td>
                    <td role="cell" class="code rule">{ruleText(it.policy)}</td>
                    <td role="cell" data-testid="approvals">{approvalsOf(it.review)}</td>
                    <td role="cell" class={it.review && it.review.expires_at_ms ? '' : 'muted'}
                        title={it.review && it.review.expires_at_ms ? isoTime(it.review.expires_at_ms) : ''}>{untilOf(it.review && it.review.expires_at_ms)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
