import { Sandboxd } from '@sandboxd/sdk';

const sbx = new Sandboxd(); // SANDBOXD_URL, SANDBOXD_API_KEY
const box = await sbx.sandboxes.create({ limits: { timeout_s: 600 } });
await box.files.write('/tmp/hello.txt', 'hello from a sandbox\n');
const r = await box.run(['cat', '/tmp/hello.txt']);
console.log(`exit ${r.exitCode}: ${r.stdout}`);
const ls = await box.start(['ls', '/']);
for await (const chunk of ls.output()) process.stdout.write(chunk.data);
await box.delete();
