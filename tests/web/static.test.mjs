// The daemon serves the page: index.html for / and every /ui/... path, hashed assets under
// /assets/, everything from the build (no other host), and WebSockets take the key as a
// subprotocol.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { env } from './lib.mjs';

test('index.html for / and /ui/..., assets by absolute path, nothing from elsewhere', async () => {
  const root = await fetch(env.web + '/');
  assert.equal(root.status, 200);
  assert.match(root.headers.get('content-type'), /text\/html/);
  const html = await root.text();
  for (const p of ['/ui/queue', '/ui/runs/run_aaaaaaaaaaaaaaaaaaaa', '/ui/sandboxes/x/processes/1']) {
    const r = await fetch(env.web + p);
    assert.equal(r.status, 200, p);
    assert.equal(await r.text(), html, p);
  }
  const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]).filter((u) => !u.startsWith('data:'));
  assert.ok(refs.length >= 2);
  for (const ref of refs) {
    assert.match(ref, /^\/assets\/[\w.-]+$/);
    const r = await fetch(env.web + ref);
    assert.equal(r.status, 200, ref);
    const body = await r.text();
    if (ref.endsWith('.css')) assert.doesNotMatch(body, /@import|url\(\s*['"]?(https?:)?\/\//i, ref + ' loads from another host');
  }
});
