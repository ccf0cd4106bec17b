// Who is signed in, and every run's events (/v1/events) shared by the pages.
import { api, ApiError, clearKey, closeAllSockets, serverNow, setKey } from './api.js';
import { ResumableStream } from './live.js';
import { stopFeed } from './feed.js';

export const session = { role: null, name: null, info: null };

// Requests started with the sign-in (the first page's list, beside GET /v1/info), for that
// page to take: path -> { promise, at }.
const early = new Map();

// What `path` answers, from the request made with the sign-in (asked again if that one failed);
// null if there was none (or long ago).
export function takeEarly(path) {
  const e = early.get(path);
  early.delete(path);
  if (!e || performance.now() - e.at > 10000) return null;
  return e.promise.catch(() => api(path));
}

// The caller's name and role (submitter, reviewer or admin), as GET /v1/info names them.
// `prefetch`: paths the first page will read, requested at once beside /v1/info.
export async function signIn(key, prefetch = []) {
  setKey(key);
  early.clear();
  for (const path of prefetch) {
    const promise = api(path, { quiet: true });
    promise.catch(() => {}); // taken later, or never
    early.set(path, { promise, at: performance.now() });
  }
  try {
    const info = await api('/v1/info');
    const caller = info.caller;
    if (!caller || !caller.role || !caller.name) {
      throw new ApiError(0, 'unsupported', 'This daemon does not name the caller (GET /v1/info has no caller): it is older than this page.');
    }
    Object.assign(session, { role: caller.role, name: caller.name, info });
    noteEventsAfter(info.events_after);
    historyCutoff = serverNow() - 5000;
    return session;
  } catch (e) {
    clearKey();
    early.clear();
    throw e;
  }
}

export function signOut() {
  early.clear();
  stopEvents();
  stopFeed();
  closeAllSockets();
  clearKey();
  Object.assign(session, { role: null, name: null, info: null });
}

export const canReview = () => session.role === 'reviewer' || session.role === 'admin';
// Whether `submitter` is the caller: nobody decides on its own runs, sandboxes or processes.
export const isOwn = (submitter) => submitter === session.name;
// Whether the caller may approve or reject something submitted by `submitter`.
export const mayDecide = (submitter) => canReview() && !isOwn(submitter);

const listeners = new Set();
const statusListeners = new Set();
let stream = null;
export let eventsStatus = 'off';
// Events older than this (server time) were already in the lists loaded after sign-in.
export let historyCutoff = 0;
// The stream starts after the lowest events cursor read with what the pages show (`events_after`
// of GET /v1/info and of the run lists): it carries every change those reads may not show, and
// none of the history before them. A page holds the stream back until its first list is in.
let holds = 0;
let wanted = false;
let eventsAfter = null;

// A cursor read before something the page shows (GET /v1/runs, /v1/info: events_after).
export function noteEventsAfter(cursor) {
  if (stream || typeof cursor !== 'number') return;
  eventsAfter = eventsAfter === null ? cursor : Math.min(eventsAfter, cursor);
}

function setStatus(s) {
  eventsStatus = s;
  for (const f of statusListeners) f(s);
}

// Opens the stream after sign-in, as soon as no page holds it back.
export function startEvents() {
  wanted = true;
  if (stream) return;
  if (holds > 0) {
    setStatus('connecting');
    return;
  }
  stream = new ResumableStream({
    path: (after) => '/v1/events' + (after ? '?after=' + after : ''),
    position: (ev) => ev.cursor,
    after: eventsAfter ?? 0, // a daemon without events_after: from the start
    onEvent: (ev) => {
      for (const f of listeners) f(ev);
    },
    onStatus: setStatus,
  }).start();
}

// Holds the stream back until the function it returns is called.
export function holdEvents() {
  holds++;
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    holds--;
    if (holds === 0 && wanted) startEvents();
  };
}

function stopEvents() {
  wanted = false;
  eventsAfter = null;
  if (stream) stream.stop();
  stream = null;
  eventsStatus = 'off';
}

export function onEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
export function onEventsStatus(fn) {
  statusListeners.add(fn);
  return () => statusListeners.delete(fn);
}
