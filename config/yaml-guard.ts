/**
 * Every YAML text UGRO reads is parsed here, under fixed limits checked before the document is built: job specs
 * (and git blobs, which reach the store as job files), status and control files, the cluster file, the CLI's
 * listing (docs/architecture.md, "Input is hostile"). Pure: text in, a document or one located issue out.
 *
 * Why a guard: the yaml package builds a document by recursion, a few frames per nested collection. A 6 KB file of
 * 3000 `[` overflows the stack there; the package catches that RangeError, but on the next deep parse V8 recompiles
 * a hot regexp (tier-up to native code) at that depth with no stack left and aborts the process ("FATAL ERROR:
 * RegExpCompiler Allocation failed - process out of memory", exit 134), which no try/catch sees. The package's lexer
 * and CST parser are iterative (the parser keeps an explicit stack), so the guard drives them one token at a time,
 * the same work parseDocument does, and stops at the first token past a limit, before the recursive composer runs.
 * Driving the package's own lexer (not a scan of our own) means quotes, comments and block scalars are read exactly
 * as the parser reads them: nothing can hide nesting from the count.
 */
import { Composer, CST, type Document, Lexer, LineCounter, Parser, visit } from 'yaml';
import { type FieldIssue, UgroError } from './errors.ts';

export const YAML_LIMITS = {
  /** Nested collections. A TrainingJob needs 4; the stack overflows near 800 (less in a deep call). */
  depth: 64,
  /** Anchors (&a) and aliases (*a): no UGRO file needs them; billion-laughs files are made of them. */
  anchors: 100,
  aliases: 100,
  /** Nodes an expanded document may reach through aliases (the yaml package's maxAliasCount). */
  aliasExpansion: 100,
  /** Characters in one mapping key (YAML's own limit for a plain key on one line). */
  keyChars: 1024,
  /** Keys in one mapping: the duplicate-key check is quadratic (100 000 keys, 1 MiB, took 99 s). */
  mapEntries: 1000,
  /** YAML documents in one file (`---` separated). */
  documents: 1,
  /**
   * Values, collections and tags in one file. A valid TrainingJob has fewer (args are capped at 96 KiB); the
   * package spends 5-27 µs on each (1 MiB of `[]` took 14 s), so this keeps a parse under a second (bench:yaml).
   */
  nodes: 100_000,
} as const;

/** A YAML text UGRO will not read (over a limit, or not YAML), with its line. Typed: never a bug's stack trace. */
export class YamlError extends UgroError {
  constructor(readonly issue: FieldIssue) {
    super(
      `${issue.line ? `line ${issue.line}${issue.column ? `, column ${issue.column}` : ''}: ` : ''}${issue.message}`,
    );
  }
}

export type YamlDocument =
  | { ok: true; doc: Document.Parsed; lines: LineCounter }
  | { ok: false; issue: FieldIssue; lines: LineCounter };

const FIX = 'UGRO refuses it before parsing';

/** Lexemes that are not nodes: layout, indicators and markers. */
const NOT_NODES = new Set<string | null>([
  'space',
  'newline',
  'comment',
  'comma',
  'flow-seq-end',
  'flow-map-end',
  'seq-item-ind',
  'map-value-ind',
  'explicit-key-ind',
  'doc-mode',
  'byte-order-mark',
  'flow-error-end',
]);

/** What the lexemes so far add up to, checked one lexeme at a time. */
class LexemeCounts {
  private anchors = 0;
  private aliases = 0;
  private nodes = 0;
  private scalarNext = false;
  /** A scalar that a following ':' makes a key; after '?', the next scalar is one. */
  private lastScalar: { at: number; length: number } | undefined;
  private explicitKey = false;

