// The server keeps no session: a client connected before a daemon restart goes on after it.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { auditAfter, lastAuditId, restartDaemon, text, unique, withClient } from './lib.mjs';

describe('daemon restart over http', () => {
  test('one connected client calls before and after a daemon restart', async () => {
    const clientName = unique('e2e-restart-client');
    await withClient({ profile: 'developer', name: clientName, version: '2.0' }, async (c) => {
      const sessionId = c.transport.sessionId;
      assert.ok(sessionId, 'the server handed out a session id');
      const first = await c.client.callTool({ name: 'process_run', arguments: { command: ['echo', 'before'] } });
      assert.equal(first.isError, false, text(first));
      assert.equal(first.structuredContent.stdout, 'before\n');

      await restartDaemon();
      const mark = await lastAuditId();

      // The same client, the same session id, no new initialize.
      await c.client.ping();
      const second = await c.client.callTool({ name: 'process_run', arguments: { command: ['echo', 'after'] } });
      assert.equal(second.isError, false, text(second));
      assert.equal(second.structuredContent.stdout, 'after\n');
      const file = `/tmp/${unique('restart')}.txt`;
      const w = await c.client.callTool({ name: 'file_write', arguments: { path: file, content: 'x' } });
      assert.equal(w.isError, false, text(w));
      assert.equal(c.transport.sessionId, sessionId);

      // The restarted daemon still knows the client's name from the session id.
      const calls = (await auditAfter(mark)).filter((a) => a.action === 'mcp.tool_call');
      assert.equal(calls.length, 2);
      for (const a of calls) assert.equal(a.details.client, `${clientName} 2.0 via mcp/developer`);
    });
  });
});
