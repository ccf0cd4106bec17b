// Checks the audit trail the API returns: each record's hash is
// SHA-256(prev_hash "\n" canonical JSON of {id, ts, actor, action, run_id, details}), with keys
// sorted and no spaces as the daemon writes it; records with consecutive ids must link
// (prev_hash = the previous record's hash). Numbers keep their exact text from the answer.
import { sha256Hex } from './sha256.js';

// JSON parsed into a tree that keeps each number's text.
function parse(text) {
  let i = 0;
  const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i++; };
  const value = () => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const entries = [];
      ws();
      if (text[i] === '}') { i++; return { o: entries }; }
      for (;;) {
        ws();
        const k = string();
        ws();
        i++; // :
        entries.push([k, value()]);
        ws();
        if (text[i++] === '}') return { o: entries };
      }
    }
    if (c === '[') {
      i++;
      const items = [];
      ws();
      if (text[i] === ']') { i++; return { a: items }; }
      for (;;) {
        items.push(value());
        ws();
        if (text[i++] === ']') return { a: items };
      }
    }
    if (c === '"') return { s: string() };
    const m = /^(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 64));
    if (!m) throw new Error('bad JSON at ' + i);
    i += m[0].length;
    return { raw: m[0] };
  };
  const string = () => {
    const start = i;
    i++;
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i));
  };
  return value();
}

const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
function dump(n) {
  if ('o' in n) return '{' + [...n.o].sort((x, y) => cmp(x[0], y[0])).map(([k, v]) => JSON.stringify(k) + ':' + dump(v)).join(',') + '}';
  if ('a' in n) return '[' + n.a.map(dump).join(',') + ']';
  if ('s' in n) return JSON.stringify(n.s);
  return n.raw;
}

// -> {records (as JSON.parse gives them, each with .verified), verified, broken, links, badLinks}
export function verifyAudit(text) {
  const tree = parse(text);
  const recs = tree.o.find(([k]) => k === 'records')[1].a;
  const plain = JSON.parse(text).records;
  let verified = 0, links = 0, badLinks = 0;
  recs.forEach((r, idx) => {
    const f = Object.fromEntries(r.o);
    const canonical = dump({ o: [['id', f.id], ['ts', f.ts_ms], ['actor', f.actor], ['action', f.action], ['run_id', f.run_id], ['details', f.details]] });
    const ok = sha256Hex(f.prev_hash.s + '\n' + canonical) === f.hash.s;
    plain[idx].verified = ok;
    if (ok) verified++;
    const prev = plain[idx - 1];
    if (prev && prev.id + 1 === plain[idx].id) {
      links++;
      plain[idx].linked = plain[idx].prev_hash === prev.hash;
      if (!plain[idx].linked) badLinks++;
    }
  });
  return { records: plain, verified, broken: plain.length - verified, links, badLinks };
}
