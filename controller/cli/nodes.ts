/** Node commands: `ugro health`, `ugro get nodes`, `ugro hosts trust|list`, `ugro config …`. */

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { type Cluster, defaultExpandEnv, type Host, parseCluster, redactedClusterFile } from '../../config/cluster.ts';
import { formatIssue, ValidationError } from '../../config/errors.ts';
import { appendKnownHost, fingerprint, hostKeysOf, hostNames, readKnownHosts } from '../../config/known-hosts.ts';
import { HostError } from '../hosts/errors.ts';
import { type NodeHealth, probeCluster } from '../hosts/health.ts';
import { hostKeyAlgorithms } from '../hosts/ssh.ts';
import { fetchAllHostKeys, fetchHostKey, type PresentedKey } from '../hosts/trust.ts';
import type { CliContext } from './context.ts';
import { parseFormat, serialize, table } from './output.ts';

function gpuCell(n: NodeHealth): string {
  if (!n.gpus.length) return '-';
  return n.gpus
    .map((g) =>
      `${g.name.replace(/^NVIDIA (GeForce )?/, '')} ${Math.round(g.memoryTotalMiB / 1024)}GiB ${Number.isNaN(g.utilizationPct) ? '' : `${g.utilizationPct}%`}`.trim(),
    )
    .join(', ');
}

export function renderNodes(nodes: NodeHealth[]): string {
  return table(
    ['NODE', 'STATUS', 'ADDRESS', 'GPU', 'DRIVER', 'TORCH', 'PYTHON', 'DISK FREE', 'CLOCK', 'LATENCY', 'REASON'],
    nodes.map((n) => [
      n.name,
      n.status,
      `${n.user}@${n.address}`,
      gpuCell(n),
      n.gpus[0]?.driver ?? '-',
      n.torch
        ? `${n.torch.version}${n.torch.cuda !== 'none' ? ` (cuda ${n.torch.cuda})` : ' (cpu)'}`
        : n.torch === null
          ? 'no torch'
          : '-',
      n.python ?? '-',
      n.disk ? `${n.disk.freeGiB.toFixed(0)}GiB` : '-',
      n.clockOffsetMs !== undefined ? `${n.clockOffsetMs >= 0 ? '+' : ''}${Math.round(n.clockOffsetMs)}ms` : '-',
      n.rttMs !== undefined ? `${Math.round(n.rttMs)}ms` : '-',
      [...n.reasons, ...n.warnings.map((w) => `warning: ${w}`)].join('; ') || '-',
    ]),
  );
}

async function healthAction(ctx: CliContext, hosts: string[], opts: { output?: string }): Promise<number> {
  const format = parseFormat(opts.output);
  const cluster = ctx.loadCluster();
  const unknown = hosts.filter((h) => !cluster.hosts.some((x) => x.name === h));
  if (unknown.length)
    throw new HostError(
      unknown[0],
      'config',
      `not in ${cluster.file} (hosts: ${cluster.hosts.map((h) => h.name).join(', ')})`,
    );
  const pool = ctx.ssh();
  const nodes = await probeCluster(cluster, { connection: (h) => pool.host(h) }, hosts);
  if (format === 'table') ctx.io.out(renderNodes(nodes));
  else ctx.io.out(serialize(nodes, format === 'json' ? 'json' : 'yaml'));
  return nodes.every((n) => n.status === 'Ready') ? 0 : 1;
}

