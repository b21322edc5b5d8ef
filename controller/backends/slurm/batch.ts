/**
 * PURE: the batch script UGRO submits with sbatch (and `ugro export job --to sbatch` prints).
 *
 *   #!/bin/sh
 *   # notes (what UGRO does that this script does not, for an export)
 *   #SBATCH lines          from checked values only (plan.ts, config/slurm.ts): never quoted text
 *   ugro_python=…          the few settings the body reads, each a checked number or quoted
 *   set -- UGRO_…=… -- JOB_ENV=… -- TRAINING COMMAND…    every word quoted with shQuote
 *   cat > rank.sh / slurm-node.sh <<'EOF' … EOF          UGRO's own files, as they are
 *   scripts/runtime/slurm/batch.sh                         the same body for every job
 *
 * Every line of the script is UGRO's: a word holding a line break is written as its quoted lines
 * joined by "$ugro_nl", so no job argument ("\n#SBATCH --x", say) can even look like a directive
 * (sbatch stops reading them at the first command anyway). The words reach the training process
 * byte for byte (tests/unit/slurm-batch.test.ts runs the script with hostile ones).
 */
import { assert, InternalError, UgroError } from '../../../config/errors.ts';
import { shQuote } from '../../../config/quote.ts';
import { sbatchLineProblem } from '../../../config/sbatch-options.ts';
import type { SlurmPlan } from './sbatch-plan.ts';

export interface BatchInput {
  /** --job-name: the run id (how squeue finds the job again). */
  runId: string;
  plan: SlurmPlan;
  /** The interpreter torchrun runs under on the nodes. */
  python: string;
  /** UGRO_* and the other variables UGRO sets (exported by the body, so every node gets them). */
  ugroEnv: Record<string, string>;
  /** The job's own env: exported on each node right before torchrun, after UGRO's. */
  jobEnv: Record<string, string>;
  /** What each rank runs (python -u script args, or command + args). */
  target: string[];
  /** Comment lines right after the shebang (an export lists what it leaves out). */
  notes?: string[];
}

/** UGRO's shell, as the batch script embeds it. */
export interface BatchScripts {
  /** scripts/runtime/slurm/batch.sh */
  body: string;
  /** scripts/runtime/slurm/node.sh */
  node: string;
  /** scripts/runtime/rank.sh */
  rank: string;
}

const RUN_ID = /^[A-Za-z0-9._-]{1,100}$/;
const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;
const PARTITION = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}(,[A-Za-z0-9_][A-Za-z0-9._-]{0,63})*$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A number for an #SBATCH line; the job's schema leaves some unbounded (nodes, the deadline), so this is input. */
function int(n: number, min: number, max: number, what: string): number {
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UgroError(`slurm batch: ${what} ${n} is out of range (Slurm takes ${min}..${max})`);
  return n;
}

/** A name for an #SBATCH line: UGRO's run id, or a name config/slurm.ts checked with the same pattern. */
function checked(s: string, re: RegExp, what: string): string {
  assert(re.test(s), () => `slurm batch: ${what} ${JSON.stringify(s)} cannot go into an #SBATCH line`);
  return s;
}

