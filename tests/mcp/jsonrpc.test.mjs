// Requests no SDK would send, with raw fetch: each carries a process_run that must not run. After
// each, the audit trail shows that nothing ran, and the daemon still answers a good call.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  ALICE, URL_BASE, auditAfter, lastAuditId, processRunRequest, rawPost, unique,
} from './lib.mjs';

// Sends what `send(argv)` sends, with argv a command nobody else runs; then checks that no audit
// record after it mentions that command, and that a good tools/call still runs.
async function nothingRuns(send) {
  const marker = unique('must-not-run');
  const argv = ['echo', marker];
  const mark = await lastAuditId();
  const answer = await send(argv);

  const alive = unique('alive');
  const ok = await rawPost(processRunRequest(['echo', alive], 99));
  assert.equal(ok.status, 200, `the daemon no longer answers: ${ok.status} ${ok.text}`);
  assert.equal(ok.json?.result?.isError, false, ok.text);
  assert.equal(ok.json.result.structuredContent.stdout, `${alive}\n`);

  const records = await auditAfter(mark);
  const leaked = records.filter((a) => JSON.stringify(a).includes(marker));
  assert.deepEqual(leaked, [], 'the refused request left audit records');
  const calls = records.filter((a) => a.action === 'mcp.tool_call');
  assert.equal(calls.length, 1, `tool calls recorded: ${JSON.stringify(calls)}`);
  const started = records.filter((a) => a.action === 'process.started');
  assert.deepEqual(started.map((a) => a.details.argv), [['echo', alive]]);
  return answer;
}

function assertRpcError(r, status, code) {
  assert.equal(r.status, status, `HTTP status: ${r.status} ${r.text}`);
  assert.ok(r.json, `a JSON body: ${r.text}`);
  assert.equal(r.json.jsonrpc, '2.0');
  assert.equal(r.json.error?.code, code, r.text);
  assert.equal(typeof r.json.error.message, 'string');
  assert.equal(r.json.result, undefined);
}

describe('bad JSON-RPC over http (raw fetch)', () => {
  test('malformed JSON: 400, -32700', async () => {
    await nothingRuns(async (argv) => {
      const body = JSON.stringify(processRunRequest(argv));
      const r = await rawPost(body.slice(0, -1));
      assertRpcError(r, 400, -32700);
      assert.equal(r.json.id, null);
    });
  });

  test('a batch: 400, -32600', async () => {
    await nothingRuns(async (argv) => {
      const r = await rawPost([processRunRequest(argv, 1), processRunRequest(argv, 2)]);
      assertRpcError(r, 400, -32600);
    });
  });

  test('jsonrpc "1.0": 400, -32600', async () => {
    await nothingRuns(async (argv) => {
      const r = await rawPost({ ...processRunRequest(argv, 7), jsonrpc: '1.0' });
      assertRpcError(r, 400, -32600);
      assert.equal(r.json.id, 7);
    });
  });

  test('no jsonrpc member: 400, -32600', async () => {
    await nothingRuns(async (argv) => {
      const { jsonrpc, ...req } = processRunRequest(argv, 8);
      const r = await rawPost(req);
      assertRpcError(r, 400, -32600);
    });
  });

  test('an unknown method: -32601', async () => {
    await nothingRuns(async (argv) => {
      const req = processRunRequest(argv, 'u1');
      const r = await rawPost({ ...req, method: 'tools/execute' });
      assert.ok(r.json, r.text);
      assert.equal(r.json.id, 'u1');
      assert.equal(r.json.error?.code, -32601, r.text);
    });
  });

  test('an oversized body (2 MiB): 413', async () => {
    await nothingRuns(async (argv) => {
      const req = processRunRequest(['sh', '-c', `echo ${argv[1]}; wc -c`]);
      req.params.arguments.stdin = 'x'.repeat(2 << 20);
      const r = await rawPost(req);
      assert.equal(r.status, 413, r.text.slice(0, 300));
    });
  });

  test('a 10000-deep nested array: 400', async () => {
    const deep = '['.repeat(10000) + ']'.repeat(10000);
    const r = await rawPost(deep);
    assertRpcError(r, 400, -32600);
    await nothingRuns(async (argv) => {
      const body = JSON.stringify(processRunRequest(argv)).replace(
        '"arguments":{', `"arguments":{"env":${deep},`);
      const r2 = await rawPost(body);
      assertRpcError(r2, 400, -32600);
    });
  });

  test('an Origin other than the daemon\'s: 403; its own: 200', async () => {
    await nothingRuns(async (argv) => {
      for (const origin of ['http://evil.example', 'null', `${URL_BASE}.evil.example`,
        URL_BASE.replace(/:\d+$/, ':1')]) {
        const r = await rawPost(processRunRequest(argv), { headers: { Origin: origin } });
        assert.equal(r.status, 403, `Origin ${origin}: ${r.status} ${r.text}`);
      }
    });
    const own = await rawPost({ jsonrpc: '2.0', id: 1, method: 'ping' }, { headers: { Origin: URL_BASE } });
    assert.equal(own.status, 200, own.text);
    assert.deepEqual(own.json.result, {});
  });

  test('no key: 401; a wrong key: 401', async () => {
    await nothingRuns(async (argv) => {
      const r = await rawPost(processRunRequest(argv), { key: null });
      assert.equal(r.status, 401, r.text);
      const wrong = await rawPost(processRunRequest(argv), { key: `${ALICE}x` });
      assert.equal(wrong.status, 401, wrong.text);
    });
  });

  test('GET and DELETE: 405', async () => {
    for (const method of ['GET', 'DELETE']) {
      const r = await fetch(`${URL_BASE}/mcp/full`, {
        method,
        headers: { Authorization: `Bearer ${ALICE}`, Accept: 'text/event-stream' },
      });
      await r.arrayBuffer();
      assert.equal(r.status, 405, method);
    }
  });

  test('initialize answers the client\'s version when served, else the newest', async () => {
    const init = (protocolVersion) => rawPost({
      jsonrpc: '2.0', id: 1, method: 'initialize',
      params: { protocolVersion, capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
    });
    for (const v of ['2025-11-25', '2025-06-18', '2025-03-26']) {
      const r = await init(v);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.result.protocolVersion, v);
      assert.ok(r.headers.get('mcp-session-id'));
    }
    const old = await init('1999-01-01');
    assert.equal(old.json.result.protocolVersion, '2025-11-25');
  });

  test('a session id the server did not make: 404', async () => {
    const r = await rawPost({ jsonrpc: '2.0', id: 3, method: 'tools/list' },
      { headers: { 'Mcp-Session-Id': 'forged-session' } });
    assert.equal(r.status, 404, r.text);
  });
});
