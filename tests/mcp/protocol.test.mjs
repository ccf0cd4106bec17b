// initialize and tools/list through the SDK's client, on streamable HTTP and on stdio.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';

import { PROFILE_TOOLS, TRANSPORTS, withClient } from './lib.mjs';

const READ_ONLY = new Set(['file_read', 'file_list']);
const WRITERS = new Set(['process_run', 'file_write', 'file_mkdir', 'file_remove', 'sandbox_create',
  'sandbox_delete', 'sandbox_pause', 'sandbox_resume', 'process_start', 'process_signal']);
const DESTRUCTIVE = new Set(['process_run', 'file_remove']);

for (const { name: transport, skip } of TRANSPORTS) {
  describe(`protocol over ${transport}`, { skip }, () => {
    test('initialize negotiates the protocol version and names the server', async () => {
      await withClient({ transport, profile: 'developer', listTools: false }, async (c) => {
        // The SDK asks for its newest revision, which the server serves.
        assert.equal(c.protocolVersion(), LATEST_PROTOCOL_VERSION);
        assert.ok(SUPPORTED_PROTOCOL_VERSIONS.includes(c.protocolVersion()));
        const info = c.client.getServerVersion();
        assert.equal(info.name, 'sandboxd');
        assert.equal(typeof info.version, 'string');
        assert.ok(info.version.length > 0);
        assert.ok(c.client.getServerCapabilities().tools, 'the server offers tools');
        assert.match(c.client.getInstructions() ?? '', /sandbox/);
        await c.client.ping();
      });
    });

    for (const [profile, expected] of Object.entries(PROFILE_TOOLS)) {
      test(`tools/list on ${profile} gives exactly its tools, with schemas and annotations`, async () => {
        await withClient({ transport, profile, listTools: false }, async (c) => {
          const { tools } = await c.client.listTools();
          const names = tools.map((t) => t.name);
          assert.equal(names.length, new Set(names).size, `duplicate tools: ${names}`);
          assert.deepEqual(new Set(names), new Set(expected));
          for (const t of tools) {
            assert.equal(t.inputSchema?.type, 'object', `${t.name}: inputSchema`);
            assert.equal(typeof t.inputSchema.properties, 'object', `${t.name}: inputSchema.properties`);
            assert.equal(t.outputSchema?.type, 'object', `${t.name}: outputSchema`);
            assert.equal(typeof t.outputSchema.properties, 'object', `${t.name}: outputSchema.properties`);
            assert.ok(t.annotations, `${t.name}: annotations`);
            if (READ_ONLY.has(t.name)) assert.equal(t.annotations.readOnlyHint, true, `${t.name}: readOnlyHint`);
            if (WRITERS.has(t.name)) assert.equal(t.annotations.readOnlyHint, false, `${t.name}: readOnlyHint`);
            if (DESTRUCTIVE.has(t.name)) {
              assert.equal(t.annotations.destructiveHint, true, `${t.name}: destructiveHint`);
            }
            assert.equal(t.annotations.openWorldHint, false, `${t.name}: openWorldHint`);
          }
          const run = tools.find((t) => t.name === 'process_run');
          assert.deepEqual(run.inputSchema.required, ['command']);
        });
      });
    }
  });
}
