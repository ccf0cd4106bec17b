// The page's one connection to GET /v1/events/sandboxes: every change of state of the caller's
// sandboxes and of their processes (a reviewer's or an admin's: everyone's) from the moment it
// opens. Nothing is replayed, so a page subscribes, then lists, then applies the changes; after
// a close (a dropped network, or 1013 when the page fell behind) the feed reconnects and every
// page that follows it lists again.
import { openSocket } from './api.js';

const subscribers = new Set();
const statusListeners = new Set();
let ws = null;
let wanted = false;
let timer = null;
let delay = 250;
let opens = 0;
export let feedStatus = 'off';

function setStatus(s) {
  feedStatus = s;
  for (const f of statusListeners) f(s);
}

export function onFeedStatus(fn) {
  statusListeners.add(fn);
  return () => statusListeners.delete(fn);
}

// Opens the connection (once; followList calls it).
export function startFeed() {
  wanted = true;
  if (!ws && !timer) connect();
}

// At sign-out.
export function stopFeed() {
  wanted = false;
  clearTimeout(timer);
  timer = null;
  const w = ws;
  ws = null;
  if (w) w.close();
  setStatus('off');
}

function connect() {
  timer = null;
  if (!wanted) return;
  setStatus(opens ? 'reconnecting' : 'connecting');
  const w = (ws = openSocket('/v1/events/sandboxes'));
  w.onopen = () => {
    if (w !== ws) return;
    delay = 250;
    opens++;
    setStatus('live');
    for (const s of [...subscribers]) s.opened();
  };
  w.onmessage = (m) => {
    if (w !== ws) return;
    let ev;
    try {
      ev = JSON.parse(typeof m.data === 'string' ? m.data : new TextDecoder().decode(m.data));
    } catch {
      return;
    }
    if (ev.type !== 'sandbox.state' && ev.type !== 'process.state') return;
    for (const s of [...subscribers]) s.change(ev);
  };
  w.onclose = () => {
    if (w !== ws) return;
    ws = null;
    if (!wanted) return;
    // Whatever changed until the next open is lost: the subscribers list again then.
    setStatus('reconnecting');
    timer = setTimeout(connect, delay);
    delay = Math.min(delay * 2, 5000);
  };
}

// Keeps a page's list current: `list()` is read once the feed is open and again after every
// reconnect, `onList(answer)` takes each answer and `onChange(ev)` every change after it (the
// changes that arrive while a list is on its way are held, then applied after it in order: what
// the list already had, they set again). Should the feed not open within a few seconds, the list
// is read anyway (and again once it opens); one that fails (but for a refusal) is read again a
// few seconds later. Returns the function that stops following.
export function followList({ list, onList, onChange, onError = () => {} }) {
  let gen = 0;
  let held = null; // changes that came while listing
  let listed = false;
  let retry = null;
  const sub = {
    opened() {
      clearTimeout(retry);
      const g = ++gen;
      held = [];
      list().then(
        (answer) => {
          if (g !== gen) return;
          const changes = held;
          held = null;
          listed = true;
          onList(answer);
          for (const ev of changes) onChange(ev);
        },
        (e) => {
          if (g !== gen) return;
          held = null;
          onError(e);
          // Unless the API refused it, asked again in a while (a reconnect asks at once).
          if (!(e && e.status >= 400 && e.status < 500)) retry = setTimeout(() => g === gen && sub.opened(), 3000);
        },
      );
    },
    change(ev) {
      if (held) held.push(ev);
      else if (listed) onChange(ev);
    },
  };
  subscribers.add(sub);
  startFeed();
  let fallback = null;
  if (feedStatus === 'live') sub.opened();
  else fallback = setTimeout(() => !listed && held === null && sub.opened(), 3000);
  return () => {
    clearTimeout(fallback);
    clearTimeout(retry);
    subscribers.delete(sub);
    gen++;
  };
}

// Reads one record that a change names (a row the list lacks, or fields a change does not
// carry) with `get(key)`, a moment later so that the burst of changes a new record makes is
// read once. The changes to it that come meanwhile are held: `held(key, ev)` says so, and
// after `onAnswer(key, record)` the latest of them goes to `onChange` (it alone says where the
// record stands). `wanted(ev)`, asked of the latest change held when the moment has passed,
// may say the record is no longer needed: the change then goes to `onChange` unread.
export function recordReader(get, onAnswer, onChange, wanted = () => true) {
  const reading = new Map(); // key -> the latest change held, or null
  const done = (key) => {
    const ev = reading.get(key);
    reading.delete(key);
    return ev;
  };
  return {
    read(key) {
      if (reading.has(key)) return;
      reading.set(key, null);
      setTimeout(() => {
        const ev = reading.get(key);
        if (ev && !wanted(ev)) {
          reading.delete(key);
          onChange(ev);
          return;
        }
        get(key).then(
          (record) => {
            const last = done(key);
            onAnswer(key, record);
            if (last) onChange(last);
          },
          () => done(key),
        );
      }, 20);
    },
    held(key, ev) {
      if (!reading.has(key)) return false;
      reading.set(key, ev);
      return true;
    },
  };
}

// For the browser tests.
if (window.sandboxdTest) window.sandboxdTest.sandboxFeed = () => ({ status: feedStatus, opens });