/** The #SBATCH lines. Values are checked again here: this is text sbatch reads. */
export function sbatchHeader(runId: string, plan: SlurmPlan): string[] {
  const { min, max } = plan.nodes;
  int(min, 1, 100_000, 'nodes');
  int(max, min, 100_000, 'nodes max');
  const lines = [
    `--job-name=${checked(runId, RUN_ID, 'run id')}`,
    `--nodes=${min === max ? min : `${min}-${max}`}`,
    '--ntasks-per-node=1',
    '--output=slurm-%j.out',
    plan.requeue ? '--requeue' : '--no-requeue',
    `--signal=TERM@${int(plan.signalSeconds, 1, 65_535, 'signal seconds')}`,
  ];
  if (plan.gpusPerNode !== undefined) lines.push(`--gpus-per-node=${int(plan.gpusPerNode, 1, 64, 'gpus per node')}`);
  if (plan.partition) lines.push(`--partition=${checked(plan.partition, PARTITION, 'partition')}`);
  if (plan.account) lines.push(`--account=${checked(plan.account, NAME, 'account')}`);
  if (plan.qos) lines.push(`--qos=${checked(plan.qos, NAME, 'qos')}`);
  if (plan.nice !== undefined) lines.push(`--nice=${int(plan.nice, 0, 2_147_483_645, 'nice')}`);
  if (plan.timeMinutes !== undefined) lines.push(`--time=${int(plan.timeMinutes, 1, 525_600_000, 'time')}`);
  for (const x of plan.extra) {
    // Checked at load time too (config/slurm.ts); again here, as this is text sbatch reads.
    const problem = sbatchLineProblem(x);
    if (problem) throw new UgroError(`slurm batch: extra line ${problem}`);
    lines.push(x);
  }
  return lines.map((l) => `#SBATCH ${l}`);
}

/** shQuote, with each line break outside the quotes as "$ugro_nl": the word stays on one line. */
function lineQuote(word: string): string {
  return word
    .split('\n')
    .map((l) => (l === '' ? "''" : shQuote(l)))
    .join('"$ugro_nl"');
}

/** A here-document of UGRO's own text, which must not contain its end marker. */
function heredoc(file: string, marker: string, text: string): string {
  if (text.split('\n').includes(marker)) throw new InternalError(`slurm batch: ${file} contains the line ${marker}`);
  return `cat >${file} <<'${marker}'\n${text.replace(/\n?$/, '\n')}${marker}\nchmod 755 ${file}`;
}

export function batchScript(b: BatchInput, scripts: BatchScripts): string {
  const p = b.plan;
  const words = (env: Record<string, string>) =>
    Object.entries(env).map(([k, v]) => {
      // UGRO's names, and the job's (its schema checks them).
      assert(ENV_NAME.test(k), () => `slurm batch: ${JSON.stringify(k)} is not a variable name`);
      return lineQuote(`${k}=${v}`);
    });
  assert(b.target.length, 'slurm batch: no training command');
  // The job's words are checked by its schema, but python and some of UGRO's values come from the cluster file.
  const all = [b.python, ...b.target, ...Object.values(b.ugroEnv), ...Object.values(b.jobEnv)];
  if (all.some((w) => w.includes('\0'))) throw new UgroError('slurm batch: a NUL byte cannot be passed to a program');
  const nproc = int(p.nproc, 1, 64, 'ranks per node');
  const argv = [...words(b.ugroEnv), '--', ...words(b.jobEnv), '--', ...b.target.map(lineQuote)];
  return [
    '#!/bin/sh',
    ...(b.notes ?? []).map((n) => `# ${n.replace(/\n/g, ' ')}`.trimEnd()),
    ...sbatchHeader(b.runId, p),
    '# Written by UGRO. The values below are quoted for sh; the job arguments are passed as they are.',
    "ugro_nl=$(printf '\\nx') && ugro_nl=${ugro_nl%x}",
    `ugro_python=${lineQuote(b.python)}`,
    `ugro_nproc=${nproc}`,
    `ugro_port=${int(p.rdzvPort, 1, 65_535, 'port')}`,
    `ugro_join_timeout=${int(p.joinTimeoutSeconds, 1, 3600, 'join timeout')}`,
    // One word per line: a diff of two scripts shows which argument changed.
    `set -- \\\n  ${argv.join(' \\\n  ')}`,
    heredoc('rank.sh', 'UGRO_EOF_RANK_SH', scripts.rank),
    heredoc('slurm-node.sh', 'UGRO_EOF_NODE_SH', scripts.node),
    scripts.body.replace(/\n?$/, '\n'),
  ].join('\n');
}
