/**
 * PURE: which sbatch option an extra #SBATCH line of the cluster file's `slurm.sbatch` sets, read
 * the way sbatch reads it (getopt_long): a long option may be abbreviated to any unambiguous
 * prefix (`--out=x` is `--output=x`), its value may follow as the next word (`--output x`), and
 * many options have a short form (`-o x`, `-ox`, `-Ho x`). A line that sets an option UGRO owns,
 * in any of these spellings, is refused, naming the option and what to write instead.
 *
 * The tables are sbatch 22.05's (Debian 12's slurm-wlm), as sbatch itself reports them
 * (`sbatch -v`, and its "ambiguous; possibilities" list per first letter); tests/lab/slurm.test.ts
 * checks this module against the real sbatch. A newer sbatch may add options: a line that is a
 * prefix of an owned option is refused whatever else it may abbreviate (it is ambiguous at best).
 */

/** Every long option of sbatch 22.05, hidden aliases included. */
const SBATCH_LONG = `account acctg-freq array batch begin bb bbf chdir cluster cluster-constraint clusters comment
  constraint container context contiguous core-spec cores-per-socket cpu-freq cpus-per-gpu cpus-per-task deadline
  delay-boot dependency distribution error exclude exclusive export export-file extra-node-info get-user-env gid
  gpu-bind gpu-freq gpus gpus-per-node gpus-per-socket gpus-per-task gres gres-flags help hint hold ignore-pbs input
  job-name kill-on-invalid-dep licenses mail-type mail-user mcs-label mem mem-bind mem-per-cpu mem-per-gpu mincpus
  network nice no-kill no-requeue nodefile nodelist nodes ntasks ntasks-per-core ntasks-per-gpu ntasks-per-node
  ntasks-per-socket ntasks-per-tres open-mode output overcommit oversubscribe parsable partition power prefer
  priority profile propagate qos quiet reboot requeue reservation signal sockets-per-node spread-job switches
  tasks-per-node test-only thread-spec threads-per-core time time-min tmp uid usage use-min-nodes verbose version
  wait wait-all-nodes wckey wrap`.split(/\s+/);

/**
 * Short options without a value: more may follow in the same word (`-Ho x`). The others
 * (abcdeikmnoptwxABCDFGJLMNS) take the rest of the word, or the next one, as their value.
 */
const SHORT_FLAG = 'hsvHOQWV';
/** The short options whose long form UGRO owns. */
const SHORT_OWNED: Record<string, string> = {
  a: 'array',
  e: 'error',
  h: 'help',
  n: 'ntasks',
  o: 'output',
  p: 'partition',
  q: 'qos',
  t: 'time',
  A: 'account',
  D: 'chdir',
  J: 'job-name',
  M: 'clusters',
  N: 'nodes',
  Q: 'quiet',
  V: 'version',
  W: 'wait',
};

const REMOVE = 'remove the line';
const NO_SUBMIT = `sbatch would then not submit the job, or not answer the job id UGRO reads: ${REMOVE}`;

/**
 * Options UGRO writes into every batch script, or that would break how it submits and follows the
 * job, each with what to write instead. Keys are the names sbatch reports (`sbatch -v`).
 */
const OWNED: Record<string, string> = {
  'job-name': `UGRO names the job after its run (how it finds the job again): ${REMOVE}`,
  nodes: "set the job's spec.nodes",
  ntasks: "UGRO starts one task per node and torchrun the ranks: set the job's spec.nprocPerNode",
  'ntasks-per-node': "UGRO starts one task per node and torchrun the ranks: set the job's spec.nprocPerNode",
  output: `UGRO reads the batch output from the run dir (each rank's log: ugro logs --rank N): ${REMOVE}`,
  error: `UGRO reads the batch output from the run dir (each rank's log: ugro logs --rank N): ${REMOVE}`,
  chdir: 'the job runs in its run dir on the shared storage: set slurm.paths',
  requeue: "set the job's spec.restartPolicy (restarts allowed: --requeue)",
  'no-requeue': "set the job's spec.restartPolicy (no restarts: --no-requeue)",
  signal: "set the job's spec.preemption.graceSeconds (SIGTERM that long before the time limit)",
  export: "set the job's spec.env",
  partition: 'set slurm.partition',
  account: 'set slurm.account',
  qos: 'set slurm.qos, or slurm.priority.qos by priority class',
  nice: "set the job's spec.priority (slurm.priority.nice turns it into --nice)",
  time: "set the job's spec.activeDeadlineSeconds",
  'gpus-per-node': "set slurm.gpus_per_node or the job's spec.resources.gpusPerNode",
  'kill-on-invalid-dep': `UGRO's value is what it expects: ${REMOVE}`,
  parsable: NO_SUBMIT,
  wrap: `the batch script is UGRO's: ${REMOVE}`,
  array: `UGRO follows one Slurm job per run, not an array: ${REMOVE}`,
  clusters:
    "the job would go to another cluster, where UGRO does not look: point slurm.login at that cluster's login host",
  cluster:
    "the job would go to another cluster, where UGRO does not look: point slurm.login at that cluster's login host",
  wait: NO_SUBMIT,
  'test-only': NO_SUBMIT,
  quiet: NO_SUBMIT,
  help: NO_SUBMIT,
  usage: NO_SUBMIT,
  version: NO_SUBMIT,
};

