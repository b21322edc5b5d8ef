/**
 * shQuote/buildCommand: every argv word must reach the program byte-exact through a real shell.
 * Each command line is run by real `sh` (dash on Debian) and `bash` (the lab users' login shell)
 * with `printf '%s\0' ARGS…`, and the NUL-separated output is compared byte for byte.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, realpathSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InternalError } from '../../config/errors.ts';
import { buildCommand, shQuote } from '../../config/quote.ts';

const SHELLS = ['sh', 'bash'] as const;

/** Run `shell -c LINE` in a temp dir holding files, so an unquoted `*` or `[a-z]?` would expand. */
const scratch = mkdtempSync(join(tmpdir(), 'ugro-quote-'));
for (const f of ['ab', 'zz', 'x y']) writeFileSync(join(scratch, f), '');
function run(shell: string, line: string, env: Record<string, string> = {}): Buffer {
  return execFileSync(shell, ['-c', line], {
    cwd: scratch,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent-home', ...env },
  });
}

/** NUL-terminated words → their raw bytes (no decoding: compare bytes, not strings). */
function words(out: Buffer): Buffer[] {
  const res: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < out.length; i++) {
    if (out[i] === 0) {
      res.push(out.subarray(start, i));
      start = i + 1;
    }
  }
  expect(start, 'output must end with a NUL').toBe(out.length);
  return res;
}

const NASTY: [string, string][] = [
  ['spaces', 'two  words '],
  ['tab', 'a\tb'],
  ['single quote', "it's"],
  ['only a single quote', "'"],
  ['two single quotes', "''"],
  ['double quotes', 'say "hi"'],
  ['command substitution', '$(id)'],
  ['backticks', '`id`'],
  ['variable', '$HOME'],
  ['braced variable', '${PATH:-x}'],
  ['semicolon', 'a;b'],
  ['and-and', 'true && echo pwned'],
  ['pipe', 'a|b'],
  ['redirect', '>/tmp/ugro-quote-should-not-exist'],
  ['newline', 'line1\nline2'],
  ['trailing newline', 'x\n'],
  ['carriage return', 'a\rb'],
  ['leading dash', '-n'],
  ['leading double dash', '--help'],
  ['glob star', '*'],
  ['glob class', '[a-z]?'],
  ['tilde', '~'],
  ['tilde path', '~/x'],
  ['tilde after =', 'PATH=~/bin'],
  ['backslash', 'a\\b\\'],
  ['history bang', '!!'],
  ['brace expansion', '{a,b}'],
  ['hash', '#comment'],
  ['ampersand', 'a&'],
  ['parens', '(x)'],
  ['unicode ø', 'Trøndelag ø'],
  ['emoji', '🚀 gpu 🔥'],
  ['combining + CJK', 'e\u0301 日本'],
  ['empty', ''],
  ['only spaces', '   '],
  ['equals in arg', 'A=b'],
  ['safe word', 'plain/path-1.0_x,y:z@h%+'],
];

