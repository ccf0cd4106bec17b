// What the browser tests share: the daemon (tests/support/with_daemon.py exports it), the API
// called directly (to set the scene, and to forge what the page would not do), Chromium driven
// by playwright-core, screenshots and measured figures.
import { chromium } from 'playwright-core';
import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const env = {
  url: process.env.SANDBOXD_URL,
  // Where the page is served: the daemon itself (web_root), or the dev server run.sh started
  // in front of a daemon built without static serving.
  web: process.env.SANDBOXD_WEB_URL || process.env.SANDBOXD_URL,
  alice: process.env.SANDBOXD_API_KEY,
  bob: process.env.SANDBOXD_API_KEY_2,
  rev: process.env.SANDBOXD_REVIEWER_KEY,
  admin: process.env.SANDBOXD_ADMIN_KEY,
  workspaceRoot: process.env.SANDBOXD_WEB_WORKSPACE_ROOT,
};
if (!env.url || !env.alice || !env.rev) {
  throw new Error('run under tests/support/with_daemon.py (see tests/web/run.sh)');
}

export async function api(key, method, p, body) {
  const res = await fetch(env.url + p, {
    method,
    headers: { authorization: 'Bearer ' + key, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

export async function apiOk(key, method, p, body) {
  const r = await api(key, method, p, body);
  if (r.status >= 300) throw new Error(`${method} ${p}: ${r.status} ${r.text}`);
  return r.json;
}

export async function waitRun(key, id, pred, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const run = await apiOk(key, 'GET', '/v1/runs/' + id);
    if (pred(run)) return run;
    if (Date.now() > end) throw new Error(`run ${id} stayed ${run.state}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let browser = null;
export async function launch() {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  return browser;
}
export async function closeBrowser() {
  if (browser) await browser.close();
  browser = null;
}

// A fresh page (its own context: nothing shared) signed in with `key`.
// `setup(page)` runs before the page is opened (listeners that must see its first requests).
export async function signedIn(key, { path: start = '/ui/queue', viewport, setup } = {}) {
  const context = await browser.newContext({ viewport: viewport || { width: 1280, height: 900 } });
  const page = await context.newPage();
  if (setup) setup(page);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  // A refusal by the Content-Security-Policy (where the server sends one) is a failure too.
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) errors.push(new Error(m.text()));
  });
  page.errors = errors;
  await page.goto(env.web + start);
  await page.fill('#apikey', key);
  await page.click('button[type=submit]');
  await page.waitForSelector('header.top');
  return page;
}

const shots = process.env.SCREENSHOT_DIR || path.join(here, 'screenshots');
export async function screenshot(page, name) {
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, name + '.png'), fullPage: true });
}

// A measured figure: a JSON line on stdout, and in $BENCH_OUT/web.jsonl when set.
export function report(figure) {
  const line = JSON.stringify({ bench: 'web', ...figure });
  console.log(line);
  if (process.env.BENCH_OUT) {
    mkdirSync(process.env.BENCH_OUT, { recursive: true });
    appendFileSync(path.join(process.env.BENCH_OUT, 'web.jsonl'), line + '\n');
  }
}
