/**
 * The `ugro` CLI entry: the only place that reads argv, turns errors into a message, and decides
 * the exit code (docs/conventions.md, "Errors"). Each verb lives in commands/<verb>.ts (kubectl's
 * pkg/cmd/<verb> layout) and loads what it needs when it runs: starting `ugro` costs commander
 * and the registrations, nothing else.
 *
 * Exit codes:
 *   0  ok
 *   1  the operation failed (a host NotReady, an invalid file, an I/O or SSH error, a timeout)
 *   2  usage: the command line is wrong (unknown command or flag, a value out of range, a name
 *      that is not a job name)
 *   3  not found: a job, rank or host named on the command line does not exist
 *   4  forbidden: only the job's owner or an admin may do that (issue 17)
 *
 * With a context (`--context NAME`, UGRO_HOST, UGRO_CONTEXT, `ugro context use`), the command runs
 * on the controller host over ssh instead (remote/): its exit code is the remote one.
 */
import { Command, CommanderError, Option } from 'commander';
import { isSystemError, UgroError } from '../../config/errors.ts';
import * as apply from './commands/apply.ts';
import * as cancel from './commands/cancel.ts';
import * as checkpoints from './commands/checkpoints.ts';
import * as config from './commands/config.ts';
import * as contextVerb from './commands/context.ts';
import * as controller from './commands/controller.ts';
import * as del from './commands/delete.ts';
import * as describe from './commands/describe.ts';
import * as doctor from './commands/doctor.ts';
import * as events from './commands/events.ts';
import * as exporter from './commands/export.ts';
import * as get from './commands/get.ts';
import * as health from './commands/health.ts';
import * as hosts from './commands/hosts.ts';
import * as launch from './commands/launch.ts';
import * as logs from './commands/logs.ts';
import * as models from './commands/models.ts';
import * as promote from './commands/promote.ts';
import * as results from './commands/results.ts';
import * as resume from './commands/resume.ts';
import * as status from './commands/status.ts';
import * as sync from './commands/sync.ts';
import * as usage from './commands/usage.ts';
import * as validate from './commands/validate.ts';
import * as whoami from './commands/whoami.ts';
import { CliContext, type CliDeps, type Env, type GlobalFlags, type Io } from './context.ts';
import { chooseWhere, type SplitArgv, splitArgv } from './remote/select.ts';

export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3, forbidden: 4 } as const;
const KEPT_CODES: number[] = [EXIT.usage, EXIT.notFound, EXIT.forbidden];

/** In `ugro --help` order. */
const VERBS = [
  health,
  doctor,
  get,
  config,
  hosts,
  controller,
  sync,
  apply,
  launch,
  validate,
  describe,
  logs,
  del,
  cancel,
  resume,
  status,
  events,
  results,
  checkpoints,
  promote,
  models,
  usage,
  whoami,
  exporter,
  contextVerb,
];

export function buildProgram(io: Io, env: Env, deps: CliDeps = {}): { program: Command; ctx: CliContext } {
  const program = new Command('ugro');
  const ctx = new CliContext(io, env, () => program.opts<GlobalFlags>(), deps);
  program
    .description('UGRO: the Unified GPU Resource Orchestrator: multi-node torchrun training on your own GPU machines')
    .option('--cluster <file>', 'cluster inventory (default: $UGRO_CLUSTER or config/cluster.yaml)')
    .option('--jobs <dir>', 'jobs directory (default: $UGRO_JOBS or ./jobs)')
    // Taken out of argv by main() before commander runs (remote/select.ts); here for --help.
    .option(
      '--context <name>',
      'run on this context\'s controller host over ssh (`ugro context --help`; "local": here)',
    )
    .addOption(new Option('--exit-with-stdin', 'exit when stdin closes (set by a remote ugro)').hideHelp())
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) });
  for (const verb of VERBS) verb.register(program, ctx);
  return { program, ctx };
}

/** What an error means for the person at the terminal, and the exit code it maps to. */
function report(e: unknown, io: Io): number {
  // Commander has printed its own message (unknown option, missing argument, --help).
  if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
  if (e instanceof UgroError) {
    io.err(`error: ${e.message}`);
    return KEPT_CODES.includes(e.exitCode) ? e.exitCode : EXIT.failure;
  }
  if (isSystemError(e)) {
    io.err(`error: ${e.message}`);
    return EXIT.failure;
  }
  io.err(`error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  io.err('This is a bug in ugro: please report it with the command you ran and the lines above.');
  return EXIT.failure;
}

const processIo: Io = {
  out: (s) => process.stdout.write(`${s}\n`),
  err: (s) => process.stderr.write(`${s}\n`),
  write: (chunk) => process.stdout.write(chunk),
};

export async function main(
  argv: string[],
  io: Io = processIo,
  env: Env = process.env,
  deps: CliDeps = {},
): Promise<number> {
  let split: SplitArgv;
  try {
    split = splitArgv(argv.slice(2));
    const where = await chooseWhere(split, env, async () => {
      const f = await import('./remote/contexts-file.ts');
      return f.currentContextCheap(f.contextsPath(env));
    });
    if (where.kind !== 'local') return await (await import('./remote/dispatch.ts')).dispatchRemote(where, split, env);
  } catch (e) {
    return report(e, io);
  }
  const { program, ctx } = buildProgram(io, env, deps);
  const stopLifeline = split.words.slice(0, Math.max(0, split.verb)).includes('--exit-with-stdin')
    ? lifeline()
    : undefined;
  try {
    await program.parseAsync([...argv.slice(0, 2), ...split.words]);
    return ctx.outcome === 'failed' ? EXIT.failure : EXIT.ok;
  } catch (e) {
    return report(e, io);
  } finally {
    stopLifeline?.();
    ctx.close();
  }
}

/**
 * Run by a remote ugro (remote/ssh.ts): when stdin closes, the ssh connection that started this
 * command is gone (Ctrl-C, or the local ugro died), and sshd does not stop a command without a
 * terminal. So end the process, the one place besides bin/ugro.mjs that does. Returns the undo.
 */
function lifeline(): () => void {
  const gone = () => process.exit(129);
  process.stdin.on('end', gone);
  process.stdin.on('error', gone);
  process.stdin.on('data', () => undefined); // read and drop: nothing is sent on it
  return () => {
    process.stdin.off('end', gone);
    process.stdin.off('error', gone);
    process.stdin.destroy();
  };
}