describe('buildCommand through a real shell', () => {
  for (const shell of SHELLS) {
    it(`${shell}: every nasty word on its own arrives byte-exact`, () => {
      for (const [what, arg] of NASTY) {
        const out = run(shell, buildCommand(['printf', '%s\\0', arg]));
        expect(words(out), what).toEqual([Buffer.from(arg, 'utf8')]);
      }
    });

    it(`${shell}: all nasty words together in one argv arrive byte-exact and in order`, () => {
      const args = NASTY.map(([, a]) => a);
      const out = run(shell, buildCommand(['printf', '%s\\0', ...args]));
      expect(words(out)).toEqual(args.map((a) => Buffer.from(a, 'utf8')));
    });

    it(`${shell}: env values and a cwd with nasty characters arrive byte-exact`, () => {
      const dir = realpathSync(mkdtempSync(join(tmpdir(), "ugro q 'dir' $(x) ")));
      const env = { UGRO_A: "it's $(id) `id` ; && \n ø 🚀", UGRO_EMPTY: '', UGRO_EQ: 'x=y=z' };
      const line = buildCommand(
        ['sh', '-c', 'printf "%s\\0" "$PWD" "$UGRO_A" "${UGRO_EMPTY-unset}" "$UGRO_EQ" "$0" "$1"', 'arg0 $x', '-$1'],
        { env, cwd: dir },
      );
      const out = run(shell, line);
      expect(words(out).map((b) => b.toString('utf8'))).toEqual([dir, env.UGRO_A, '', 'x=y=z', 'arg0 $x', '-$1']);
    });
  }

  it('sh: deterministic fuzz: 300 random words from a hostile alphabet round-trip', () => {
    const alphabet = [...' \t\n\'"\\$`;&|<>(){}[]*?~!#=%^,.:@+-_/aZ09øé日🚀\r'];
    let seed = 0x5eed;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const args = Array.from({ length: 300 }, () =>
      Array.from({ length: Math.floor(rnd() * 12) }, () => alphabet[Math.floor(rnd() * alphabet.length)]).join(''),
    );
    const out = run('sh', buildCommand(['printf', '%s\\0', ...args]));
    expect(words(out).map((b) => b.toString('utf8'))).toEqual(args);
  });

  it('the command runs through `exec`, so it replaces the shell (pid stays the same)', () => {
    const out = run('sh', `echo $$; ${buildCommand(['sh', '-c', 'echo $PPID $$'])}`).toString();
    const [shellPid, line2] = out.trim().split('\n');
    // After `exec`, the inner sh *is* the outer shell process: its $$ equals the outer $$.
    expect(line2.split(' ')[1]).toBe(shellPid);
  });

  it('a first word with "=" is a command name, never an assignment', () => {
    const line = buildCommand(['A=b', 'true']);
    expect(line).toBe("exec 'A=b' true");
    // If it were an assignment, `exec true` would succeed; as a command name it is not found.
    expect(() => run('sh', line)).toThrow();
    // The same word after the first is a plain argument and stays unquoted (readable logs).
    expect(buildCommand(['printf', '%s\\0', 'A=b'])).toBe("exec printf '%s\\0' A=b");
  });

  it('nothing in a word is ever executed: a marker file is not created', () => {
    const marker = join(scratch, 'pwned');
    const evil = [
      `$(touch ${marker})`,
      `\`touch ${marker}\``,
      `; touch ${marker}`,
      `' ; touch ${marker} ; '`,
      `\n touch ${marker}`,
    ];
    run('bash', buildCommand(['true', ...evil]));
    run('sh', buildCommand(['printf', '%s', ...evil], { env: { X: evil.join('') }, cwd: scratch }));
    expect(() => execFileSync('test', ['-e', marker])).toThrow();
  });
});

describe('shQuote / buildCommand output', () => {
  it('leaves safe words bare and single-quotes the rest', () => {
    expect(shQuote('gpu1')).toBe('gpu1');
    expect(shQuote('/home/ob/ugro-1.0/run_3')).toBe('/home/ob/ugro-1.0/run_3');
    expect(shQuote('')).toBe("''");
    expect(shQuote('a b')).toBe("'a b'");
    expect(shQuote("it's")).toBe("'it'\\''s'");
    expect(shQuote('~')).toBe("'~'");
    expect(shQuote('*')).toBe("'*'");
    expect(shQuote('A=b', true)).toBe("'A=b'");
    expect(shQuote('A=b')).toBe('A=b');
  });

  it('env goes through `env` with each NAME=value quoted; cwd is a quoted `cd … &&`', () => {
    expect(buildCommand(['python3', 'train.py'], { env: { RANK: '1', MSG: 'a b' }, cwd: '/home/ob/my runs' })).toBe(
      "cd '/home/ob/my runs' && exec env RANK=1 'MSG=a b' python3 train.py",
    );
  });

  it('refuses an empty argv and invalid env names (no way to smuggle code through a name)', () => {
    expect(() => buildCommand([])).toThrow(/empty argv/);
    expect(() => buildCommand(['true'], { env: { 'A;id': 'x' } })).toThrow(/invalid environment variable name/);
    expect(() => buildCommand(['true'], { env: { '1A': 'x' } })).toThrow(/invalid environment variable name/);
    expect(() => buildCommand(['true'], { env: { 'A B': 'x' } })).toThrow(/invalid environment variable name/);
    // Both are checked where they come in: reaching here is a bug (a stack, "a bug in ugro").
    expect(() => buildCommand([])).toThrow(InternalError);
    expect(() => buildCommand(['true'], { env: { 'A B': 'x' } })).toThrow(InternalError);
  });

  it('regression: a word starting with "=" is quoted (zsh expands =cmd to a path)', () => {
    // The header says "Quote one word for sh/bash/zsh"; zsh (EQUALS, on by default) turns a
    // bare `=ls` into `/usr/bin/ls`. A remote user whose login shell is zsh gets a changed argv.
    expect(shQuote('=ls')).toBe("'=ls'");
    expect(shQuote('=')).toBe("'='");
  });
});
