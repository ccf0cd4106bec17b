// The command policy and seccomp profiles in force, and a box that asks the policy about a
// command without running it.
import { useState } from 'preact/hooks';
import { api, enc } from '../api.js';
import { session } from '../session.js';
import { Action, Code, ErrorBox, KV, Risk, useLoad } from '../components.jsx';
import { splitWords } from './sandboxes.jsx';

export function PoliciesPage() {
  const policies = useLoad(() => api('/v1/policies'), []);
  const profiles = useLoad(() => api('/v1/seccomp/profiles'), []);
  const [profile, setProfile] = useState(null);
  const [profileError, setProfileError] = useState(null);
  const cp = policies.data && policies.data.command_policy;
  const showProfile = async (name) => {
    setProfileError(null);
    try {
      setProfile({ name, doc: await api('/v1/seccomp/profiles/' + enc(name)) });
    } catch (e) {
      setProfileError(e);
    }
  };
  return (
    <section>
      <h1>Policies</h1>
      <h2>Command policy</h2>
      <ErrorBox error={policies.error} />
      {policies.data && (cp ? (
        <KV rows={[
          ['File', <Code>{cp.source}</Code>],
          ['Policy directory', <Code>{policies.data.policy_dir}</Code>],
          ['Shell commands', cp.shell === 'allow' ? 'parsed and judged command by command' : 'refused'],
          ['Destructive-command protection', String(cp.protections && cp.protections.destructive)],
        ]} />
      ) : <p>No command policy: a reviewer decides every run.</p>)}
      <p class="muted small">The API does not list the rules themselves; evaluate a command below to see which rule decides it.</p>
      {session.role === 'admin' && (
        <Action onRun={async () => { await api('/v1/policies:reload', { method: 'POST' }); policies.reload(); profiles.reload(); }}>Reload from the policy directory</Action>
      )}

      <h2>Evaluate a command</h2>
      <Evaluate />

      <h2>Seccomp profiles</h2>
      <ErrorBox error={profiles.error} />
      {profiles.data && (
        <>
          <p class="small">From <Code>{profiles.data.seccomp_profiles_dir || profiles.data.source}</Code></p>
          <div class="scroll">
            <table class="list" data-testid="seccomp-profiles">
              <thead><tr><th>Name</th><th>Default action</th><th>Rules</th><th>BPF instructions</th><th>Source</th><th>sha256</th><th></th></tr></thead>
              <tbody>
                {profiles.data.profiles.map((p) => (
                  <tr>
                    <td><Code>{p.name}</Code>{p.permissive && <span class="tag">permissive</span>}</td>
                    <td><Code>{p.default_action}</Code></td>
                    <td>{p.rules}</td>
                    <td>{p.instructions}</td>
                    <td class="small">{p.source}</td>
                    <td title={p.sha256}><Code>{p.sha256.slice(0, 12)}…</Code></td>
                    <td><button type="button" onClick={() => showProfile(p.name)}>Show</button></td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      <ErrorBox error={profileError} />
      {profile && (
        <div class="artifact-view">
          <h3><Code>{profile.name}</Code> <button type="button" class="link" onClick={() => setProfile(null)}>Close</button></h3>
          <pre class="json" tabIndex={0}>{JSON.stringify(profile.doc, null, 2)}</pre>
        </div>
      )}
    </section>
  );
}

function Evaluate() {
  const [text, setText] = useState('');
  const [mode, setMode] = useState('command');
  const [out, setOut] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = mode === 'command' ? { command: text } : { argv: splitWords(text) };
      setOut(await api('/v1/policy:evaluate', { method: 'POST', body }));
    } catch (err) {
      setOut(null);
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={submit} class="evaluate" aria-label="Evaluate a command">
      <div class="filters">
        <label class="grow">Command
          <input name="command" value={text} onInput={(e) => setText(e.currentTarget.value)} placeholder="git push origin main" required />
        </label>
        <label>As
          <select value={mode} onChange={(e) => setMode(e.currentTarget.value)}>
            <option value="command">a shell command line</option>
            <option value="argv">argv (words, no shell)</option>
          </select>
        </label>
        <button type="submit" disabled={busy}>Evaluate</button>
      </div>
      <ErrorBox error={error} />
      {out && (
        <div data-testid="evaluation">
          <KV rows={[
            ['Decision', <strong class={'decision-' + out.decision}>{out.decision}</strong>],
            ['Risk', <Risk r={out.risk} />],
            ['Rule', out.rule ? <><Code>{out.rule.pattern}</Code> at <Code>{out.rule.file}:{out.rule.line}</Code></> : (out.protection ? 'protection: ' + out.protection : (out.note || 'none (the default decided)'))],
            ['Rule set', out.rule_set || (out.rule ? 'top-level rules' : null)],
            ['Command that decided', out.command ? <Code>{out.command}</Code> : null],
            ['Reasons', out.reasons && out.reasons.length ? <ul class="plain">{out.reasons.map((r) => <li><Code>{r.code}</Code>: {r.message}</li>)}</ul> : 'none'],
          ]} />
        </div>
      )}
    </form>
  );
}
