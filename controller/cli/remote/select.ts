/**
 * Where a command runs, decided from argv and the environment before commander sees argv (pure).
 * Like Docker: `--context NAME` (before the command word), then UGRO_HOST=ssh://user@host[:port],
 * then UGRO_CONTEXT=NAME, then the contexts file's `current` (`ugro context use NAME`). The name
 * `local` at any level means "run here" and stops the search. `ugro context …`, `validate` (it
 * checks files here and needs no controller) and `help` always run here.
 */
import { UsageError } from '../../../config/errors.ts';
import type { Env } from '../context.ts';

/** Program options that take a value (main.ts): their value is never the command word. */
/**
 * `--context local`: run here. The same word as config/contexts.ts's LOCAL_CONTEXT (a unit test holds them
 * equal); not imported from there: that module loads zod, and every command's startup runs this one.
 */
export const LOCAL_CONTEXT = 'local';

const VALUE_OPTIONS = new Set(['--cluster', '--jobs']);
const ALWAYS_LOCAL = new Set(['context', 'validate', 'help']);

export interface SplitArgv {
  /** `--context NAME` as given (before the command word). */
  context?: string;
  /** The words without the --context flags. */
  words: string[];
  /** Index in `words` of the command word (`get`, `apply` …); -1 when there is none. */
  verb: number;
}

/**
 * Take `--context NAME` / `--context=NAME` out of the words before the command word. After it,
 * --context is refused: it would mean something else on the controller host.
 */
export function splitArgv(args: readonly string[]): SplitArgv {
  const words: string[] = [];
  let context: string | undefined;
  let verb = -1;
  let operands = false; // after `--`: nothing is an option any more
  for (let i = 0; i < args.length; i++) {
    const w = args[i];
    if (verb >= 0) {
      if (w === '--') operands = true;
      else if (!operands && /^--context(=|$)/.test(w))
        throw new UsageError(`--context goes before the command: ugro --context NAME ${words[verb]} …`);
      words.push(w);
      continue;
    }
    if (w === '--') {
      words.push(w);
      operands = true;
      if (i + 1 < args.length) verb = words.length;
      continue;
    }
    if (w === '--context' || w.startsWith('--context=')) {
      const v = w === '--context' ? args[++i] : w.slice('--context='.length);
      if (v === undefined || v === '') throw new UsageError('--context needs a context name (see `ugro context ls`)');
      context = v;
      continue;
    }
    words.push(w);
    if (VALUE_OPTIONS.has(w) && i + 1 < args.length) words.push(args[++i]);
    else if (!w.startsWith('-')) verb = words.length - 1;
  }
  return { ...(context !== undefined ? { context } : {}), words, verb };
}

export type Where =
  | { kind: 'local' }
  /** A named context; `why` says where the name came from, for messages. */
  | { kind: 'context'; name: string; why: string }
  | { kind: 'host'; url: string; why: string };

/**
 * flag > UGRO_HOST > UGRO_CONTEXT > the current context. `current` is read only when asked for
 * (the contexts file costs a YAML parse), hence a function.
 */
export async function chooseWhere(
  split: SplitArgv,
  env: Env,
  current: () => Promise<string | undefined>,
): Promise<Where> {
  const verb = split.verb >= 0 ? split.words[split.verb] : undefined;
  if (verb === undefined || ALWAYS_LOCAL.has(verb)) return { kind: 'local' };
  const named = (name: string, why: string): Where =>
    name === LOCAL_CONTEXT ? { kind: 'local' } : { kind: 'context', name, why };
  if (split.context !== undefined) return named(split.context, `--context ${split.context}`);
  if (env.UGRO_HOST) return { kind: 'host', url: env.UGRO_HOST, why: 'UGRO_HOST' };
  if (env.UGRO_CONTEXT) return named(env.UGRO_CONTEXT, `UGRO_CONTEXT=${env.UGRO_CONTEXT}`);
  const cur = await current();
  return cur ? named(cur, `the current context (${cur}; \`ugro context use local\` to run here)`) : { kind: 'local' };
}

/** What the remote side runs, and what goes to its stdin. */
export interface RemotePlan {
  /** ugro's arguments on the controller host (the remote command's words come first, from the context). */
  args: string[];
  /** A local file whose content goes to the remote `apply -f -` on stdin. */
  sendFile?: string;
  /** This process's stdin is the remote command's (`apply -f -` given here). */
  passStdin: boolean;
}

/** The value of an option spelled `-f X`, `-fX`, `--file X` or `--file=X` (the last one wins, as in commander). */
function findOption(words: string[], from: number, short: string | undefined, long: string) {
  let found: { at: number; width: number; value: string } | undefined;
  for (let i = from; i < words.length; i++) {
    const w = words[i];
    if (w === '--') break;
    if ((w === long || (short && w === short)) && i + 1 < words.length)
      found = { at: i, width: 2, value: words[i + 1] };
    else if (w.startsWith(`${long}=`)) found = { at: i, width: 1, value: w.slice(long.length + 1) };
    else if (short && w.startsWith(short) && !w.startsWith('--') && w.length > short.length)
      found = { at: i, width: 1, value: w.slice(short.length) };
  }
  return found;
}

/**
 * The remote argv for `split` (the --context flags already out): `--context local` first, so a
 * context or UGRO_HOST set on the controller host never sends the command on again; the
 * context's cluster and jobs paths next (a --cluster/--jobs on the command line comes later and
 * wins); `apply -f FILE` reads FILE here and sends it on stdin.
 */
export function planRemote(
  split: SplitArgv,
  paths: { cluster?: string; jobs?: string },
  lifeline: boolean,
): RemotePlan {
  const words = [...split.words];
  const verb = words[split.verb];
  let sendFile: string | undefined;
  let passStdin = false;
  if (verb === 'apply') {
    const f = findOption(words, split.verb + 1, '-f', '--file');
    if (f && f.value === '-') passStdin = true;
    else if (f) {
      sendFile = f.value;
      words.splice(f.at, f.width, '-f', '-', '--stdin-name', f.value);
    }
  }
  if (verb === 'export' && findOption(words, split.verb + 1, '-o', '--output'))
    throw new UsageError(
      'with a context, export -o FILE would write FILE on the controller host: redirect stdout instead ' +
        '(ugro --context NAME export job JOB --to sbatch > FILE)',
    );
  if (verb === 'results' && findOption(words, split.verb + 1, undefined, '--plot'))
    throw new UsageError(
      'with a context, results --plot FILE would write FILE on the controller host: run it there, or without a context',
    );
  const pre = ['--context', LOCAL_CONTEXT];
  if (lifeline && !sendFile && !passStdin) pre.push('--exit-with-stdin');
  if (paths.cluster) pre.push('--cluster', paths.cluster);
  if (paths.jobs) pre.push('--jobs', paths.jobs);
  return { args: [...pre, ...words], ...(sendFile !== undefined ? { sendFile } : {}), passStdin };
}
