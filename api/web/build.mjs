// Builds the web page into a directory the daemon serves as static files (its `web_root`):
//
//   node build.mjs --out DIR
//
// DIR/index.html (served for / and every /ui/... path) and DIR/assets/* (content-hashed names,
// referenced by absolute /assets/... URLs). The terminal (xterm.js) and the Markdown renderer
// are split into chunks loaded when first needed.
import * as esbuild from 'esbuild';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const at = args.indexOf('--out');
if (at < 0 || !args[at + 1]) {
  console.error('usage: node build.mjs --out DIR');
  process.exit(2);
}
const out = path.resolve(args[at + 1]);
const assets = path.join(out, 'assets');

// Only what this build writes is replaced: DIR/index.html and DIR/assets.
await rm(assets, { recursive: true, force: true });
await rm(path.join(out, 'index.html'), { force: true });
await mkdir(assets, { recursive: true });

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: 'src/main.jsx', style: 'src/style.css' },
  bundle: true,
  splitting: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  outdir: assets,
  entryNames: '[name]-[hash]',
  chunkNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  minify: true,
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
});

const outputs = Object.entries(result.metafile.outputs);
const entry = (name, ext) => {
  const found = outputs.find(([file, o]) => o.entryPoint && path.basename(file).startsWith(name + '-') && file.endsWith(ext));
  if (!found) throw new Error(`no output for ${name}${ext}`);
  return '/assets/' + path.basename(found[0]);
};
const template = await readFile(path.join(here, 'index.html'), 'utf8');
const html = template
  .replace('%STYLE%', entry('style', '.css'))
  .replace('%SCRIPT%', entry('app', '.js'));
await writeFile(path.join(out, 'index.html'), html);

let total = 0;
for (const f of await readdir(assets)) {
  const o = result.metafile.outputs[path.relative(here, path.join(assets, f))];
  if (o) total += o.bytes;
}
const app = result.metafile.outputs[path.relative(here, path.join(out, entry('app', '.js')))];
console.log(`web: ${out} (app ${app ? (app.bytes / 1024).toFixed(1) : '?'} KiB, all assets ${(total / 1024).toFixed(1)} KiB)`);
