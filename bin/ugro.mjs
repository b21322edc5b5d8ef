#!/usr/bin/env node
// The `ugro` command. Runs the compiled CLI in dist/ (built by `npm ci` through `prepare`, or by
// `npm run build`) while dist/ matches the sources it was built from; otherwise (no dist/, or a
// source file edited since) it runs the TypeScript sources through tsx, slower, and says so.
// UGRO_FROM_SOURCE=1 always runs the sources.
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));

/**
 * undefined when dist/ is usable; otherwise why not ('' when the sources were asked for). One stat
 * per source file the bundle was built from: well under a millisecond.
 */
function staleReason() {
  if (process.env.UGRO_FROM_SOURCE === '1') return '';
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(`${root}dist/manifest.json`, 'utf8'));
  } catch {
    return 'dist/ is not built';
  }
  for (const [file, mtimeMs] of Object.entries(manifest.sources)) {
    const st = statSync(root + file, { throwIfNoEntry: false });
    if (st?.mtimeMs !== mtimeMs) return `${file} changed since dist/ was built`;
  }
  return undefined;
}

const why = staleReason();
let main;
if (why === undefined) {
  ({ main } = await import('../dist/ugro.js'));
} else {
  if (why) process.stderr.write(`ugro: ${why}; running the sources through tsx (run \`npm run build\`)\n`);
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../controller/cli/main.ts'));
}
process.exitCode = await main(process.argv);
