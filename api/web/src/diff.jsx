// A unified diff (git style) shown side by side: removed lines on the left, added on the right,
// each change paired row by row, context on both sides.
import { visibleControls } from './util.js';

export function parseDiff(text) {
  const files = [];
  let file = null;
  let hunk = null;
  let oldNo = 0, newNo = 0;
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  for (const line of lines) {
    if (line.startsWith('diff --git ')) {
      file = { header: line, oldName: null, newName: null, hunks: [], notes: [] };
      files.push(file);
      hunk = null;
    } else if (!hunk && line.startsWith('--- ')) {
      if (!file) files.push((file = { header: '', hunks: [], notes: [] }));
      file.oldName = line.slice(4);
    } else if (!hunk && line.startsWith('+++ ')) {
      file.newName = line.slice(4);
    } else if (line.startsWith('@@')) {
      const m = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$/.exec(line);
      oldNo = m ? +m[1] : 0;
      newNo = m ? +m[2] : 0;
      hunk = { header: line, rows: [] };
      if (!file) files.push((file = { header: '', hunks: [], notes: [] }));
      file.hunks.push(hunk);
    } else if (hunk && (line[0] === ' ' || line === '')) {
      flush(hunk);
      hunk.rows.push({ l: { no: oldNo++, text: line.slice(1) }, r: { no: newNo++, text: line.slice(1) }, kind: 'ctx' });
    } else if (hunk && line[0] === '-') {
      (hunk.del ||= []).push({ no: oldNo++, text: line.slice(1) });
    } else if (hunk && line[0] === '+') {
      (hunk.add ||= []).push({ no: newNo++, text: line.slice(1) });
    } else if (hunk && line.startsWith('\\')) {
      flush(hunk);
      hunk.rows.push({ note: line });
    } else if (file) {
      if (hunk) flush(hunk);
      hunk = null;
      file.notes.push(line);
    }
  }
  for (const f of files) for (const h of f.hunks) flush(h);
  return files;
}

function flush(h) {
  const del = h.del || [], add = h.add || [];
  for (let i = 0; i < Math.max(del.length, add.length); i++) {
    h.rows.push({ l: del[i] || null, r: add[i] || null, kind: 'chg' });
  }
  h.del = h.add = null;
}

const strip = (name) => (name && name !== '/dev/null' ? name.replace(/^[ab]\//, '') : null);

export function DiffView({ text, testid = 'diff' }) {
  const files = parseDiff(text);
  if (!files.length) return <p class="muted">The diff is empty: the run changed nothing.</p>;
  return (
    <div class="diff" data-testid={testid}>
      {files.map((f) => {
        const name = strip(f.newName) || strip(f.oldName) || f.header;
        const status = f.oldName === '/dev/null' ? 'added' : f.newName === '/dev/null' ? 'deleted' : 'modified';
        return (
          <section class="diff-file">
            <h4><code>{name}</code> <span class="muted small">{status}</span></h4>
            {f.notes.map((n) => <p class="muted small">{n}</p>)}
            <div class="scroll">
              <table class="sbs">
                <colgroup><col class="no" /><col /><col class="no" /><col /></colgroup>
                <thead class="sr-only"><tr><th>Old line</th><th>Old</th><th>New line</th><th>New</th></tr></thead>
                {f.hunks.map((h) => (
                  <tbody>
                    <tr class="hunk"><td colSpan={4}><code>{h.header}</code></td></tr>
                    {h.rows.map((r) =>
                      r.note ? (
                        <tr class="hunk"><td colSpan={4} class="muted small">{r.note}</td></tr>
                      ) : (
                        <tr>
                          <td class="no">{r.l ? r.l.no : ''}</td>
                          <td class={r.kind === 'ctx' ? 'ctx' : r.l ? 'del' : 'empty'}><pre>{r.l ? visibleControls(r.l.text) : ''}</pre></td>
                          <td class="no">{r.r ? r.r.no : ''}</td>
                          <td class={r.kind === 'ctx' ? 'ctx' : r.r ? 'add' : 'empty'}><pre>{r.r ? visibleControls(r.r.text) : ''}</pre></td>
                        </tr>
                      ),
                    )}
                  </tbody>
                ))}
              </table>
            </div>
          </section>
        );
      })}
    </div>
  );
}
