import { serverNow } from './api.js';

export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 1 : 0)) + ' ' + units[i];
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return ms + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
  return fmtAge(ms);
}

// "3d 4h", "5m 12s", "40s".
export function fmtAge(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return s + 's';
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

export const ageOf = (ms) => (ms ? fmtAge(serverNow() - ms) : '—');
// "in 3h 4m" until a moment of server time; "now" once past; "never" without one.
export const untilOf = (ms) => (ms ? (ms > serverNow() ? 'in ' + fmtAge(ms - serverNow()) : 'now') : 'never');
// "1 of 2": the approvals a run has of those its review needs.
export const approvalsOf = (review) => (review ? `${review.approvals.length} of ${review.approvals_required}` : '0 of 1');
export const isoTime = (ms) => (ms ? new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '—');

// A run's states in the only order they are entered: a state never goes back, so an event
// replayed from history can be told from news by its rank.
const RANK = { PENDING: 0, PLANNED: 1, AWAITING_REVIEW: 2, QUEUED: 3, RUNNING: 4, SUCCEEDED: 5, FAILED: 5, CANCELLED: 5 };
export const stateRank = (s) => RANK[s] ?? -1;
export const RUN_STATES = Object.keys(RANK);
export const terminal = (s) => stateRank(s) === 5;

// A shell-like rendering of an argv, quoting what needs it.
export function shellJoin(argv) {
  return (argv || [])
    .map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : "'" + a.replace(/'/g, `'\\''`) + "'"))
    .join(' ');
}

export function ruleText(policy) {
  if (!policy) return '—';
  if (policy.rule) return `${policy.rule.pattern} (${policy.rule.file.split('/').pop()}:${policy.rule.line})`;
  if (policy.protection) return `protection: ${policy.protection}`;
  if (policy.note) return policy.note;
  return 'default (no rule matched)';
}

// Log bytes as text that is safe to show: valid UTF-8 as it is, each other byte as \xNN, and
// control characters (escape sequences included) as visible symbols; always rendered as text.
export function bytesToSafeText(bytes) {
  const parts = [];
  let i = 0;
  const dec = new TextDecoder('utf-8', { fatal: true });
  while (i < bytes.length) {
    // The longest valid UTF-8 run from i.
    let j = i;
    while (j < bytes.length) {
      const b = bytes[j];
      const len = b < 0x80 ? 1 : b >= 0xc2 && b < 0xe0 ? 2 : b >= 0xe0 && b < 0xf0 ? 3 : b >= 0xf0 && b < 0xf5 ? 4 : 0;
      if (!len || j + len > bytes.length) break;
      try {
        dec.decode(bytes.subarray(j, j + len));
      } catch {
        break;
      }
      j += len;
    }
    if (j > i) parts.push({ text: visibleControls(new TextDecoder().decode(bytes.subarray(i, j))) });
    if (j < bytes.length) {
      parts.push({ text: '\\x' + bytes[j].toString(16).padStart(2, '0'), raw: true });
      j++;
    }
    i = j;
  }
  return parts;
}

export function visibleControls(s) {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, (c) => (c === '\r' ? '' : c === '\x7f' ? '\u2421' : String.fromCharCode(0x2400 + c.charCodeAt(0))));
}

export function b64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// Calls fn at most once per animation frame.
export function frameBatcher(fn) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      fn();
    });
  };
}
