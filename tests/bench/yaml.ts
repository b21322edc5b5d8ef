/**
 * What the YAML guard (config/yaml-guard.ts) costs, and what it saves. Each text is parsed the way
 * UGRO parsed it before the guard (the yaml package's parseDocument, then toJS with maxAliasCount
 * 100) and the way it does now (YamlSource.parse: the guard drives the package's lexer and CST
 * parser token by token, then composes and builds the value): median wall time in ms over
 * BENCH_YAML_RUNS runs (default 200 for small texts, 5 for 1 MiB ones) after warm-up runs.
 * Then the hostile shapes: how long the guard takes to refuse each; the package alone aborts on
 * the deep ones, takes 99 s on the mapping and 14 s on the `[]`s (not rerun here). No lab needed.
 *
 *   node --import tsx tests/bench/yaml.ts      (or: npm run bench:yaml)
 */
import { parseDocument } from 'yaml';
import { YamlSource } from '../../config/parse.ts';
import { parseYamlDocument } from '../../config/yaml-guard.ts';
import { percentile, table } from './lib.ts';

const MIB = 1024 * 1024;
const RUNS = Number(process.env.BENCH_YAML_RUNS) || 0;

/** A job file as a person writes one (the README's example, with a few more fields). */
const JOB = `apiVersion: ugro.dev/v1alpha1
kind: TrainingJob
metadata:
  name: llama-ft
  labels: { team: nlp, ugro.dev/launched-by: hand }
  annotations: { ugro.dev/owner: alice }
spec:
  script: llama/train.py   # in the project's scripts/
  args: ["--model", "llama-7b", "--epochs", "3", "--lr", "0.0001", "--batch-size", "8"]
  env: { NCCL_DEBUG: INFO, HF_HOME: /data/hf }
  nodes: { min: 2, max: 3 }
  nprocPerNode: gpu
  resources: { minGpuMemoryGiB: 8 }
  priority: high
  restartPolicy: { maxRestarts: 2, backoffSeconds: 10 }
  checkpoint: { dir: llama-ft, resumeFrom: step-400 }
`;

/** 1 MiB of realistic YAML: a job whose args are 20 000 quoted paths. */
function bigJob(): string {
  const [head, tail] = JOB.split(/ {2}args: .*\n/);
  const item = (i: number) => `    - "/data/shards/train-${String(i).padStart(6, '0')}.tar"\n`;
  const n = Math.floor((MIB - JOB.length) / item(0).length);
  return `${head}  args:\n${Array.from({ length: n }, (_, i) => item(i)).join('')}${tail}`;
}

/** 1 MiB where most bytes are text: a block scalar and comments. */
function bigText(): string {
  const line = 'the quick brown fox jumps over the lazy dog, again and again and again\n';
  return `${JOB}  # notes follow\nx: |\n${`    ${line}`.repeat(Math.floor((MIB - JOB.length) / (line.length + 4)))}`;
}

/** Median ms of each function, run alternately (neither gets the warmer JIT), after warm-up runs. */
function medians(fns: (() => unknown)[], runs: number): number[] {
  for (let i = 0; i < Math.min(runs, 20); i++) for (const fn of fns) fn();
  const t: number[][] = fns.map(() => []);
  for (let i = 0; i < runs; i++)
    fns.forEach((fn, k) => {
      const s = performance.now();
      fn();
      t[k].push(performance.now() - s);
    });
  return t.map((xs) =>
    percentile(
      xs.sort((a, b) => a - b),
      0.5,
    ),
  );
}

const before = (text: string) =>
  parseDocument(text, { prettyErrors: false, uniqueKeys: true }).toJS({ maxAliasCount: 100 });
const now = (text: string) => YamlSource.parse(text);
const fmt = (ms: number) => (ms < 1 ? ms.toFixed(3) : ms < 100 ? ms.toFixed(1) : ms.toFixed(0));

const rows: (string | number)[][] = [];
for (const [name, text, runs] of [
  ['job file', JOB, RUNS || 2000],
  ['1 MiB job (20k args)', bigJob(), RUNS || 5],
  ['1 MiB text (block scalar)', bigText(), RUNS || 5],
] as const) {
  const [b, n] = medians([() => before(text), () => now(text)], runs);
  rows.push([name, `${(text.length / 1024).toFixed(1)} KiB`, fmt(b), fmt(n), `${(((n - b) / b) * 100).toFixed(0)}%`]);
}
console.log(table(['text', 'size', 'before (ms)', 'guarded (ms)', 'cost'], rows));

const keys = Array.from({ length: 100_000 }, (_, i) => `k${i}: ${i}`).join('\n');
const laughs = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
for (const [p, c] of ['ab', 'bc', 'cd', 'de', 'ef']) laughs.push(`${c}: &${c} [${Array(10).fill(`*${p}`).join(', ')}]`);
const hostile: [string, string][] = [
  ["'[' x3000 (6 KB, issue 15)", `${'['.repeat(3000)}${']'.repeat(3000)}`],
  ["'- ' x3000 (6 KB, issue 15)", `${'- '.repeat(3000)}x`],
  ['100 000 keys (1 MiB)', keys],
  ["'[]' x524288 (1 MiB)", '[]'.repeat(MIB / 2)],
  ['nested aliases (10^6 nodes)', laughs.join('\n')],
  ["'---' x262144 (1 MiB)", '---\n'.repeat(MIB / 4)],
];
const refused = hostile.map(([name, text]) => {
  const r = parseYamlDocument(text);
  const why = r.ok ? (YamlSource.parse(text).issues[0]?.message ?? 'read') : r.issue.message;
  return [name, fmt(medians([() => now(text)], 5)[0]), why.replace(/;.*/, '').slice(0, 70)];
});
console.log(`\n${table(['hostile text', 'guarded (ms)', 'outcome'], refused)}`);
