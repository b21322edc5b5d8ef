/**
 * The layering of docs/architecture.md ("Layering"), checked over config/, controller/ and infra/: every import
 * (static, `import type`, `export … from`, dynamic `import()`, type-position `import('x')`) against the rule table
 * below; every package against its folder's packages; no cycle between files (type-only imports count: they tie
 * two files together for a reader); and no plain `throw new Error(` (a bug throws an internal error, a condition
 * of the machine a typed UgroError: docs/conventions.md, "Errors").
 *
 * Strict: no known exceptions. A new edge either fits a row or the table changes in the same commit, with the
 * reason in the row's comment; a folder that moves takes its row with it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('../../', import.meta.url).pathname;

/** What the loop and the dashboard may see of the backends: the request/result types, errors, health facts. */
/** The backend-neutral files every backend folder may use. */
const BACKEND_SHARED = [
  'controller/backends/api.ts',
  'controller/backends/errors.ts',
  'controller/backends/health.ts',
  'controller/backends/records.ts',
];
const BACKEND_API = ['controller/backends/api.ts', 'controller/backends/errors.ts', 'controller/backends/health.ts'];

/**
 * One row per folder (or file): the paths it may import besides its own row, and the packages it may use.
 * The most specific row wins. config/ is the bottom; cli/ (the composition root) may import anything.
 */
const RULES: Record<string, { may: string[]; pkgs: RegExp }> = {
  config: { may: [], pkgs: /^(yaml|zod|node:.*)$/ },
  infra: { may: ['config'], pkgs: /^(@pulumi\/.*|zod|node:.*)$/ },
  // Below everything that logs (or finds the install): node only, and config's errors.
  'controller/base': { may: ['config/errors.ts'], pkgs: /^node:/ },
  // Types and schemas only; of config/ only the leaves that read YAML, quote, name things and name errors.
  'controller/api': {
    may: ['config/errors.ts', 'config/names.ts', 'config/parse.ts', 'config/quote.ts'],
    pkgs: /^(zod|node:(crypto|path))$/,
  },
  // `npm run schema`: writes trainingjob.schema.json beside itself; nothing imports it.
  'controller/api/generate-schema.ts': { may: ['controller/api'], pkgs: /^node:fs$/ },
  // Pure decisions: no fs, ssh or timers.
  'controller/core': { may: ['controller/api', 'config'], pkgs: /^node:path$/ },
  // Display formatters shared by cli/render/ and observability/web/ (pure; no packages).
  'controller/format': { may: ['controller/api'], pkgs: /^$/ },
  'controller/store': { may: ['controller/api', 'controller/base', 'config'], pkgs: /^(yaml|node:.*)$/ },
  // What every backend shares: the role interfaces (api.ts), errors, health facts, the record parser.
  // Never a backend folder: that is router.ts's job alone.
  'controller/backends': { may: ['controller/api', 'controller/base', 'config'], pkgs: /^node:.*$/ },
  // The one place that picks a backend per host: may see every backend folder.
  'controller/backends/router.ts': { may: ['controller/backends', 'config'], pkgs: /^$/ },
  // The SSH backend: the shared backend files, never another backend.
  'controller/backends/ssh': {
    may: [...BACKEND_SHARED, 'controller/api', 'controller/base', 'config'],
    pkgs: /^(ssh2|node:.*)$/,
  },
  // The Slurm backend rides on the SSH one (its login host is an SSH host; files go through the SSH backend).
  'controller/backends/slurm': {
    may: [...BACKEND_SHARED, 'controller/backends/ssh', 'controller/api', 'controller/base', 'config'],
    pkgs: /^node:/,
  },
  'controller/gitops': { may: ['controller/api', 'controller/base', 'controller/store', 'config'], pkgs: /^node:/ },
  // The loop: never a concrete backend (cli/ builds it); of observability/ only the observer it reports to.
  'controller/loop': {
    may: [
      ...BACKEND_API,
      'controller/api',
      'controller/base',
      'controller/core',
      'controller/store',
      'controller/observability/observer.ts',
      'config',
    ],
    pkgs: /^(zod|node:.*)$/,
  },
  // What the controller shows (observer, view, telemetry, notifications, /metrics, the dashboard in web/):
  // reads what the loop reports, never the loop itself.
  'controller/observability': {
    may: [
      ...BACKEND_API,
      'controller/api',
      'controller/base',
      'controller/core',
      'controller/format',
      'controller/store',
      'config',
    ],
    pkgs: /^(prom-client|node:.*)$/,
  },
  'controller/export': {
    may: ['controller/api', 'controller/core', 'controller/backends/slurm', 'config'],
    pkgs: /^(yaml|node:path)$/,
  },
  'controller/cli': { may: ['controller', 'config'], pkgs: /^(commander|yaml|node:.*)$/ },
};

const within = (f: string, p: string) => f === p || f.startsWith(`${p}/`);
const layerOf = (f: string): string | undefined =>
  Object.keys(RULES)
    .filter((k) => within(f, k))
    .sort((a, b) => b.length - a.length)[0];

function sources(): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(join(ROOT, d), { withFileTypes: true })) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory()) {
        if (!['node_modules', 'dist', 'assets'].includes(e.name)) walk(p);
      } else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
    }
  };
  for (const d of ['config', 'controller', 'infra']) walk(d);
  return out.sort();
}

