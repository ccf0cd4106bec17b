import { useEffect, useState, useCallback, useRef } from 'preact/hooks';
import { navigate } from './router.js';

export function Link({ href, children, ...rest }) {
  const onClick = (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  };
  return <a href={href} onClick={onClick} {...rest}>{children}</a>;
}

export function ErrorBox({ error }) {
  if (!error) return null;
  return <p class="error" role="alert">{error.message || String(error)}</p>;
}

export function State({ s }) {
  return <span class={'state st-' + String(s).toLowerCase()}>{s}</span>;
}

export function Risk({ r }) {
  if (!r) return <span class="muted">—</span>;
  return <span class={'risk risk-' + r}>{r}</span>;
}

// Re-renders every `ms` (ages, relative times).
export function useTick(ms) {
  const [, set] = useState(0);
  useEffect(() => {
    const t = setInterval(() => set((n) => n + 1), ms);
    return () => clearInterval(t);
  }, [ms]);
}

// Loads with `fn` when `deps` change; gives {data, error, loading, reload, set}.
export function useLoad(fn, deps) {
  const [st, setSt] = useState({ data: null, error: null, loading: true });
  const gen = useRef(0);
  const reload = useCallback(() => {
    const g = ++gen.current;
    setSt((s) => ({ ...s, loading: true }));
    return fn().then(
      (data) => g === gen.current && setSt({ data, error: null, loading: false }),
      (error) => g === gen.current && setSt((s) => ({ data: s.data, error, loading: false })),
    );
  }, deps);
  useEffect(() => {
    reload();
  }, [reload]);
  return { ...st, reload, set: (data) => setSt((s) => ({ ...s, data })) };
}

// Calls fn every `ms` while mounted (only where the API has no event for what changes).
export function usePoll(fn, ms, deps) {
  useEffect(() => {
    const t = setInterval(() => {
      if (!document.hidden) fn();
    }, ms);
    return () => clearInterval(t);
  }, deps);
}

// A button that runs an async action, shows it is busy, and reports the API's error message;
// `confirm` asks first, `disabled` keeps it off.
export function Action({ onRun, children, class: cls = '', confirm: ask, disabled = false, ...rest }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const run = async () => {
    if (ask && !window.confirm(ask)) return;
    setBusy(true);
    setError(null);
    try {
      await onRun();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <span class="action">
      <button type="button" class={cls} disabled={busy || disabled} onClick={run} {...rest}>{children}</button>
      {error && <span class="error inline" role="alert">{error.message}</span>}
    </span>
  );
}

export function KV({ rows }) {
  return (
    <dl class="kv">
      {rows.filter(Boolean).map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v ?? <span class="muted">—</span>}</dd>
        </div>
      ))}
    </dl>
  );
}

export function Code({ children }) {
  return <code class="code">{children}</code>;
}
