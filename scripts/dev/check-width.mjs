#!/usr/bin/env node
// Lists every line over 120 columns in the git-tracked *.ts and *.mjs files; exit 1 if there is one.
//
// Why: Biome formats to 120 columns (biome.json lineWidth) but cannot break a long string literal,
// template literal or comment, so such lines pass `biome check` while staying too wide. Split them
// by concatenation ('…' + on the next line) and wrap the comments. Part of `npm run lint`.
// Dependency-free on purpose: plain Node and git.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

const LIMIT = 120;

const files = execFileSync('git', ['ls-files', '-z', '--', '*.ts', '*.mjs'], { encoding: 'utf8' })
  .split('\0')
  .filter((f) => f && existsSync(f)); // a tracked file deleted in the working tree is skipped

let long = 0;
for (const file of files) {
  const lines = readFileSync(file, 'utf8').split('\n');
  lines.forEach((line, i) => {
    const columns = [...line.replace(/\r$/, '')].length; // code points, not UTF-16 units or bytes
    if (columns > LIMIT) {
      console.log(`${file}:${i + 1}: ${columns} columns (limit ${LIMIT})`);
      long++;
    }
  });
}
if (long) console.error(`${long} line(s) over ${LIMIT} columns: split long strings, wrap long comments`);
process.exit(long ? 1 : 0);
