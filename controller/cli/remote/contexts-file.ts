/**
 * Reading and writing the contexts file (schema: config/contexts.ts). Read like every input
 * (a regular file, size-capped, then validated: each problem with file:line and field); written
 * whole and atomically, 0600 (it names keys and hosts), in a directory made 0700.
 */
import { chmod, mkdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { ContextsFile } from '../../../config/contexts.ts';
import { UgroError, ValidationError } from '../../../config/errors.ts';
import { readRegularFile, writeFileAtomic } from '../../store/files.ts';
import type { Env } from '../context.ts';

const MAX_BYTES = 256 * 1024;

/** `${XDG_CONFIG_HOME:-~/.config}/ugro/contexts.yaml` (a relative XDG_CONFIG_HOME is ignored, as the spec says). */
export function contextsPath(env: Env): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg?.startsWith('/') ? xdg : join(env.HOME || homedir(), '.config');
  return join(base, 'ugro', 'contexts.yaml');
}

/** `~/x` to this user's home; other paths as they are. */
export function expandHome(p: string, env: Env): string {
  return p.startsWith('~/') ? join(env.HOME || homedir(), p.slice(2)) : p;
}

/**
 * The current context's name without validating the file (every local command asks; the full
 * parse loads the YAML and schema libraries). A file with a `current:` line is parsed in full.
 */
export async function currentContextCheap(file: string): Promise<string | undefined> {
  const r = await readRegularFile(file, MAX_BYTES);
  if (!r.ok) {
    if (r.missing) return undefined;
    throw new UgroError(`${file}: ${r.message} (the contexts file: fix or remove it)`);
  }
  if (!/^current\s*:/m.test(r.text)) return undefined;
  return (await loadContexts(file)).current;
}

/** The file, validated (no file: no contexts). */
export async function loadContexts(file: string): Promise<ContextsFile> {
  const r = await readRegularFile(file, MAX_BYTES);
  if (!r.ok) {
    if (r.missing) return { contexts: {} };
    throw new UgroError(`${file}: ${r.message} (the contexts file: fix or remove it)`);
  }
  const { parseContexts } = await import('../../../config/contexts.ts');
  const p = parseContexts(r.text);
  if (!p.ok) throw new ValidationError(file, p.issues);
  return p.value;
}

/** Write the whole file (0600) in a private directory. */
export async function saveContexts(file: string, value: ContextsFile): Promise<void> {
  const { stringify } = await import('../yaml.ts');
  const dir = dirname(file);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const text =
      '# ugro contexts (`ugro context --help`): where `ugro --context NAME` runs its command, over SSH.\n' +
      stringify({ ...(value.current ? { current: value.current } : {}), contexts: value.contexts });
    await writeFileAtomic(file, text, 0o600);
    await chmod(file, 0o600);
  } catch (e) {
    throw new UgroError(`cannot write ${file}: ${(e as Error).message}`, { cause: e });
  }
}
