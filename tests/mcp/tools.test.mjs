// The tools through the SDK's client, on streamable HTTP and on stdio: process_run, the file
// tools, a tool outside the profile, a denied command and paths that try to leave the sandbox.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';

import { TRANSPORTS, connect, listProcesses, text, unique, withClient } from './lib.mjs';

function assertOk(result, what) {
  assert.equal(result.isError, false, `${what} failed: ${text(result)}`);
  assert.ok(result.structuredContent, `${what}: structuredContent`);
  // The same JSON as text, for clients that read only the text.
  assert.deepEqual(JSON.parse(text(result)), result.structuredContent, `${what}: text`);
  return result.structuredContent;
}

function unknownTool(name) {
  return (err) => {
    assert.ok(err instanceof McpError, `expected an McpError, got ${err}`);
    assert.equal(err.code, ErrorCode.InvalidParams);
    assert.match(err.message, new RegExp(`Unknown tool: ${name}\\b`));
    return true;
  };
}

for (const { name: transport, skip } of TRANSPORTS) {
  describe(`tools over ${transport}`, { skip }, () => {
    let dev;
    before(async () => { dev = await connect({ transport, profile: 'developer' }); });
    after(async () => { await dev?.close(); });

    test('process_run: echo prints to stdout and exits 0', async () => {
      const word = unique('hello');
      const r = await dev.client.callTool({ name: 'process_run', arguments: { command: ['echo', word] } });
      const s = assertOk(r, 'process_run echo');
      assert.equal(s.stdout, `${word}\n`);
      assert.equal(s.stderr, '');
      assert.equal(s.exit_code, 0);
      assert.equal(s.state, 'FINISHED');
      assert.match(s.sandbox_id, /^sbx_/);
      assert.equal(typeof s.process_id, 'number');
    });

    test('process_run: a string command runs under sh -c, with stdin', async () => {
      const r = await dev.client.callTool({
        name: 'process_run', arguments: { command: 'wc -c', stdin: 'twelve bytes' },
      });
      const s = assertOk(r, 'process_run wc -c');
      assert.equal(s.stdout.trim(), '12');
    });

    test('process_run: a non-zero exit is an error result with its exit code', async () => {
      const r = await dev.client.callTool({
        name: 'process_run', arguments: { command: ['sh', '-c', 'echo out; echo err >&2; exit 3'] },
      });
      assert.equal(r.isError, true);
      assert.equal(r.structuredContent?.exit_code, 3);
      assert.equal(r.structuredContent.stdout, 'out\n');
      assert.equal(r.structuredContent.stderr, 'err\n');
      assert.match(text(r), /status 3/);
    });

    test('process_run: progress notifications arrive while a command runs', async () => {
      const progress = [];
      const r = await dev.client.callTool(
        { name: 'process_run', arguments: { command: ['sh', '-c', 'sleep 2.5; echo done'] } },
        undefined, { onprogress: (p) => progress.push(p) });
      const s = assertOk(r, 'process_run sleep');
      assert.equal(s.stdout, 'done\n');
      assert.ok(progress.length >= 1, 'no progress notification');
      assert.match(progress[0].message ?? '', /running/);
      assert.equal(typeof progress[0].progress, 'number');
    });

    test('file tools: mkdir, write, read back, list, remove', async () => {
      const dir = `/tmp/${unique('e2e')}`;
      const call = (name, args) => dev.client.callTool({ name, arguments: args });

      assertOk(await call('file_mkdir', { path: `${dir}/sub` }), 'file_mkdir');
      // An existing directory is fine.
      assertOk(await call('file_mkdir', { path: `${dir}/sub` }), 'file_mkdir again');

      const content = 'hello, sandbox ✓\nsecond line\n';
      const w = assertOk(await call('file_write', { path: `${dir}/sub/a.txt`, content }), 'file_write');
      assert.equal(w.size, Buffer.byteLength(content));

      const rd = assertOk(await call('file_read', { path: `${dir}/sub/a.txt` }), 'file_read');
      assert.equal(rd.content, content);
      assert.equal(rd.encoding, 'utf-8');
      assert.equal(rd.size, Buffer.byteLength(content));
      assert.equal(rd.truncated, false);

      // Bytes that are not UTF-8 go both ways as base64.
      const bin = Buffer.from([0, 0xff, 0xfe, 0x80, 65]);
      assertOk(await call('file_write', {
        path: `${dir}/sub/b.bin`, content: bin.toString('base64'), encoding: 'base64',
      }), 'file_write base64');
      const rb = assertOk(await call('file_read', { path: `${dir}/sub/b.bin` }), 'file_read base64');
      assert.equal(rb.encoding, 'base64');
      assert.deepEqual(Buffer.from(rb.content, 'base64'), bin);

      // A process in the same sandbox sees the file the tool wrote.
      const cat = assertOk(await call('process_run', { command: ['cat', `${dir}/sub/a.txt`] }), 'cat');
      assert.equal(cat.stdout, content);

      const ls = assertOk(await call('file_list', { path: `${dir}/sub` }), 'file_list');
      const entries = Object.fromEntries(ls.entries.map((e) => [e.name, e]));
      assert.deepEqual(Object.keys(entries).sort(), ['a.txt', 'b.bin']);
      assert.equal(entries['a.txt'].type, 'file');
      assert.equal(entries['a.txt'].size, Buffer.byteLength(content));
      const top = assertOk(await call('file_list', { path: dir }), 'file_list dir');
      assert.deepEqual(top.entries.map((e) => [e.name, e.type]), [['sub', 'directory']]);

      const rm = assertOk(await call('file_remove', { path: `${dir}/sub/a.txt` }), 'file_remove');
      assert.equal(rm.removed, true);
      const gone = await call('file_read', { path: `${dir}/sub/a.txt` });
      assert.equal(gone.isError, true, 'a removed file cannot be read');

      // A directory with contents goes only with recursive.
      const notEmpty = await call('file_remove', { path: dir });
      assert.equal(notEmpty.isError, true, 'file_remove of a non-empty directory without recursive');
      assertOk(await call('file_remove', { path: dir, recursive: true }), 'file_remove recursive');
      const after = await call('file_list', { path: dir });
      assert.equal(after.isError, true, 'the removed directory cannot be listed');
    });

    test('a tool outside the profile is an unknown tool (-32602)', async () => {
      await assert.rejects(
        dev.client.callTool({ name: 'sandbox_create', arguments: {} }), unknownTool('sandbox_create'));
      await assert.rejects(
        dev.client.callTool({ name: 'process_start', arguments: { command: ['true'] } }),
        unknownTool('process_start'));
      await withClient({ transport, profile: 'executor' }, async (ex) => {
        await assert.rejects(
          ex.client.callTool({ name: 'file_read', arguments: { path: '/etc/hostname' } }),
          unknownTool('file_read'));
        await assert.rejects(
          ex.client.callTool({ name: 'no_such_tool', arguments: {} }), unknownTool('no_such_tool'));
      });
    });

    test('a denied command is an error result that names the policy, and nothing runs', async () => {
      const marker = unique('denied');
      const r = await dev.client.callTool({
        name: 'process_run', arguments: { command: ['forbidden', marker] },
      });
      assert.equal(r.isError, true);
      assert.match(text(r), /polic/i);
      assert.match(text(r), new RegExp(marker));
      // No process was recorded for it in the key's sandbox.
      const probe = assertOk(await dev.client.callTool({
        name: 'process_run', arguments: { command: ['true'] },
      }), 'process_run true');
      const procs = await listProcesses(probe.sandbox_id);
      assert.ok(!procs.some((p) => p.argv.includes(marker)), 'the denied command was recorded as a process');
    });

    test('a path escaping the sandbox is refused and touches nothing on the host', async () => {
      const r = await dev.client.callTool({ name: 'file_read', arguments: { path: '../../etc/passwd' } });
      assert.equal(r.isError, true, `file_read ../../etc/passwd: ${text(r)}`);
      assert.doesNotMatch(text(r), /root:/);

      const name = unique('sbx-mcp-escape');
      const hostPath = `/tmp/${name}`;
      assert.equal(fs.existsSync(hostPath), false);
      await dev.client.callTool({
        name: 'file_write', arguments: { path: `/../../../tmp/${name}`, content: 'escaped' },
      });
      assert.equal(fs.existsSync(hostPath), false, `${hostPath} was created on the host`);
    });
  });
}
