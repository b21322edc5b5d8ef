#!/usr/bin/env node
// Builds the `ugro` CLI into dist/ (run by `npm ci` through the `prepare` script, and by
// `npm run build`): one ESM bundle with code splitting, so `ugro --help` loads the entry chunk
// alone and each verb loads only the chunks it imports when it runs.
//
// - Everything is bundled, node_modules included (commander, yaml, zod, chokidar), except ssh2:
//   it loads native addons (.node files) by path, which a bundle cannot carry. Bundling the
//   rest starts faster than loading packages from node_modules, file by file (measured with
//   packages external instead, 25 runs, medians: --help 164 vs 181 ms, get jobs on 100 jobs 176
//   vs 204 ms, describe job 327 vs 457 ms; node -e 0 took 122 ms on that machine).
// - Output is flat in dist/ (dist/ugro.js and dist/chunk-<hash>.js), one level below the
//   repository root: code that finds scripts/ from import.meta.url works from the sources and
//   from dist/ alike.
// - Files are replaced one by one, atomically (temporary name, then rename), and chunks are
//   named by content, so an `ugro` already running keeps finding the chunks it loads later;
//   chunks no build refers to any more are removed after an hour.
// - dist/manifest.json (written last) records the mtime of every source file the bundle was
//   built from, of package-lock.json and of this script; bin/ugro.mjs runs dist/ only while they
//   are unchanged, and the sources otherwise.
// - The build fails, leaving dist/ as it was, if the entry chunk imports (statically) any
//   package but commander, or if code imports a package dynamically (see controller/cli/yaml.ts).
//
// Usage: node scripts/build.mjs [--quiet] [--outdir DIR]   (DIR: default <root>/dist; for tests)
import { mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const outdir = resolve(arg('--outdir') ?? join(root, 'dist'));
const quiet = process.argv.includes('--quiet');
const STALE_CHUNK_MS = 60 * 60 * 1000;

function fail(message) {
  console.error(`build: ${message}`);
  process.exit(1);
}

// Commander requires node:child_process at load time (about 4 ms) for executable subcommands,
// which ugro does not use: give it a stand-in that loads the real module on first use.
const lazyChildProcess = {
  name: 'lazy-child-process',
  setup(b) {
    b.onResolve({ filter: /^(node:)?child_process$/ }, (args) =>
      args.importer.includes('/node_modules/commander/')
        ? { path: 'child_process', namespace: 'ugro-lazy' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'ugro-lazy' }, () => ({
      contents:
        'let real;\n' +
        "module.exports = new Proxy({}, { get: (_, key) => (real ??= require('node:child_process'))[key] });\n",
      loader: 'js',
    }));
  },
};

const startedAt = Date.now();
const result = await build({
  absWorkingDir: root,
  entryPoints: { ugro: 'controller/cli/main.ts' },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['ssh2'],
  // Bundled CommonJS packages (commander) call require(); give the ESM chunks one.
  banner: {
    js:
      "import { createRequire as __ugroRequire } from 'node:module';\n" +
      'const require = __ugroRequire(import.meta.url);',
  },
  chunkNames: 'chunk-[hash]',
  plugins: [lazyChildProcess],
  sourcemap: 'linked',
  metafile: true,
  write: false,
  legalComments: 'none',
  logLevel: 'warning',
}).catch(() => fail('esbuild failed (see above); dist/ left as it was'));

const { inputs, outputs } = result.metafile;

// `await import('pkg')` of a bundled CommonJS package keeps only its default export in a split
// bundle (its named exports are undefined there, while they work from the sources): refuse it.
const dynamic = Object.entries(inputs).flatMap(([file, i]) =>
  i.imports
    .filter((x) => x.kind === 'dynamic-import' && !x.external && !/^(\.|\/|node:)/.test(x.original ?? '.'))
    .map((x) => `${file}: import('${x.original}')`),
);
if (dynamic.length)
  fail(`dynamic import of a package (import it statically from a local module instead):\n  ${dynamic.join('\n  ')}`);

// The entry chunk and what it imports statically must not contain a package but commander.
const entry = Object.keys(outputs).find((o) => outputs[o].entryPoint === 'controller/cli/main.ts');
const startup = new Set();
for (const stack = [entry]; stack.length; ) {
  const o = stack.pop();
  if (startup.has(o)) continue;
  startup.add(o);
  for (const i of outputs[o].imports) if (i.kind === 'import-statement' && !i.external) stack.push(i.path);
}
const heavy = [...startup]
  .flatMap((o) => Object.keys(outputs[o].inputs))
  .filter((i) => i.startsWith('node_modules/') && !i.startsWith('node_modules/commander/'));
if (heavy.length) fail(`the entry chunk loads more than commander at startup:\n  ${[...new Set(heavy)].join('\n  ')}`);

// A source edited while esbuild ran may not be in the bundle: record it as changed (-1).
// The lock file and this script count as sources too: new packages or build settings need a build.
const sources = [
  ...Object.keys(inputs).filter((f) => !f.startsWith('node_modules/') && !f.includes(':')),
  'package-lock.json',
  'scripts/build.mjs',
];
const mtime = (f) => {
  const m = statSync(join(root, f)).mtimeMs;
  return m >= startedAt && m <= Date.now() ? -1 : m;
};
const manifest = {
  entry: 'ugro.js',
  // Source files (relative to the repository root) and their mtimes: bin/ugro.mjs compares them.
  sources: Object.fromEntries(sources.map((f) => [f, mtime(f)])),
};

// Write each file atomically; the manifest last.
mkdirSync(outdir, { recursive: true });
const written = new Set(['manifest.json']);
for (const f of result.outputFiles) {
  const tmp = `${f.path}.tmp-${process.pid}`;
  writeFileSync(tmp, f.contents);
  renameSync(tmp, f.path);
  written.add(basename(f.path));
}
for (const name of readdirSync(outdir)) {
  const p = join(outdir, name);
  if (!written.has(name) && Date.now() - statSync(p).mtimeMs > STALE_CHUNK_MS) rmSync(p, { force: true });
}
writeFileSync(join(outdir, `manifest.json.tmp-${process.pid}`), `${JSON.stringify(manifest, null, 1)}\n`);
renameSync(join(outdir, `manifest.json.tmp-${process.pid}`), join(outdir, 'manifest.json'));

if (!quiet) {
  const js = Object.keys(outputs).filter((o) => o.endsWith('.js'));
  const kib = (o) => `${basename(o)} ${(outputs[o].bytes / 1024).toFixed(0)} KiB`;
  console.log(
    `build: ${relative(root, outdir) || '.'}/ in ${Date.now() - startedAt} ms, ${js.length} files; ` +
      `\`ugro --help\` loads ${[...startup].map(kib).join(', ')}`,
  );
}
