/**
 * The host runtime's shell, read from scripts/runtime/ once per process: every piece of shell
 * UGRO runs on a host lives there, none in TypeScript. A script is sent as lib.sh + "\n" +
 * NAME.sh (the shared helpers first) and run as `sh -c TEXT ugro-NAME ARGS…`; rank.sh is the
 * exception: launch.sh writes it into the run dir as it is.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InternalError } from '../../../config/errors.ts';
import { runtimeDir } from '../../base/install.ts';

/** The scripts a HostTransport runs for the runtime (scripts/runtime/NAME.sh). */
export type RuntimeScript =
  | 'launch'
  | 'observe'
  | 'stop'
  | 'wait'
  | 'archive'
  | 'lease'
  | 'ports'
  | 'scripts-hash'
  | 'read-log'
  | 'follow-log'
  | 'checksum'
  | 'metrics'
  | 'progress'
  | 'checkpoints';

/** What `ugro doctor` runs on hosts (ssh/doctor.ts). */
export type DoctorScript = 'doctor' | 'doctor-listen' | 'doctor-connect' | 'doctor-allreduce';

/** Everything sent to hosts with lib.sh in front: the runtime's scripts, health's probe and the doctor's. */
export type SentScript = RuntimeScript | 'probe' | DoctorScript;

export const SENT_SCRIPTS: readonly SentScript[] = [
  'launch',
  'observe',
  'stop',
  'wait',
  'archive',
  'lease',
  'ports',
  'scripts-hash',
  'read-log',
  'follow-log',
  'checksum',
  'metrics',
  'progress',
  'checkpoints',
  'probe',
  'doctor',
  'doctor-listen',
  'doctor-connect',
  'doctor-allreduce',
];

export interface RuntimeScripts {
  /** The directory they were read from. */
  dir: string;
  /** `lib.sh + "\n" + NAME.sh`: the text for `sh -c`. */
  text(name: SentScript): string;
  /** rank.sh as it is (launch.sh writes it into the run dir). */
  rank: string;
}

/** Read every script of `dir` now (a missing one is an error here, not at its first use). */
export function loadRuntimeScripts(dir: string = runtimeDir()): RuntimeScripts {
  const read = (name: string) => readFileSync(join(dir, `${name}.sh`), 'utf8');
  const lib = read('lib');
  const texts = new Map(SENT_SCRIPTS.map((n) => [n, `${lib}\n${read(n)}`] as const));
  return {
    dir,
    rank: read('rank'),
    text(name) {
      const t = texts.get(name);
      if (t === undefined) throw new InternalError(`no host script named ${JSON.stringify(name)}`);
      return t;
    },
  };
}

let loaded: RuntimeScripts | undefined;
/** The scripts next to this code, read on first use and kept (they ship with it). */
export function runtimeScripts(): RuntimeScripts {
  loaded ??= loadRuntimeScripts();
  return loaded;
}