export function registerNodeCommands(program: Command, ctx: () => CliContext, get: Command): void {
  program
    .command('health')
    .description('probe every host (ssh, OS, python, torch, GPUs, disk, clock); exit 1 if any is NotReady')
    .argument('[hosts...]', 'only these hosts')
    .option('-o, --output <format>', 'table|json|yaml', 'table')
    .action(async (hosts: string[], opts) => {
      program.exitCodeValue = await healthAction(ctx(), hosts, opts);
    });

  get
    .command('nodes')
    .description('the hosts and their health (same probes as `ugro health`)')
    .argument('[hosts...]', 'only these hosts')
    .option('-o, --output <format>', 'table|json|yaml', 'table')
    .action(async (hosts: string[], opts) => {
      program.exitCodeValue = await healthAction(ctx(), hosts, opts);
    });

  const hosts = program.command('hosts').description('host keys: pin them (trust) and list them');
  hosts
    .command('trust')
    .description("fetch a host's SSH key, show its fingerprint, and pin it in known_hosts")
    .argument('<host...>', 'host names from the cluster file')
    .option(
      '--fingerprint <sha256>',
      'pin only the key with this fingerprint (compare with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host); repeat it for several',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .action(async (names: string[], opts: { fingerprint?: string[] }) => {
      const c = ctx();
      const cluster = c.loadCluster();
      let rc = 0;
      for (const name of names) {
        const h = cluster.hosts.find((x) => x.name === name);
        if (!h) throw new HostError(name, 'config', `not in ${cluster.file}`);
        try {
          if (!(await trustHost(h, opts.fingerprint ?? [], c.io))) rc = 1;
        } catch (e) {
          // One host that cannot be reached does not stop the others.
          c.io.err(`${name}: ${(e as Error).message.replace(new RegExp(`^${name}: `), '')}`);
          rc = 1;
        }
      }
      program.exitCodeValue = rc;
    });
  hosts
    .command('list')
    .description('hosts, addresses and pinned host-key fingerprints')
    .action(() => {
      const c = ctx();
      const cluster = c.loadCluster();
      c.io.out(
        table(
          ['HOST', 'ROLE', 'RANK', 'ADDRESS', 'USER', 'PINNED KEY'],
          cluster.hosts.map((h) => {
            const e = hostKeysOf(readKnownHosts(h.ssh.knownHosts), hostNames(h), h.port).pinned;
            return [
              h.name,
              h.role,
              String(h.rank),
              `${h.address}:${h.port}`,
              h.user,
              e.length
                ? e.map((x) => `${x.keyType} ${fingerprint(x.key)}`).join(', ')
                : `NONE (run \`ugro hosts trust ${h.name}\`)`,
            ];
          }),
        ),
      );
    });

  const config = program.command('config').description('the cluster inventory');
  config
    .command('show')
    .description('print the cluster file as UGRO reads it (variables expanded, defaults filled, secrets redacted)')
    .option('-o, --output <format>', 'yaml|json|table', 'yaml')
    .action((opts: { output?: string }) => {
      const c = ctx();
      const cluster = c.loadCluster();
      const f = parseFormat(opts.output);
      if (f === 'table') c.io.out(renderInventory(cluster));
      else c.io.out(serialize(redactedClusterFile(cluster), f === 'json' ? 'json' : 'yaml'));
    });
  const validate = (file: string | undefined) => {
    const c = ctx();
    const path = resolve(file ?? c.clusterFile);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new ValidationError(path, [{ path: '', message: `cannot read: ${(e as Error).message}` }]);
    }
    const res = parseCluster(text, path, defaultExpandEnv(c.env));
    if (!res.ok) {
      c.io.err(`${path}: invalid (${res.issues.length} problem${res.issues.length === 1 ? '' : 's'})`);
      for (const i of res.issues) c.io.err(`  ${formatIssue(path, i)}`);
      return { rc: 1 } as const;
    }
    c.io.out(
      `${path}: valid: cluster "${res.value.name}", ${res.value.hosts.length} hosts (${res.value.hosts.map((h) => h.name).join(', ')})`,
    );
    return { rc: 0, cluster: res.value } as const;
  };
  config
    .command('validate')
    .description('check a cluster file; lists every problem with file:line and field; exit 1 if invalid')
    .argument('[file]', 'cluster file (default: --cluster / UGRO_CLUSTER / config/cluster.yaml)')
    .action((file?: string) => {
      program.exitCodeValue = validate(file).rc;
    });
  config
    .command('test')
    .description('validate the cluster file, then probe every host (like `ugro health`)')
    .option('-o, --output <format>', 'table|json|yaml', 'table')
    .action(async (opts) => {
      const v = validate(undefined);
      program.exitCodeValue = v.rc !== 0 ? 1 : await healthAction(ctx(), [], opts);
    });
}

function renderInventory(c: Cluster): string {
  return table(
    ['HOST', 'ROLE', 'RANK', 'ADDRESS', 'USER', 'GPU', 'PROJECT', 'PYTHON'],
    c.hosts.map((h) => [
      h.name,
      h.role,
      String(h.rank),
      `${h.address}:${h.port}`,
      h.user,
      h.gpus.map((g) => `${g.model}${g.vramGb ? ` ${g.vramGb}GB` : ''}`).join(', ') || '-',
      h.paths.project,
      h.python,
    ]),
  );
}