/** Other names sbatch gives the same option. */
const ALIASES: Record<string, string> = { 'tasks-per-node': 'ntasks-per-node' };

/** The options an extra line may not set (the names sbatch reports). */
export const SBATCH_OWN_OPTIONS: readonly string[] = Object.keys(OWNED);

const ownedName = (name: string): string | undefined => (name in OWNED ? name : ALIASES[name]);

export interface OwnedOption {
  /** The option the line sets, as sbatch names it (`output`). */
  option: string;
  /** How the line spells it, when not as `--option`: `"--out" abbreviates --output`. */
  spelling?: string;
  /** What to write instead. */
  fix: string;
}

function owned(option: string, spelling?: string): OwnedOption {
  return { option, ...(spelling ? { spelling } : {}), fix: OWNED[option] };
}

/** The long option `--NAME` stands for, when it is one UGRO owns. */
function ownedLong(name: string): OwnedOption | undefined {
  if (!name) return undefined;
  const exact = ownedName(name);
  if (exact) return owned(exact, exact === name ? undefined : `--${name} is sbatch's other name for --${exact}`);
  if (SBATCH_LONG.includes(name)) return undefined; // another option, spelled out (`--gpus`)
  const mine = [...Object.keys(OWNED), ...Object.keys(ALIASES)].filter((o) => o.startsWith(name));
  if (!mine.length) return undefined;
  const option = ownedName(mine[0]) as string;
  const all = SBATCH_LONG.filter((o) => o.startsWith(name));
  const spelling =
    all.length <= 1 || all.every((o) => ownedName(o) === option)
      ? `--${name} abbreviates --${option}`
      : `--${name} abbreviates --${option} (or ${all
          .filter((o) => ownedName(o) !== option)
          .map((o) => `--${o}`)
          .join(', ')})`;
  return owned(option, spelling);
}

/** The owned option a word of short options (`-o`, `-ofile`, `-Ho`) sets, if any. */
function ownedShort(word: string): OwnedOption | undefined {
  for (const c of word.slice(1)) {
    const long = SHORT_OWNED[c];
    if (long) return owned(long, `-${c} is --${long}`);
    if (!SHORT_FLAG.includes(c)) return undefined; // a value follows (or sbatch refuses the letter)
  }
  return undefined;
}

/**
 * The option UGRO owns that this extra line would set, in whatever spelling: `--output=x`,
 * `--output x`, `--out=x`, `-o x`, `-ox`, `--tasks-per-node=2`. undefined: none.
 */
export function sbatchOwnedOption(line: string): OwnedOption | undefined {
  const word = line.trim().split(/\s+/)[0] ?? '';
  if (word.startsWith('--')) return ownedLong(word.slice(2).split('=')[0]);
  if (/^-[A-Za-z]/.test(word)) return ownedShort(word);
  return undefined;
}

/** One sbatch option, `--option` or `--option=value`, the value without spaces, quotes or shell characters. */
const EXTRA_LINE = /^--[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:/+@%=-]+)?$/;

/**
 * Why this extra #SBATCH line cannot go into UGRO's batch script, naming it; undefined when it
 * can. sbatch reads these lines as text: one plain option each, and none UGRO sets itself.
 */
export function sbatchLineProblem(line: string): string | undefined {
  const o = sbatchOwnedOption(line);
  if (o)
    return (
      `${JSON.stringify(line)} sets --${o.option}${o.spelling ? ` (${o.spelling})` : ''}, ` +
      `which UGRO sets itself: ${o.fix}`
    );
  if (EXTRA_LINE.test(line)) return undefined;
  const spaced = /^(--[a-z][a-z0-9-]*)\s+(\S+)$/.exec(line);
  return spaced
    ? `${JSON.stringify(line)}: write it as ${spaced[1]}=${spaced[2]} (one word: no spaces)`
    : `${JSON.stringify(line)} must be one sbatch option like "--mem=0" or "--constraint=a100" ` +
        '(the long name, no spaces, quotes or shell characters)';
}
