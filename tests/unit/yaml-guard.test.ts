/**
 * config/yaml-guard.ts, the one way UGRO parses YAML: every limit just under (read) and just over
 * (refused, with the line of the first token past it and what to do), the alias expansion bound,
 * the two files of issue 15 that made Node abort (exit 134), and a seeded fuzz of pathological
 * shapes: parsing returns or throws YamlError, nothing else, and whatever the guard lets through is
 * within the limits when measured on the document the package built.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { type Document, isAlias, isCollection, isPair, isScalar } from 'yaml';
import { parseYamlDocument, parseYamlValue, YAML_LIMITS, YamlError } from '../../config/yaml-guard.ts';

const ROOT = new URL('../../', import.meta.url).pathname;

/** The refusal of `text`: its message and line (fails the test when the text is read). */
function refusal(text: string): { message: string; line?: number; column?: number } {
  const r = parseYamlDocument(text);
  if (r.ok) throw new Error(`expected a refusal, got a document (errors: ${r.doc.errors.length})`);
  return r.issue;
}

const flow = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
const dashes = (n: number) => `${'- '.repeat(n)}x\n`;
const indented = (n: number) => `${Array.from({ length: n }, (_, i) => `${' '.repeat(i)}k:`).join('\n')} x\n`;
const keys = (n: number) => Array.from({ length: n }, (_, i) => `k${i}: ${i}`).join('\n');
/** `levels` anchors, each a list of `width` aliases of the one before: width^levels nodes. */
function laughs(levels: number, width: number): string {
  const out = [`l0: &l0 [${Array(width).fill('x').join(', ')}]`];
  for (let i = 1; i <= levels; i++)
    out.push(
      `l${i}: &l${i} [${Array(width)
        .fill(`*l${i - 1}`)
        .join(', ')}]`,
    );
  return `${out.join('\n')}\n`;
}

