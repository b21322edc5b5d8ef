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
 */
import { Command, CommanderError } from 'commander';
import { isSystemError, UgroError } from '../../config/errors.ts';
import * as apply from './commands/apply.ts';
import * as cancel from './commands/cancel.ts';
import * as config from './commands/config.ts';
import * as controller from './commands/controller.ts';
import * as del from './commands/delete.ts';
import * as describe from './commands/describe.ts';
import * as events from './commands/events.ts';
import * as exporter from './commands/export.ts';
import * as get from './commands/get.ts';
import * as health from './commands/health.ts';
import * as hosts from './commands/hosts.ts';
import * as launch from './commands/launch.ts';
import * as logs from './commands/logs.ts';
import * as results from './commands/results.ts';
import * as resume from './commands/resume.ts';
import * as status from './commands/status.ts';
import * as sync from './commands/sync.ts';
import * as usage from './commands/usage.ts';
import * as validate from './commands/validate.ts';
import { CliContext, type CliDeps, type Env, type GlobalFlags, type Io } from './context.ts';

export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3 } as const;

/** In `ugro --help` order. */
const VERBS = [
  health,
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
  usage,
  exporter,
];

export function buildProgram(io: Io, env: Env, deps: CliDeps = {}): { program: Command; ctx: CliContext } {
  const program = new Command('ugro');
  const ctx = new CliContext(io, env, () => program.opts<GlobalFlags>(), deps);
  program
    .description('UGRO: the Unified GPU Resource Orchestrator: multi-node torchrun training on your own GPU machines')
    .option('--cluster <file>', 'cluster inventory (default: $UGRO_CLUSTER or config/cluster.yaml)')
    .option('--jobs <dir>', 'jobs directory (default: $UGRO_JOBS or ./jobs)')
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
    return e.exitCode === EXIT.usage || e.exitCode === EXIT.notFound ? e.exitCode : EXIT.failure;
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
  const { program, ctx } = buildProgram(io, env, deps);
  try {
    await program.parseAsync(argv);
    return ctx.outcome === 'failed' ? EXIT.failure : EXIT.ok;
  } catch (e) {
    return report(e, io);
  } finally {
    ctx.close();
  }
}
