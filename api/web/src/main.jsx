import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { onUnauthorized } from './api.js';
import { session, signIn, signOut, onEventsStatus, eventsStatus, startEvents } from './session.js';
import { match, navigate, onNavigate } from './router.js';
import { Link, ErrorBox } from './components.jsx';
import { feedStatus, onFeedStatus, startFeed } from './feed.js';
import { QueuePage, QUEUE_RUNS } from './pages/queue.jsx';
import { RunsPage } from './pages/runs.jsx';
import { RunPage } from './pages/run.jsx';
import { SandboxesPage, SandboxPage } from './pages/sandboxes.jsx';
import { PoliciesPage } from './pages/policies.jsx';
import { ProjectsPage, ProjectPage } from './pages/projects.jsx';

const ROUTES = [
  ['/ui/queue', QueuePage, 'Review queue'],
  ['/ui/runs', RunsPage, 'Runs'],
  ['/ui/runs/:id', RunPage, 'Run'],
  ['/ui/projects', ProjectsPage, 'Projects'],
  ['/ui/projects/:id', ProjectPage, 'Project'],
  ['/ui/sandboxes', SandboxesPage, 'Sandboxes'],
  ['/ui/sandboxes/:id', SandboxPage, 'Sandbox'],
  ['/ui/sandboxes/:id/processes/:pid', SandboxPage, 'Sandbox'],
  ['/ui/policies', PoliciesPage, 'Policies'],
];

const NAV = [
  ['/ui/queue', 'Queue'],
  ['/ui/runs', 'Runs'],
  ['/ui/projects', 'Projects'],
  ['/ui/sandboxes', 'Sandboxes'],
  ['/ui/policies', 'Policies'],
];

function SignIn({ onDone, notice }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    performance.mark('signin');
    setBusy(true);
    setError(null);
    try {
      // The queue (where the page opens) needs one list: it is asked for beside GET /v1/info.
      const path = location.pathname.replace(/\/+$/, '');
      await signIn(key.trim(), ['', '/ui', '/ui/queue'].includes(path) ? [QUEUE_RUNS] : []);
      setKey('');
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin" id="main">
      <h1>sandboxd</h1>
      <form onSubmit={submit} aria-label="Sign in">
        <label for="apikey">API key</label>
        <input id="apikey" name="apikey" type="password" autocomplete="off" spellcheck={false}
               value={key} onInput={(e) => setKey(e.currentTarget.value)} required autofocus />
        <button type="submit" disabled={busy || !key.trim()}>Sign in</button>
        <p class="muted small">The key is kept in this tab's memory only: reloading or closing the tab signs out.</p>
        {notice && <p class="error" role="alert">{notice}</p>}
        <ErrorBox error={error} />
      </form>
    </main>
  );
}

const WORSE = ['live', 'connecting', 'reconnecting', 'off'];

// The two live connections: runs (/v1/events) and sandboxes (/v1/events/sandboxes); the badge
// says how the worse of them stands.
function LiveBadge() {
  const [runs, setRuns] = useState(eventsStatus);
  const [boxes, setBoxes] = useState(feedStatus);
  useEffect(() => {
    const offs = [onEventsStatus(setRuns), onFeedStatus(setBoxes)];
    // What changed before these subscribed.
    setRuns(eventsStatus);
    setBoxes(feedStatus);
    return () => offs.forEach((off) => off());
  }, []);
  const s = WORSE[Math.max(WORSE.indexOf(runs), WORSE.indexOf(boxes))] || 'off';
  const label = s === 'live' ? 'live' : s === 'off' ? 'offline' : s === 'connecting' ? 'connecting…' : 'reconnecting…';
  return (
    <span class={'live live-' + s} title={`Runs (/v1/events): ${runs}; sandboxes (/v1/events/sandboxes): ${boxes}`}
          data-testid="events-status" data-runs={runs} data-sandboxes={boxes}>{label}</span>
  );
}

function App() {
  const [, setTick] = useState(0);
  const [signedIn, setSignedIn] = useState(false);
  const [notice, setNotice] = useState(null);
  const mainRef = useRef(null);
  useEffect(() => onNavigate(() => setTick((n) => n + 1)), []);
  useEffect(() => {
    onUnauthorized((message) => {
      signOut();
      setNotice('Signed out: ' + message);
      setSignedIn(false);
    });
  }, []);
  const path = location.pathname.replace(/\/+$/, '') || '/';
  useEffect(() => {
    if (path === '/' || path === '/ui') navigate('/ui/queue', { replace: true });
  }, [path]);
  // After the first page has rendered: it may hold the event stream back (see holdEvents). The
  // sandboxes' feed is opened by the first page that follows it, else here.
  useEffect(() => {
    if (!signedIn) return;
    startEvents();
    startFeed();
  }, [signedIn]);
  useEffect(() => {
    // Keyboard and screen-reader users land on the new page's heading.
    const h = mainRef.current && mainRef.current.querySelector('h1');
    if (h) {
      h.setAttribute('tabindex', '-1');
      h.focus({ preventScroll: true });
    }
  }, [path, signedIn]);

  if (!signedIn) return <SignIn notice={notice} onDone={() => { setNotice(null); setSignedIn(true); }} />;

  let page = null;
  let title = 'Not found';
  for (const [pattern, Page, t] of ROUTES) {
    const params = match(pattern, path);
    if (params) {
      page = <Page key={pattern + JSON.stringify(params)} {...params} />;
      title = t;
      break;
    }
  }
  document.title = title + ' · sandboxd';
  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <span class="brand">sandboxd</span>
        <nav aria-label="Main">
          {NAV.map(([href, label]) => (
            <Link href={href} aria-current={path.startsWith(href) ? 'page' : undefined}>{label}</Link>
          ))}
        </nav>
        <span class="who">
          <LiveBadge />
          <span data-testid="role">{session.name} · {session.role}</span>
          <button type="button" class="link" onClick={() => { signOut(); setSignedIn(false); }}>Sign out</button>
        </span>
      </header>
      <main id="main" ref={mainRef}>
        {page || (<><h1>Not found</h1><p>No page at {path}. <Link href="/ui/queue">Go to the queue</Link>.</p></>)}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app'));