describe('the limits', () => {
  it('nesting: 64 levels of lists or maps are read, 65 refused at the token that opens the 65th', () => {
    for (const shape of [flow, dashes, indented]) {
      expect(parseYamlDocument(shape(64)).ok).toBe(true);
      expect(refusal(shape(65)).message).toMatch(
        /^YAML limit: nested deeper than 64 levels of lists and maps; .*flatten/,
      );
    }
    expect(refusal(flow(65))).toMatchObject({ line: 1, column: 65 });
    expect(refusal(indented(65))).toMatchObject({ line: 65 });
    // Brackets inside quotes, comments and block scalars are text, as the package reads them.
    const text = `a: "${'['.repeat(500)}"\nb: |\n  ${'{'.repeat(500)}\n# ${'['.repeat(500)}\nc: '${'['.repeat(500)}'\n`;
    expect(parseYamlValue(text)).toMatchObject({ a: '['.repeat(500), c: '['.repeat(500) });
  });

  it('anchors and aliases: 100 of each are read, the 101st refused', () => {
    const anchors = (n: number) => Array.from({ length: n }, (_, i) => `- &a${i} x`).join('\n');
    const aliases = (n: number) => `a: &a x\nb: [${Array(n).fill('*a').join(', ')}]\n`;
    expect(parseYamlDocument(anchors(100)).ok).toBe(true);
    expect(refusal(anchors(101))).toMatchObject({ line: 101, message: expect.stringMatching(/more than 100 anchors/) });
    expect(parseYamlDocument(aliases(100)).ok).toBe(true);
    // The anchor and 99 aliases of it are 100 nodes: within the expansion bound as well.
    expect((parseYamlValue(aliases(99)) as { b: string[] }).b).toHaveLength(99);
    expect(refusal(aliases(101)).message).toMatch(/more than 100 aliases \(\*name\)/);
  });

  it('alias expansion: nested aliases (billion laughs) within the alias count are refused as YamlError', () => {
    const text = laughs(4, 10); // 40 aliases, 10^5 nodes once expanded
    expect(parseYamlDocument(text).ok).toBe(true);
    const e = (() => {
      try {
        parseYamlValue(text);
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(YamlError);
    expect((e as YamlError).issue).toMatchObject({
      line: 2,
      message: expect.stringMatching(/^YAML limit: aliases \(\*name\) expand to more than 100 nodes/),
    });
  });

  it('a key of 1024 characters is read, of 1025 refused, plain, quoted or explicit', () => {
    const k = (n: number) => 'k'.repeat(n);
    expect(parseYamlValue(`${k(1024)}: v\n`)).toEqual({ [k(1024)]: 'v' });
    for (const text of [`${k(1025)}: v\n`, `"${k(1025)}": v\n`, `{ '${k(1025)}': v }\n`, `? ${k(1025)}\n: v\n`])
      expect(refusal(text).message).toMatch(/a mapping key of 102[57] characters \(at most 1024\)/);
    // A long value is not a key.
    expect(parseYamlValue(`a: ${k(100_000)}\n`)).toEqual({ a: k(100_000) });
  });

  it('1000 keys in a mapping are read; a 1 MiB mapping of 100 000 keys is refused at its 1001st key', () => {
    // The package's duplicate-key check is quadratic: unguarded, this file took 99 s to parse.
    expect(parseYamlDocument(keys(1000)).ok).toBe(true);
    const big = keys(100_000);
    expect(big.length).toBeGreaterThan(1_000_000);
    expect(refusal(big)).toMatchObject({
      line: 1001,
      message: expect.stringMatching(/more than 1000 keys in one mapping/),
    });
    expect(refusal(`{${keys(1001).replaceAll('\n', ', ')}}`).message).toMatch(/this is key 1001/);
  });

  it('one document per file: a second `---` is refused on its line; `---` first and `...` last are fine', () => {
    expect(parseYamlValue('---\na: 1\n...\n')).toEqual({ a: 1 });
    expect(refusal('a: 1\n---\nb: 2\n')).toMatchObject({ line: 2, message: expect.stringMatching(/a second one/) });
    expect(refusal('---\n'.repeat(250_000))).toMatchObject({ line: 2 });
  });

  it('nodes: more than 100 000 values in one file are refused (1 MiB of `[]` took 14 s unguarded)', () => {
    expect(refusal('[]'.repeat(500_000)).message).toMatch(/more than 100000 nodes/);
    expect(refusal(`[${'x,'.repeat(100_001)}]`).message).toMatch(/more than 100000 nodes/);
    expect(parseYamlDocument(`[${'x,'.repeat(99_999)}]`).ok).toBe(true);
  });
});

describe('issue 15: the files that made Node abort', () => {
  it('parsing `[`x3000 and `- `x3000 one after the other, in a fresh process, ends with exit 0', () => {
    // Unguarded, the second deep parse aborts the process (V8 recompiles a regexp with no stack
    // left: "RegExpCompiler Allocation failed", exit 134). The child parses both, three times.
    const code = `
      import { parseYamlValue, YamlError } from ${JSON.stringify(`${ROOT}config/yaml-guard.ts`)};
      for (let i = 0; i < 3; i++)
        for (const t of ['['.repeat(3000) + ']'.repeat(3000), '- '.repeat(3000) + 'x']) {
          try { parseYamlValue(t); } catch (e) { if (!(e instanceof YamlError)) throw e; console.log(e.message); }
        }`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      encoding: 'utf8',
      cwd: ROOT,
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(6);
    expect(r.stdout).toContain('line 1, column 65: YAML limit: nested deeper than 64');
  });
});

/** Mulberry32: a small seeded generator, so a failing case can be replayed from its index. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fragments that open, close or confuse structure, and text that hides it (quotes, comments, block scalars). */
const FRAGMENTS = [
  '[',
  ']',
  '{',
  '}',
  '- ',
  '? ',
  ': ',
  'k: ',
  ', ',
  '\n',
  '\n  ',
  '\n    ',
  '"',
  "'",
  '# ',
  '|\n',
  '>-\n',
  '&a ',
  '*a ',
  '!!str ',
  '!t ',
  '---\n',
  '...\n',
  '\t',
  '\r\n',
  '\\',
  'x',
  'long text ',
  '%YAML 1.2\n',
  '\0',
  'ü',
  '<<: ',
];

/** One pathological text: a shape (deep, wide, aliased, long-keyed, many documents) with random noise. */
function shape(r: () => number): string {
  const n = Math.floor(2 ** (r() * 11)); // 1..2048, most below the limits, many above
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
  let text: string;
  switch (Math.floor(r() * 10)) {
    case 0:
      text = flow(n);
      break;
    case 1:
      text = dashes(n);
      break;
    case 2:
      text = indented(Math.min(n, 600));
      break;
    case 3: // mixed openers, each level its own kind
      text = Array.from({ length: n }, () => pick(['[', '{a: ', '- ', '? ', '[a: ', '&x [', '!!seq ['])).join('');
      break;
    case 4:
      text = laughs(1 + Math.floor(r() * 8), 2 + Math.floor(r() * 12));
      break;
    case 5:
      text = `${'k'.repeat(n)}: v\n${'"'.repeat(r() < 0.5 ? 1 : 0)}`;
      break;
    case 6:
      text = `a: 1\n${'---\nb: 2\n'.repeat(Math.floor(n / 4))}`;
      break;
    case 7:
      text = keys(n);
      break;
    case 8: // many anchors, then many aliases of them
      text = `${Array.from({ length: n }, (_, i) => `- &a${i % 300} x`).join('\n')}\n- [${'*a1, '.repeat(n)}]\n`;
      break;
    default:
      text = Array.from({ length: n }, () => pick(FRAGMENTS)).join('');
  }
  // Noise: fragments spliced in, or the text cut short.
  for (let i = Math.floor(r() * 6); i > 0; i--) {
    const at = Math.floor(r() * (text.length + 1));
    text = text.slice(0, at) + pick(FRAGMENTS) + text.slice(at);
  }
  if (r() < 0.2) text = text.slice(0, Math.floor(r() * text.length));
  return text;
}

/** Nesting, anchors and aliases of the built document, counted without recursion. */
function measure(doc: Document.Parsed): { depth: number; anchors: number; aliases: number } {
  const m = { depth: 0, anchors: 0, aliases: 0 };
  const todo: [unknown, number][] = [[doc.contents, 0]];
  while (todo.length) {
    const [node, d] = todo.pop()!;
    if (isPair(node)) {
      todo.push([node.key, d], [node.value, d]);
      continue;
    }
    if (isAlias(node)) m.aliases++;
    else if (isScalar(node) || isCollection(node)) {
      if (node.anchor) m.anchors++;
      if (isCollection(node)) {
        m.depth = Math.max(m.depth, d + 1);
        for (const item of node.items) todo.push([item, d + 1]);
      }
    }
  }
  return m;
}

describe('fuzz: pathological shapes (seed 15, 600 texts)', () => {
  it('parsing returns or throws YamlError, fast, and lets through only documents within the limits', () => {
    const r = rng(15);
    const counts = { read: 0, refused: 0, syntax: 0, expansion: 0 };
    let slowest = 0;
    for (let i = 0; i < 600; i++) {
      const text = shape(r);
      const t0 = performance.now();
      try {
        parseYamlValue(text);
        counts.read++;
      } catch (e) {
        if (!(e instanceof YamlError))
          throw new Error(`case ${i}: ${String(e)} for ${JSON.stringify(text.slice(0, 200))}`);
        const m = e.issue.message;
        if (m.startsWith('YAML syntax')) counts.syntax++;
        else if (m.includes('expand to more than')) counts.expansion++;
        else counts.refused++;
      }
      slowest = Math.max(slowest, performance.now() - t0);
      const doc = parseYamlDocument(text);
      if (!doc.ok) continue;
      // CST depth is what the guard bounds; a flow pair (`[a: b]`) is one more map when built.
      const m = measure(doc.doc);
      expect(m.depth, `case ${i}`).toBeLessThanOrEqual(2 * YAML_LIMITS.depth);
      expect(m.anchors, `case ${i}`).toBeLessThanOrEqual(YAML_LIMITS.anchors);
      expect(m.aliases, `case ${i}`).toBeLessThanOrEqual(YAML_LIMITS.aliases);
    }
    // Every kind of outcome happened: the generator reaches past each limit and stays within them too.
    for (const [k, v] of Object.entries(counts)) expect(v, k).toBeGreaterThan(10);
    // Not a speed goal (npm run bench has those): a bound that a hang or a quadratic blowup would break.
    expect(slowest).toBeLessThan(2000);
  });
});