interface Scan {
  /** Each import: its specifier (undefined: a dynamic import of a computed name) and line. */
  imports: { spec: string | undefined; line: number }[];
  throws: number;
}

/** Reads one file's imports and plain throws from its syntax tree (comments and strings do not count). */
function scan(file: string): Scan {
  const sf = ts.createSourceFile(file, readFileSync(join(ROOT, file), 'utf8'), ts.ScriptTarget.Latest, false);
  const out: Scan = { imports: [], throws: 0 };
  const add = (n: ts.Node | undefined, at: ts.Node) =>
    out.imports.push({
      spec: n && ts.isStringLiteralLike(n) ? n.text : undefined,
      line: sf.getLineAndCharacterOfPosition(at.getStart(sf)).line + 1,
    });
  const visit = (n: ts.Node): void => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier) add(n.moduleSpecifier, n);
    else if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference))
      add(n.moduleReference.expression, n);
    else if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword) add(n.arguments[0], n);
    else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument)) add(n.argument.literal, n);
    else if (ts.isThrowStatement(n)) {
      const e = n.expression;
      if (
        (ts.isNewExpression(e) || ts.isCallExpression(e)) &&
        ts.isIdentifier(e.expression) &&
        e.expression.text === 'Error'
      )
        out.throws++;
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

const FILES = sources();
const SCANS = new Map(FILES.map((f) => [f, scan(f)]));
const target = (from: string, spec: string) => relative(ROOT, resolve(ROOT, dirname(from), spec));
/** File -> files it imports (relative specifiers only), each once. */
const GRAPH = new Map(
  FILES.map((f) => [
    f,
    [...new Set(SCANS.get(f)!.imports.flatMap((i) => (i.spec?.startsWith('.') ? [target(f, i.spec)] : [])))],
  ]),
);

/** Whether a file in `from` may import `to` by the table (same row, or a path its row names). */
function allowed(from: string, to: string): boolean {
  const layer = layerOf(from)!;
  return layerOf(to) === layer || RULES[layer].may.some((p) => within(to, p));
}

describe('layering (docs/architecture.md, "Layering")', () => {
  it('puts every source file in a row of the table', () => {
    expect(FILES.length).toBeGreaterThan(100);
    expect(FILES.filter((f) => !layerOf(f))).toEqual([]);
  });

  it('the table refuses what the layering forbids (the check can fail)', () => {
    expect(allowed('controller/core/placement.ts', 'controller/loop/controller.ts')).toBe(false);
    expect(allowed('controller/backends/ssh/backend.ts', 'controller/backends/slurm/backend.ts')).toBe(false);
    expect(allowed('controller/backends/api.ts', 'controller/backends/ssh/pool.ts')).toBe(false);
    expect(allowed('controller/loop/launcher.ts', 'controller/backends/ssh/backend.ts')).toBe(false);
    expect(allowed('controller/api/run.ts', 'config/schema.ts')).toBe(false);
    expect(allowed('controller/backends/slurm/backend.ts', 'controller/backends/ssh/pool.ts')).toBe(true);
    expect(allowed('controller/backends/router.ts', 'controller/backends/slurm/backend.ts')).toBe(true);
  });

  it('imports only what its row may: files and packages', () => {
    const found = new Map<string, string>(); // violation -> where, first seen
    for (const f of FILES) {
      const layer = layerOf(f)!;
      const rule = RULES[layer];
      for (const { spec, line } of SCANS.get(f)!.imports) {
        let v: string | undefined;
        if (spec === undefined) v = `${f} -> import(a computed name)`;
        else if (!spec.startsWith('.')) v = rule.pkgs.test(spec) ? undefined : `${f} -> package ${spec}`;
        else {
          const to = target(f, spec);
          if (!allowed(f, to)) v = `${f} -> ${to}`;
        }
        if (v && !found.has(v)) found.set(v, `${f}:${line}`);
      }
    }
    expect([...found].map(([e, at]) => `${e}  (${at})`)).toEqual([]);
  });

  it('has no cycle between files (Tarjan), type-only imports included', () => {
    let next = 0;
    const index = new Map<string, number>();
    const low = new Map<string, number>();
    const stack: string[] = [];
    const onStack = new Set<string>();
    const found = new Map<string, string>();
    const visit = (v: string) => {
      index.set(v, next);
      low.set(v, next++);
      stack.push(v);
      onStack.add(v);
      for (const w of GRAPH.get(v) ?? []) {
        if (!GRAPH.has(w)) continue;
        if (!index.has(w)) {
          visit(w);
          low.set(v, Math.min(low.get(v)!, low.get(w)!));
        } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
      if (low.get(v) !== index.get(v)) return;
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) found.set(scc.sort().join(' + '), 'a cycle');
    };
    for (const f of FILES) if (!index.has(f)) visit(f);
    expect([...found].map(([e, at]) => `${e}  (${at})`)).toEqual([]);
  });

  it('throws no plain Error: an InternalError (or assert) for a bug, a typed UgroError for the machine', () => {
    const found: Record<string, number> = {};
    for (const [f, s] of SCANS) if (s.throws) found[f] = s.throws;
    expect(found).toEqual({});
  });
});
