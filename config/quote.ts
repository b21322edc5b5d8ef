/**
 * POSIX shell quoting, shared by the controller and the Pulumi program (infra/ imports config/
 * only). Every remote command UGRO sends is built from an argv with each word
 * quoted here: no user string is ever pasted into a shell line.
 */
import { assert } from './errors.ts';

const SAFE = /^[A-Za-z0-9_/.,:@%+-]+$/;
// `=` may not lead: zsh expands a word like `=cmd` to the command's path.
const SAFE_ARG = /^[A-Za-z0-9_/.,:@%+-][A-Za-z0-9_/.,:=@%+-]*$/;

/** Quote one word for sh/bash/zsh. `=` is only left bare after the first word (no accidental assignment). */
export function shQuote(word: string, first = false): string {
  if (word !== '' && (first ? SAFE : SAFE_ARG).test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Build a shell line from an argv, optionally with env and a working directory. */
export function buildCommand(
  argv: readonly string[],
  opts: { env?: Record<string, string>; cwd?: string } = {},
): string {
  // UGRO builds both from its own words and names checked where they came in.
  assert(argv.length, 'buildCommand: empty argv');
  for (const [k] of Object.entries(opts.env ?? {}))
    assert(/^[A-Za-z_][A-Za-z0-9_]*$/.test(k), () => `invalid environment variable name: ${JSON.stringify(k)}`);
  const envWords = Object.entries(opts.env ?? {}).map(([k, v]) => shQuote(`${k}=${v}`));
  const cmd = (
    envWords.length ? ['env', ...envWords, ...argv.map((a) => shQuote(a))] : argv.map((a, i) => shQuote(a, i === 0))
  ).join(' ');
  return opts.cwd ? `cd ${shQuote(opts.cwd, true)} && exec ${cmd}` : `exec ${cmd}`;
}
