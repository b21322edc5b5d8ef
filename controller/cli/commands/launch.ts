/** `ugro launch --name N …`: the seed's command; writes a TrainingJob for the reference scripts/train.py. */
import type { Command } from 'commander';
import { UgroError, UsageError } from '../../../config/errors.ts';
import { OWNER_ANNOTATION } from '../../api/annotations.ts';
import { intFlag, optionalIntFlag, positiveNumberFlag, requireJobName } from '../args.ts';
import type { CliContext } from '../context.ts';
import { ownerFrom } from '../owner.ts';

interface LaunchOptions {
  name: string;
  model: string;
  dataset: string;
  epochs: string;
  lr?: string;
  batchSize?: string;
  priority: string;
  nodes?: string;
  nprocPerNode: string;
  force?: boolean;
  owner?: string;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('launch')
    .description("write a TrainingJob for the reference script (the seed's launch command)")
    .requiredOption('--name <name>', 'job name (a DNS-1123 label)')
    .option('--model <model>', 'model', 'tiny-mlp')
    .option('--dataset <dataset>', 'dataset', 'synthetic')
    .option('--epochs <n>', 'epochs (1..1000000)', '1')
    .option('--lr <x>', 'learning rate (a number > 0)')
    .option('--batch-size <n>', 'batch size per rank (1..1000000)')
    .option('--priority <p>', 'high|normal|low or an integer -1000..1000', 'normal')
    .option('--nodes <k>', 'number of hosts, 1..1024 (default: all hosts)')
    .option('--nproc-per-node <n>', 'processes per host: 1..64, or gpu (one per GPU)', '1')
    .option('--owner <user>', "an admin: make it this user's job (default: $UGRO_OWNER; else the account writing it)")
    .option('--force', 'write it although the jobs dir follows git (an emergency: OutOfSync until git agrees)')
    .action((o: LaunchOptions) => launch(ctx, o));
}

function priorityFlag(raw: string): string | number {
  if (/^-?\d+$/.test(raw)) return intFlag('--priority', raw, -1000, 1000);
  if (['high', 'normal', 'low'].includes(raw)) return raw;
  throw new UsageError(`--priority must be high, normal, low or an integer -1000..1000 (got ${JSON.stringify(raw)})`);
}

async function launch(ctx: CliContext, o: LaunchOptions): Promise<void> {
  const name = requireJobName(o.name, '--name');
  const epochs = intFlag('--epochs', o.epochs, 1, 1_000_000);
  if (o.lr !== undefined) positiveNumberFlag('--lr', o.lr);
  const batchSize = optionalIntFlag('--batch-size', o.batchSize, 1, 1_000_000);
  const priority = priorityFlag(o.priority);
  const nodesFlag = optionalIntFlag('--nodes', o.nodes, 1, 1024);
  const owner = ownerFrom(o.owner, ctx.env);
  const nproc = o.nprocPerNode === 'gpu' ? 'gpu' : intFlag('--nproc-per-node', o.nprocPerNode, 1, 64);

  const [{ stringify }, { formatIssue }, { API_VERSION, KIND, parseTrainingJob }, jobs, { join }, { mkdir }] =
    await Promise.all([
      import('../yaml.ts'),
      import('../../../config/errors.ts'),
      import('../../api/trainingjob.ts'),
      import('../jobs.ts'),
      import('node:path'),
      import('node:fs/promises'),
    ]);
  const args = ['--model', o.model, '--dataset', o.dataset, '--epochs', String(epochs)];
  if (o.lr !== undefined) args.push('--lr', o.lr);
  if (batchSize !== undefined) args.push('--batch-size', String(batchSize));
  const job = {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      name,
      labels: { 'ugro.dev/launched-by': 'ugro-launch' },
      ...(owner ? { annotations: { [OWNER_ANNOTATION]: owner } } : {}),
    },
    spec: {
      script: 'train.py',
      args,
      nodes: nodesFlag ?? (await ctx.loadCluster()).hosts.length,
      nprocPerNode: nproc,
      priority,
      checkpoint: {},
    },
  };
  const text = stringify(job);
  const res = parseTrainingJob(text);
  if (!res.ok) throw new UsageError(res.issues.map((i) => formatIssue('launch', i)).join('\n'));
  const store = jobs.openStore(ctx);
  const gitWarning = (await import('../../gitops/state.ts')).refuseIfGitManaged(store.dir, o.force);
  if (owner && owner !== (await import('../authz.ts')).actor())
    await (await import('../authz.ts')).mayI(ctx, 'set-owner', { name }, owner);
  if (await store.specFile(name))
    throw new UgroError(
      `trainingjob/${name} already exists in ${store.dir}: pick another --name, or \`ugro delete job ${name}\` first`,
    );
  try {
    await mkdir(store.dir, { recursive: true });
  } catch (e) {
    throw new UgroError(`cannot create ${store.dir}: ${(e as Error).message}`);
  }
  await jobs.writeJobFile(join(store.dir, `${name}.yaml`), text);
  ctx.io.out(`trainingjob/${name} created in ${store.dir} (the controller starts it; watch with \`ugro get jobs -w\`)`);
  if (gitWarning) ctx.io.err(gitWarning);
}