  /** The limit this lexeme (at offset `at`) crosses, as [offset, message], or undefined. */
  add(lexeme: string, at: number): [number, string] | undefined {
    const type = this.scalarNext ? 'scalar-source' : CST.tokenType(lexeme);
    this.scalarNext = type === 'scalar';
    if (!NOT_NODES.has(type) && type !== 'scalar-source' && ++this.nodes > YAML_LIMITS.nodes)
      return [at, `more than ${YAML_LIMITS.nodes} nodes (values, lists, maps, tags); ${FIX}: ${BIG_INPUT}`];
    // A plain or block scalar comes as a marker, then its text; a quoted one as its text.
    if (type === 'scalar-source' || type === 'single-quoted-scalar' || type === 'double-quoted-scalar') {
      if (this.explicitKey && lexeme.length > YAML_LIMITS.keyChars) return [at, keyMessage(lexeme.length)];
      this.lastScalar = { at, length: lexeme.length };
      this.explicitKey = false;
    } else if (type === 'anchor' && ++this.anchors > YAML_LIMITS.anchors) {
      return [at, `more than ${YAML_LIMITS.anchors} anchors (&name); ${FIX}: write the values out`];
    } else if (type === 'alias' && ++this.aliases > YAML_LIMITS.aliases) {
      return [at, `more than ${YAML_LIMITS.aliases} aliases (*name); ${FIX}: write the values out`];
    } else if (type === 'map-value-ind') {
      const key = this.lastScalar;
      if (key && key.length > YAML_LIMITS.keyChars) return [key.at, keyMessage(key.length)];
      this.lastScalar = undefined;
    } else if (type === 'explicit-key-ind') {
      this.explicitKey = true;
    } else if (type !== 'space' && type !== 'scalar' && type !== 'anchor' && type !== 'tag' && type !== 'comment') {
      this.lastScalar = undefined;
      if (type !== 'newline') this.explicitKey = false;
    }
    return undefined;
  }
}

const BIG_INPUT = 'pass big inputs in a file that the training script reads';

function keyMessage(length: number): string {
  return `a mapping key of ${length} characters (at most ${YAML_LIMITS.keyChars}); ${FIX}: use a shorter key`;
}

/** The limit the parser's open tokens cross (documents, depth, keys of the growing mapping), or undefined. */
function stackProblem(stack: CST.Token[], docs: number, at: number): [number, string] | undefined {
  if (docs >= YAML_LIMITS.documents && stack[0]?.type === 'document')
    return [
      stack[0].offset,
      `more than ${YAML_LIMITS.documents} YAML document: a second one starts here ("---"); ` +
        'UGRO reads one document per file: remove the "---" line, or put each job in its own file',
    ];
  // Only the document and one scalar share the stack with collections: a short stack is shallow.
  if (stack.length > YAML_LIMITS.depth && stack.filter((t) => CST.isCollection(t)).length > YAML_LIMITS.depth)
    return [
      at,
      `nested deeper than ${YAML_LIMITS.depth} levels of lists and maps; ${FIX}: ` +
        "flatten it (UGRO's own files need fewer than 8)",
    ];
  const map = topMapping(stack);
  if (map && map.items.length > YAML_LIMITS.mapEntries)
    return [
      at,
      `more than ${YAML_LIMITS.mapEntries} keys in one mapping (this is key ${map.items.length}); ${FIX}: ${BIG_INPUT}`,
    ];
  return undefined;
}

/** The innermost collection on the parser's stack if it is a mapping: the one that grows now. */
function topMapping(stack: CST.Token[]): CST.BlockMap | CST.FlowCollection | undefined {
  for (let i = stack.length - 1; i >= 0; i--) {
    const t = stack[i];
    if (t.type === 'block-map') return t;
    if (t.type === 'flow-collection') return t.start.source === '{' ? t : undefined;
    if (t.type === 'block-seq' || t.type === 'document') return undefined;
  }
  return undefined;
}

/**
 * Parse one YAML document under YAML_LIMITS. A limit crossed is `ok: false` with the line of the first token past
 * it; syntax errors stay in `doc.errors` as yaml reports them. Never throws on any input.
 */
