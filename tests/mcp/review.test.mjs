// A command the policy sends to review (tests/mcp/commands.yaml: "needs-review *" and
// "printf *"): process_run waits mcp.review_wait_s (tests/mcp/config.yaml) for a reviewer, then
// reports the pending process; approved during the wait, the command runs and its result comes
// back, with progress notifications meanwhile.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  REVIEWER, REVIEW_WAIT_S, TRANSPORTS, listProcesses, rest, text, unique, withClient,
} from './lib.mjs';

for (const { name: transport, skip } of TRANSPORTS) {
  describe(`review over ${transport}`, { skip }, () => {
    test('a command held for review is reported pending after review_wait_s, with how to approve it', async () => {
      await withClient({ transport, profile: 'executor' }, async (c) => {
        const marker = unique('review');
        const started = Date.now();
        const r = await c.client.callTool({
          name: 'process_run', arguments: { command: ['needs-review', marker] },
        });
        const waited = (Date.now() - started) / 1000;
        assert.equal(r.isError, true, text(r));
        assert.ok(waited >= REVIEW_WAIT_S - 0.5, `answered after ${waited} s, before review_wait_s`);
        assert.ok(waited < REVIEW_WAIT_S + 10, `answered only after ${waited} s`);
        const m = /process (\d+) in sandbox (sbx_\w+) waits for a reviewer/.exec(text(r));
        assert.ok(m, `the message names the pending process: ${text(r)}`);
        const [, pid, sandbox] = m;
        assert.ok(text(r).includes(`sandboxctl sandbox approve ${sandbox} ${pid}`), text(r));
        assert.ok(text(r).includes(`/v1/sandboxes/${sandbox}/processes/${pid}:approve`), text(r));
        assert.ok(text(r).includes(marker), 'the message shows the command');

        const procs = await listProcesses(sandbox);
        const p = procs.find((x) => String(x.id) === pid);
        assert.ok(p, `process ${pid} is listed`);
        assert.equal(p.state, 'AWAITING_REVIEW');
        assert.deepEqual(p.argv, ['needs-review', marker]);
        // Leave nothing pending behind.
        const rej = await rest('POST', `/v1/sandboxes/${sandbox}/processes/${pid}:reject`, {
          key: REVIEWER, body: { reason: 'test done' },
        });
        assert.equal(rej.status, 200, rej.text);
      });
    });

    test('a reviewer approving during the wait lets the command run; progress arrives meanwhile', async () => {
      await withClient({ transport, profile: 'executor' }, async (c) => {
        const marker = unique('approved');
        const progress = [];
        let approval;
        const approve = async () => {
          // The key's sandbox holds the pending printf (the reviewer approves it over REST).
          const sandboxes = await rest('GET', '/v1/sandboxes?label=mcp%3Ddefault&state=RUNNING');
          assert.equal(sandboxes.status, 200, sandboxes.text);
          for (const s of sandboxes.json.sandboxes) {
            const pending = (await listProcesses(s.id)).find(
              (p) => p.state === 'AWAITING_REVIEW' && p.argv.includes(marker));
            if (!pending) continue;
            const r = await rest('POST', `/v1/sandboxes/${s.id}/processes/${pending.id}:approve`, {
              key: REVIEWER,
            });
            assert.equal(r.status, 200, r.text);
            return r.json;
          }
          throw new Error('no pending process to approve');
        };
        const started = Date.now();
        const r = await c.client.callTool(
          { name: 'process_run', arguments: { command: ['printf', '%s-ok', marker] } },
          undefined,
          {
            onprogress: (p) => {
              progress.push(p);
              approval ??= approve();
            },
          });
        const waited = (Date.now() - started) / 1000;
        assert.ok(progress.length >= 1, 'no progress notification before the answer');
        assert.match(progress[0].message ?? '', /waits for a reviewer/);
        await approval;
        assert.equal(r.isError, false, text(r));
        assert.equal(r.structuredContent.stdout, `${marker}-ok`);
        assert.equal(r.structuredContent.exit_code, 0);
        assert.ok(waited < REVIEW_WAIT_S + 5, `answered after ${waited} s`);
        const procs = await listProcesses(r.structuredContent.sandbox_id);
        const p = procs.find((x) => x.id === r.structuredContent.process_id);
        assert.equal(p.approval?.approved_by, 'rev');
      });
    });
  });
}
