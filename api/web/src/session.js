// Who is signed in, and every run's events (/v1/events) shared by the pages.
import { api, clearKey, closeAllSockets, serverNow, setKey } from './api.js';
import { ResumableStream } from './live.js';

export const session = { role: null, name: null, info: null };

// The caller's role and name: from GET /v1/info when it says (`caller`), else the role is
// inferred: GET /v1/audit is for reviewers and admins, a submitter gets 403.
export async function signIn(key) {
  setKey(key);
  try {
    const info = await api('/v1/info');
    const caller = info.caller || info.principal || {};
    let role = caller.role || null;
    if (!role) {
      try {
        await api('/v1/audit?run_id=run_aaaaaaaaaaaaaaaaaaaa');
        role = 'reviewer';
      } catch (e) {
        if (e.status !== 403) throw e;
        role = 'submitter';
      }
    }
    Object.assign(session, { role, name: caller.name || null, info, inferred: !caller.role });
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
// Whether the caller may decide on something submitted by `submitter` (never its own).
export const mayDecide = (submitter) => canReview() && !(session.name && submitter === session.name);

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
