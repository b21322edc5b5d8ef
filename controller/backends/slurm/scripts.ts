/**
 * The Slurm backend's shell, in scripts/runtime/slurm/ beside the rest of the host runtime: the
 * scripts run on the login host (sent as lib.sh + "\n" + slurm/NAME.sh, run as `sh -c TEXT
 * ugro-slurm-NAME ARGS…`), and the three files every batch script embeds (its body batch.sh,
 * the per-node launcher node.sh, and rank.sh).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InternalError } from '../../../config/errors.ts';
import { runtimeDir } from '../../base/install.ts';
import type { BatchScripts } from './batch.ts';

export type SlurmScript = 'prepare' | 'submit' | 'cancel' | 'squeue' | 'observe' | 'probe';

/** Every script of scripts/runtime/slurm/ run on the login host (batch.sh and node.sh are embedded). */
const SLURM_SCRIPTS: readonly SlurmScript[] = ['prepare', 'submit', 'cancel', 'squeue', 'observe', 'probe'];

export interface SlurmScripts {
  /** The text for `sh -c` (observe: observe.sh in a subshell first, then slurm/observe.sh). */
  text(name: SlurmScript): string;
  batch: BatchScripts;
}

/** scripts/runtime/slurm/ (`dir` is scripts/runtime: lib.sh, observe.sh and rank.sh come from there). */
function loadSlurmScripts(dir: string = runtimeDir()): SlurmScripts {
  const read = (name: string) => readFileSync(join(dir, `${name}.sh`), 'utf8');
  const lib = read('lib');
  const texts = new Map<SlurmScript, string>(
    SLURM_SCRIPTS.map((n) => [
      n,
      // observe: observe.sh as it is (same records, same validation) in a subshell, then what
      // only a Slurm run dir has.
      n === 'observe' ? `${lib}\n(\n${read('observe')}\n)\n${read('slurm/observe')}` : `${lib}\n${read(`slurm/${n}`)}`,
    ]),
  );
  return {
    text(name) {
      const t = texts.get(name);
      if (t === undefined) throw new InternalError(`no Slurm script named ${JSON.stringify(name)}`);
      return t;
    },
    batch: { body: read('slurm/batch'), node: read('slurm/node'), rank: read('rank') },
  };
}

let loaded: SlurmScripts | undefined;
/** The scripts shipped with this code, read on first use. */
export function slurmScripts(): SlurmScripts {
  loaded ??= loadSlurmScripts();
  return loaded;
}
