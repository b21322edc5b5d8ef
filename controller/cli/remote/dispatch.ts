/**
 * A command with a context (or UGRO_HOST): resolve where it goes, read the local file `apply -f`
 * names, and run ugro there over ssh (remote/ssh.ts). Loaded only when a command runs remotely.
 */
import { type ContextEntry, parseSshHost, ugroWords } from '../../../config/contexts.ts';
import { UgroError, UsageError } from '../../../config/errors.ts';
import type { Env } from '../context.ts';
import { readInputFile } from '../jobs.ts';
import { contextsPath, expandHome, loadContexts } from './contexts-file.ts';
import { planRemote, type SplitArgv, type Where } from './select.ts';
import { type Remote, runRemote } from './ssh.ts';

const DEFAULT_KNOWN_HOSTS = '~/.ssh/known_hosts';
const DEFAULT_PERSIST_S = 60;

/** The context's entry (or UGRO_HOST's URL alone, with the user's ~/.ssh/known_hosts). */
async function entryFor(
  where: Exclude<Where, { kind: 'local' }>,
  env: Env,
): Promise<{ label: string; e: ContextEntry }> {
  if (where.kind === 'host') return { label: where.why, e: { host: where.url } };
  const file = contextsPath(env);
  const { contexts } = await loadContexts(file);
  if (!Object.hasOwn(contexts, where.name)) {
    const known = Object.keys(contexts);
    throw new UsageError(
      `no context named "${where.name}" (from ${where.why}) in ${file}; ` +
        (known.length ? `known: ${known.join(', ')}` : 'add one: ugro context add NAME --host ssh://user@host'),
    );
  }
  return { label: `context ${where.name}`, e: contexts[where.name] };
}

/** Where and how to connect, with the pins checked to exist before ssh is asked. */
export async function resolveRemote(where: Exclude<Where, { kind: 'local' }>, env: Env) {
  const { label, e } = await entryFor(where, env);
  const t = parseSshHost(e.host);
  if (!t.ok) throw new UsageError(`${where.why}: ${t.message}`);
  const knownHosts = expandHome(e.knownHosts ?? DEFAULT_KNOWN_HOSTS, env);
  const { lstatOrUndefined } = await import('../../store/files.ts');
  if (!(await lstatOrUndefined(knownHosts)))
    throw new UgroError(
      `${label}: ${knownHosts} does not exist, and ugro only connects to a host whose key is pinned. Pin it: ` +
        `ssh-keyscan -p ${t.value.port} -t ed25519 ${t.value.host} > ${knownHosts}, then compare ` +
        `ssh-keygen -lf ${knownHosts} with the host's own key ` +
        '(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub, run there)' +
        (where.kind === 'context' ? `; or set the context's knownHosts (ugro context add … --known-hosts FILE)` : ''),
    );
  const remote: Remote = {
    label,
    target: t.value,
    knownHosts,
    ...(e.identityFile ? { identityFile: expandHome(e.identityFile, env) } : {}),
    ugro: ugroWords(e),
    persistSeconds: e.controlPersistSeconds ?? DEFAULT_PERSIST_S,
  };
  return { remote, paths: { cluster: e.cluster, jobs: e.jobs } };
}

/** Run the command on the controller host; its exit code. */
export async function dispatchRemote(
  where: Exclude<Where, { kind: 'local' }>,
  split: SplitArgv,
  env: Env,
): Promise<number> {
  const { remote, paths } = await resolveRemote(where, env);
  const plan = planRemote(split, paths, true);
  let stdin: Parameters<typeof runRemote>[2]['stdin'] = plan.passStdin ? { kind: 'inherit' } : { kind: 'lifeline' };
  if (plan.sendFile !== undefined) {
    // Read here, with apply's own rules (a regular file, at most 1 MiB), and sent as its content.
    const input = await readInputFile(plan.sendFile);
    if (!input.ok) throw new UgroError(`${plan.sendFile}: ${input.message}`);
    stdin = { kind: 'data', data: input.text };
  }
  return runRemote(remote, plan.args, { stdin, env });
}
