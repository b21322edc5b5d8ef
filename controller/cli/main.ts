/**
 * The `ugro` CLI. The only place that reads argv and decides the exit code; typed errors
 * from anywhere below become a message and a code here (STYLE.md item 8).
 */
import { Command, CommanderError } from 'commander';
import { UgroError } from '../../config/errors.ts';
import { CliContext, type Io } from './context.ts';
import { registerJobCommands } from './jobs.ts';
import { registerNodeCommands } from './nodes.ts';

declare module 'commander' {
  interface Command {
    exitCodeValue?: number;
  }
}

export function buildProgram(
  io: Io,
  env: Record<string, string | undefined>,
): { program: Command; ctx: () => CliContext; close: () => void } {
  const program = new Command('ugro');
  let context: CliContext | undefined;
  const ctx = () => (context ??= new CliContext(io, env, () => program.opts().cluster as string | undefined));
  program
    .description('UGRO: the Unified GPU Resource Orchestrator: multi-node torchrun training on your own GPU machines')
    .option('--cluster <file>', 'cluster inventory (default: $UGRO_CLUSTER or config/cluster.yaml)')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) });
  const get = program.command('get').description('list resources: nodes, jobs');
  registerNodeCommands(program, ctx, get);
  registerJobCommands(program, ctx, get);
  return { program, ctx, close: () => context?.close() };
}

export async function main(
  argv: string[],
  io: Io = { out: (s) => console.log(s), err: (s) => console.error(s) },
  env = process.env,
): Promise<number> {
  const { program, close } = buildProgram(io, env);
  try {
    await program.parseAsync(argv);
    return program.exitCodeValue ?? 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof UgroError) {
      io.err(`error: ${e.message}`);
      return e.exitCode;
    }
    io.err(`error: ${(e as Error).stack ?? String(e)}`);
    return 1;
  } finally {
    close();
  }
}