export function parseYamlDocument(text: string): YamlDocument {
  const lines = new LineCounter();
  const parser = new Parser(lines.addNewLine);
  const counts = new LexemeCounts();
  const tokens: CST.Token[] = [];
  let docs = 0;
  lines.addNewLine(0); // as Parser.parse does
  for (const lexeme of new Lexer().lex(text)) {
    const at = parser.offset;
    let problem = counts.add(lexeme, at);
    if (!problem) {
      for (const token of parser.next(lexeme)) {
        if (token.type === 'document') docs++;
        tokens.push(token);
      }
      problem = stackProblem(parser.stack, docs, at);
    }
    if (problem) {
      const pos = lines.linePos(problem[0]);
      const issue = { path: '', message: `YAML limit: ${problem[1]}`, line: pos.line, column: pos.col };
      return { ok: false, issue, lines };
    }
  }
  for (const token of parser.end()) tokens.push(token);
  // logLevel error: the package would print its warnings (a key that is a collection…) with process.emitWarning.
  const [doc] = new Composer({ logLevel: 'error' }).compose(tokens, true, text.length);
  // compose(…, forceDoc) yields a document even for an empty text.
  return { ok: true, doc: doc as Document.Parsed, lines };
}

/** An empty document, for a caller that needs one where the text was refused. */
export function emptyYamlDocument(): { doc: Document.Parsed; lines: LineCounter } {
  const lines = new LineCounter();
  const [doc] = new Composer().compose([], true, 0);
  return { doc: doc as Document.Parsed, lines };
}

/**
 * The document's value with aliases bounded (YAML_LIMITS.aliasExpansion): an issue where the yaml package throws
 * its ReferenceError ("Excessive alias count", an alias to a missing anchor).
 */
export function yamlToJS(
  doc: Document.Parsed,
  lines: LineCounter,
): { ok: true; value: unknown } | { ok: false; issue: FieldIssue } {
  try {
    return { ok: true, value: doc.toJS({ maxAliasCount: YAML_LIMITS.aliasExpansion }) };
  } catch (e) {
    if (!(e instanceof ReferenceError)) throw e;
    // Point at the first alias: the document is within the depth limit, so visiting it is safe.
    let at = doc.range?.[0] ?? 0;
    visit(doc, {
      Alias(_, node) {
        at = node.range?.[0] ?? at;
        return visit.BREAK;
      },
    });
    const pos = lines.linePos(at);
    const excessive = /excessive alias count/i.test(e.message);
    const message = excessive
      ? `YAML limit: aliases (*name) expand to more than ${YAML_LIMITS.aliasExpansion} nodes; ` +
        'UGRO refuses such files: write the values out instead of nesting aliases'
      : `YAML aliases: ${e.message.split('\n')[0]}`;
    return { ok: false, issue: { path: '', message, line: pos.line, column: pos.col } };
  }
}

/** The first syntax error of a document as an issue, located. */
export function syntaxIssue(doc: Document.Parsed, lines: LineCounter): FieldIssue | undefined {
  const e = doc.errors[0];
  if (!e) return undefined;
  const pos = e.linePos?.[0] ?? lines.linePos(e.pos[0]);
  return { path: '', message: `YAML syntax: ${e.message.split('\n')[0]}`, line: pos.line, column: pos.col };
}

/**
 * Like yaml's `parse()`: the value of one document, under the limits. Throws only YamlError (a limit, a syntax
 * error, aliases that expand too far), never the package's own errors, and prints no warnings.
 */
export function parseYamlValue(text: string): unknown {
  const r = parseYamlDocument(text);
  if (!r.ok) throw new YamlError(r.issue);
  const syntax = syntaxIssue(r.doc, r.lines);
  if (syntax) throw new YamlError(syntax);
  const v = yamlToJS(r.doc, r.lines);
  if (!v.ok) throw new YamlError(v.issue);
  return v.value;
}
