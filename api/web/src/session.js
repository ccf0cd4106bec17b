// Who is signed in, and every run's events (/v1/events) shared by the pages.
import { api, ApiError, clearKey, closeAllSockets, serverNow, setKey } from './api.js';
import { ResumableStream } from './live.js';

export const session = { role: null, name: null, info: null };

// The caller's name and role (submitter, reviewer or admin), as GET /v1/info names them.
export async function signIn(key) {
  setKey(key);
  try {
    const info = await api('/v1/info');
    const caller = info.caller;
    if (!caller || !caller.role || !caller.name) {
      throw new ApiError(0, 'unsupported', 'This daemon does not name the caller (GET /v1/info has no caller): it is older than this page.');
    }
    Object.assign(session, { role: caller.role, name: caller.name, info });
    startEvents();
    return session;
  } catch (e) {
    clearKey();
    throw e;
  }
}

export function signOut() {
  stopEvents();
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

function startEvents() {
  stopEvents();
  historyCutoff = serverNow() - 5000;
  stream = new ResumableStream({
    path: (after) => '/v1/events' + (after ? '?after=' + after : ''),
    position: (ev) => ev.cursor,
    onEvent: (ev) => {
      for (const f of listeners) f(ev);
    },
    onStatus: (s) => {
      eventsStatus = s;
      for (const f of statusListeners) f(s);
    },
  }).start();
}

function stopEvents() {
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
