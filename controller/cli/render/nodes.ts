/** Node tables: `ugro health` / `get nodes` / `status`, `config show -o table`, `hosts list`. */
import type { Cluster } from '../../../config/cluster.ts';
import type { NodeHealth } from '../../backends/health.ts';
import { table } from '../output.ts';

function gpuCell(n: NodeHealth): string {
  if (!n.gpus.length) return '-';
  return n.gpus
    .map((g) => {
      const util = Number.isNaN(g.utilizationPct) ? '' : ` ${g.utilizationPct}%`;
      return `${g.name.replace(/^NVIDIA (GeForce )?/, '')} ${Math.round(g.memoryTotalMiB / 1024)}GiB${util}`;
    })
    .join(', ');
}

function torchCell(n: NodeHealth): string {
  if (n.torch) return `${n.torch.version}${n.torch.cuda !== 'none' ? ` (cuda ${n.torch.cuda})` : ' (cpu)'}`;
  return n.torch === null ? 'no torch' : '-';
}

export function nodesTable(nodes: NodeHealth[]): string {
  return table(
    ['NODE', 'STATUS', 'ADDRESS', 'GPU', 'DRIVER', 'TORCH', 'PYTHON', 'DISK FREE', 'CLOCK', 'LATENCY', 'REASON'],
    nodes.map((n) => [
      n.name,
      n.status,
      `${n.user}@${n.address}`,
      gpuCell(n),
      n.gpus[0]?.driver ?? '-',
      torchCell(n),
      n.python ?? '-',
      n.disk ? `${n.disk.freeGiB.toFixed(0)}GiB` : '-',
      n.clockOffsetMs !== undefined ? `${n.clockOffsetMs >= 0 ? '+' : ''}${Math.round(n.clockOffsetMs)}ms` : '-',
      n.rttMs !== undefined ? `${Math.round(n.rttMs)}ms` : '-',
      [...n.reasons, ...n.warnings.map((w) => `warning: ${w}`)].join('; ') || '-',
    ]),
  );
}

export function inventoryTable(c: Pick<Cluster, 'hosts'>): string {
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

export interface HostKeysRow {
  name: string;
  role: string;
  rank: number;
  address: string;
  port: number;
  user: string;
  /** Pinned keys as "type SHA256:…"; empty when none is pinned. */
  pinned: string[];
}

export function hostKeysTable(rows: HostKeysRow[]): string {
  return table(
    ['HOST', 'ROLE', 'RANK', 'ADDRESS', 'USER', 'PINNED KEY'],
    rows.map((h) => [
      h.name,
      h.role,
      String(h.rank),
      `${h.address}:${h.port}`,
      h.user,
      h.pinned.length ? h.pinned.join(', ') : `NONE (run \`ugro hosts trust ${h.name}\`)`,
    ]),
  );
}