export { stringify };

/**
 * `ugro hosts trust` for one host; false when it refused. Nothing pinned yet: every key the host
 * offers (or those named by --fingerprint). Pinned already: only a check of the pinned types, and
 * new types only when --fingerprint names them (a key fetched over an unverified connection must
 * not widen trust by itself). A presented key that differs from a pin of its type is refused, and
 * a key marked @revoked is never pinned.
 */
async function trustHost(
  h: Host,
  want: string[],
  io: { out: (s: string) => void; err: (s: string) => void },
): Promise<boolean> {
  const name = h.name;
  const file = h.ssh.knownHosts;
  const { pinned, revoked } = hostKeysOf(readKnownHosts(file), hostNames(h), h.port);
  const changed = (k: PresentedKey) => {
    const same = pinned.filter((e) => e.keyType === k.type);
    return same.length > 0 && !same.some((e) => e.key.equals(k.key));
  };
  const refuseChanged = (k: PresentedKey) =>
    io.err(
      `${name}: REFUSING: ${file} already pins a different key (${pinned.map((e) => `${e.keyType} ${fingerprint(e.key)} line ${e.line}`).join('; ')}); the host now presents ${k.type} ${k.fingerprint}. If the host was reinstalled, delete those lines yourself, then trust again.`,
    );
  if (pinned.length && !want.length) {
    // Ask for the pinned types only: a host with ed25519 and ecdsa keys would otherwise show its
    // preferred one and look "changed".
    const k = await fetchHostKey(h, hostKeyAlgorithms(pinned.map((e) => e.keyType)));
    const same = pinned.find((e) => e.key.equals(k.key));
    if (same) {
      io.out(`${name}: ${k.type} ${k.fingerprint} already pinned in ${file} (line ${same.line})`);
      return true;
    }
    refuseChanged(k);
    return false;
  }
  // Every key the host offers (as ssh-keyscan shows them). All of them, because other SSH clients
  // (Pulumi's Go client among them) may negotiate another type than ours, and a pin of the wrong
  // type fails their handshake.
  const keys = await fetchAllHostKeys(h);
  const bad = keys.find(changed);
  if (bad) {
    refuseChanged(bad);
    return false;
  }
  const isPinned = (k: PresentedKey) => pinned.some((e) => e.key.equals(k.key));
  const isRevoked = (k: PresentedKey) => revoked.some((e) => e.key.equals(k.key));
  const named = want.length ? keys.filter((k) => want.includes(k.fingerprint)) : keys;
  if (want.length && !named.length) {
    io.err(
      `${name}: REFUSING: the host presents ${keys.map((k) => `${k.type} ${k.fingerprint}`).join(', ')}; none has the fingerprint ${want.join(' or ')}`,
    );
    return false;
  }
  for (const k of named.filter(isRevoked))
    io.err(`${name}: not pinning ${k.type} ${k.fingerprint}: ${file} marks it @revoked`);
  const chosen = named.filter((k) => !isPinned(k) && !isRevoked(k));
  if (!chosen.length) {
    if (named.some(isRevoked) && !named.some(isPinned)) return false;
    io.out(
      `${name}: ${named
        .filter(isPinned)
        .map((k) => `${k.type} ${k.fingerprint}`)
        .join(', ')} already pinned in ${file}`,
    );
    return true;
  }
  const lines = chosen.map((k) =>
    appendKnownHost(
      file,
      [h.name, h.address].filter((v, i, a) => a.indexOf(v) === i),
      h.port,
      k.key,
    ),
  );
  io.out(
    `${name}: pinned in ${file}:\n${chosen.map((k, i) => `  ${k.type} ${k.fingerprint}\n    ${lines[i].slice(0, 80)}…`).join('\n')}`,
  );
  const left = keys.filter((k) => !named.includes(k) && !isPinned(k) && !isRevoked(k));
  if (left.length)
    io.out(
      `${name}: not pinned (no --fingerprint given for them): ${left.map((k) => `${k.type} ${k.fingerprint}`).join(', ')}`,
    );
  return true;
}
