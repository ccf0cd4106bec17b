// Shared helpers of the MCP end-to-end tests: the daemon started by tests/support/with_daemon.py,
// MCP clients of the official TypeScript SDK on both transports, and the REST calls the tests use
// to look at what the daemon did (audit trail, processes, approvals, restart).
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests under tests/support/with_daemon.py`);
  return v;
}

export const URL_BASE = need('SANDBOXD_URL');
export const ALICE = need('SANDBOXD_API_KEY');
export const BOB = need('SANDBOXD_API_KEY_2');
export const REVIEWER = need('SANDBOXD_REVIEWER_KEY');
export const ADMIN = need('SANDBOXD_ADMIN_KEY');
export const HARNESS = need('SANDBOXD_HARNESS');

// The seconds process_run waits for a reviewer (tests/mcp/config.yaml).
export const REVIEW_WAIT_S = 5;

export const PROFILE_TOOLS = (() => {
  const executor = ['process_run'];
  const developer = [...executor, 'file_read', 'file_write', 'file_list', 'file_mkdir', 'file_remove'];
  const full = [...developer, 'sandbox_create', 'sandbox_list', 'sandbox_get', 'sandbox_delete',
    'sandbox_pause', 'sandbox_resume', 'process_start', 'process_list', 'process_logs',
    'process_wait', 'process_signal'];
  return { executor, developer, full };
})();

export function unique(prefix) {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

// The sandboxd binary that serves MCP on stdio: $SANDBOXD_BIN_DIR/sandboxd, else the one beside
// $SANDBOXD_SERVER.
export const SANDBOXD_BIN = path.join(
  process.env.SANDBOXD_BIN_DIR || path.dirname(process.env.SANDBOXD_SERVER || '/nonexistent/x'),
  'sandboxd');

// The stdio tests need `sandboxd mcp`: a binary without it fails the suite at load rather than
// skipping half of it.
{
  const r = spawnSync(SANDBOXD_BIN, ['mcp', '--help'], { encoding: 'utf8', timeout: 10000 });
  if (r.error || r.status !== 0) {
    throw new Error(`${SANDBOXD_BIN} mcp --help failed: ${r.error ? r.error.message : r.status}`);
  }
}

export const TRANSPORTS = [
  { name: 'http', skip: false },
  { name: 'stdio', skip: false },
];

// An MCP client of the SDK connected to `profile` with `key`, on `transport` ('http' or
// 'stdio'). Like a real client it lists the tools right after connecting (unless listTools is
// false), which makes the SDK check each tool result against the tool's outputSchema.
export async function connect({
  transport = 'http', profile = 'full', key = ALICE, name = 'sandboxd-mcp-e2e',
  version = '1.0.0', listTools = true, connectTimeout,
} = {}) {
  const client = new Client({ name, version }, { capabilities: {} });
  let t;
  let negotiated;
  if (transport === 'http') {
    t = new StreamableHTTPClientTransport(new URL(`${URL_BASE}/mcp/${profile}`), {
      requestInit: { headers: { Authorization: `Bearer ${key}` } },
    });
  } else {
    t = new StdioClientTransport({
      command: SANDBOXD_BIN,
      args: ['mcp', '--profile', profile, '--host', URL_BASE],
      env: { ...process.env, SANDBOXD_API_KEY: key },
      stderr: 'inherit',
    });
    // The stdio transport keeps no protocol version; the client hands it over here.
    t.setProtocolVersion = (v) => { negotiated = v; };
  }
  try {
    await client.connect(t, connectTimeout ? { timeout: connectTimeout } : undefined);
  } catch (e) {
    await client.close().catch(() => {});
    throw e;
  }
  if (transport === 'http') negotiated = t.protocolVersion;
  const tools = listTools ? (await client.listTools()).tools : undefined;
  return {
    client,
    transport: t,
    tools,
    protocolVersion: () => negotiated,
    close: () => client.close(),
  };
}

// Runs `body(conn)` with a connected client, closing it afterwards.
export async function withClient(opts, body) {
  const conn = await connect(opts);
  try {
    return await body(conn);
  } finally {
    await conn.close();
  }
}

export function text(result) {
  return (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
}

export async function rest(method, route, { key = ALICE, body } = {}) {
  const init = { method, headers: { Authorization: `Bearer ${key}` } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(`${URL_BASE}${route}`, init);
  const t = await r.text();
  let json;
  try { json = JSON.parse(t); } catch { json = undefined; }
  return { status: r.status, json, text: t };
}

// Every audit record after `afterId`, oldest first (the route answers pages of 100).
export async function auditAfter(afterId = 0) {
  const out = [];
  let after = afterId;
  for (;;) {
    const r = await rest('GET', `/v1/audit?after_id=${after}`, { key: ADMIN });
    if (r.status !== 200) throw new Error(`GET /v1/audit: ${r.status} ${r.text}`);
    const records = r.json.records;
    if (records.length === 0) return out;
    out.push(...records);
    after = records[records.length - 1].id;
  }
}

export async function lastAuditId() {
  const all = await auditAfter(0);
  return all.length ? all[all.length - 1].id : 0;
}

export async function listProcesses(sandboxId, key = ALICE) {
  const r = await rest('GET', `/v1/sandboxes/${sandboxId}/processes?limit=1000`, { key });
  if (r.status !== 200) throw new Error(`list processes: ${r.status} ${r.text}`);
  return r.json.processes;
}

// Asks the harness to restart the daemon on the same port; resolves once it is ready again.
export function restartDaemon() {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(HARNESS);
    let answer = '';
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write('restart\n'));
    sock.on('data', (d) => {
      answer += d;
      if (answer.includes('\n')) {
        sock.end();
        if (answer.trim() === 'ok') resolve();
        else reject(new Error(`harness: ${answer.trim()}`));
      }
    });
    sock.on('error', reject);
  });
}

// A JSON-RPC tools/call request body for process_run.
export function processRunRequest(argv, id = 1) {
  return {
    jsonrpc: '2.0', id, method: 'tools/call',
    params: { name: 'process_run', arguments: { command: argv } },
  };
}

// POSTs `body` (a string is sent as it is) to /mcp/PROFILE with raw fetch, not the SDK.
export async function rawPost(body, { profile = 'full', key = ALICE, headers = {} } = {}) {
  const h = {
    'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream',
    ...headers,
  };
  if (key) h.Authorization = `Bearer ${key}`;
  let r;
  try {
    r = await fetch(`${URL_BASE}/mcp/${profile}`, {
      method: 'POST', headers: h, body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  } catch (e) {
    throw new Error(`POST /mcp/${profile}: ${e.message} (${e.cause?.code ?? ''} ${e.cause?.message ?? ''})`);
  }
  const t = await r.text();
  let json;
  try { json = JSON.parse(t); } catch { json = undefined; }
  return { status: r.status, json, text: t, headers: r.headers };
}
