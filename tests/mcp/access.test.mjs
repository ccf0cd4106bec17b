// Who may do what: a key's mcp_profiles, tenancy between keys, and the audit record of a call.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ErrorCode } from '@modelcontextprotocol/sdk/types.js';

import {
  ALICE, BOB, TRANSPORTS, auditAfter, connect, lastAuditId, listProcesses, text, unique,
  withClient,
} from './lib.mjs';

describe('mcp_profiles over http', () => {
  test("bob's key (mcp_profiles [executor]) gets 403 on /mcp/full and /mcp/developer", async () => {
    for (const profile of ['full', 'developer']) {
      await assert.rejects(connect({ profile, key: BOB }), (err) => {
        assert.ok(err instanceof StreamableHTTPError, `expected a StreamableHTTPError, got ${err}`);
        assert.equal(err.code, 403);
        assert.match(err.message, /bob/);
        return true;
      }, `/mcp/${profile}`);
    }
  });

  test("bob's key works on /mcp/executor", async () => {
    await withClient({ profile: 'executor', key: BOB }, async (c) => {
      const r = await c.client.callTool({ name: 'process_run', arguments: { command: ['echo', 'bob'] } });
      assert.equal(r.isError, false, text(r));
      assert.equal(r.structuredContent.stdout, 'bob\n');
    });
  });
});

describe('mcp_profiles over stdio', { skip: TRANSPORTS[1].skip }, () => {
  test("bob's key cannot initialize `sandboxd mcp --profile full`, and the client is told at once", async () => {
    await assert.rejects(connect({ transport: 'stdio', profile: 'full', key: BOB, connectTimeout: 5000 }),
      (err) => {
        assert.notEqual(err.code, ErrorCode.RequestTimeout,
          `the client got no answer to initialize: ${err.message}`);
        assert.match(err.message, /bob|profile/, err.message);
        return true;
      });
  });
});

for (const { name: transport, skip } of TRANSPORTS) {
  describe(`tenancy and audit over ${transport}`, { skip }, () => {
    test("bob cannot act in alice's sandbox", async () => {
      const aliceBox = await withClient({ transport, profile: 'executor', key: ALICE }, async (c) => {
        const r = await c.client.callTool({ name: 'process_run', arguments: { command: ['true'] } });
        assert.equal(r.isError, false, text(r));
        return r.structuredContent.sandbox_id;
      });
      const before = (await listProcesses(aliceBox)).length;
      const marker = unique('intruder');
      await withClient({ transport, profile: 'executor', key: BOB }, async (c) => {
        const r = await c.client.callTool({
          name: 'process_run', arguments: { command: ['echo', marker], sandbox_id: aliceBox },
        });
        assert.equal(r.isError, true, `bob ran in alice's sandbox: ${text(r)}`);
        assert.match(text(r), /not found/i);
        // Bob's own default sandbox is another one.
        const own = await c.client.callTool({ name: 'process_run', arguments: { command: ['true'] } });
        assert.equal(own.isError, false, text(own));
        assert.notEqual(own.structuredContent.sandbox_id, aliceBox);
      });
      const procs = await listProcesses(aliceBox);
      assert.equal(procs.length, before);
      assert.ok(!procs.some((p) => p.argv.includes(marker)));
    });

    test('the audit record of a tool call names the client, the profile and the key', async () => {
      const clientName = unique('e2e-audit-client');
      const mark = await lastAuditId();
      const word = unique('audited');
      const sandbox = await withClient(
        { transport, profile: 'developer', name: clientName, version: '9.8.7' }, async (c) => {
          const r = await c.client.callTool({ name: 'process_run', arguments: { command: ['echo', word] } });
          assert.equal(r.isError, false, text(r));
          return r.structuredContent.sandbox_id;
        });
      const records = await auditAfter(mark);
      const calls = records.filter((a) => a.action === 'mcp.tool_call' && a.details?.client?.startsWith(clientName));
      assert.equal(calls.length, 1, JSON.stringify(records, null, 1));
      const [call] = calls;
      assert.equal(call.actor, 'alice');
      assert.equal(call.details.client, `${clientName} 9.8.7 via mcp/developer`);
      assert.equal(call.details.tool, 'process_run');
      assert.equal(call.details.profile, 'developer');
      assert.equal(call.details.ok, true);
      assert.equal(call.run_id, sandbox);
      // The process it started is recorded under the same key and client.
      const started = records.find((a) => a.action === 'process.started' && a.details?.argv?.includes(word));
      assert.ok(started, 'process.started');
      assert.equal(started.actor, 'alice');
      assert.equal(started.details.client, call.details.client);
    });

    test("the audit names bob's key for bob's calls", async () => {
      const clientName = unique('e2e-bob-client');
      const mark = await lastAuditId();
      await withClient({ transport, profile: 'executor', key: BOB, name: clientName, version: '1' }, async (c) => {
        const r = await c.client.callTool({ name: 'process_run', arguments: { command: ['echo', 'x'] } });
        assert.equal(r.isError, false, text(r));
      });
      const calls = (await auditAfter(mark)).filter(
        (a) => a.action === 'mcp.tool_call' && a.details?.client?.startsWith(clientName));
      assert.equal(calls.length, 1);
      assert.equal(calls[0].actor, 'bob');
      assert.equal(calls[0].details.client, `${clientName} 1 via mcp/executor`);
      assert.equal(calls[0].details.tool, 'process_run');
    });
  });
}
