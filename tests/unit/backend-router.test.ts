/**
 * The router (controller/backends/router.ts): the first row that serves a host gets every call for it,
 * a copy between backends goes through the row that serves either end, and an optional role a backend
 * lacks is refused with the backend's name.
 */
import { describe, expect, it } from 'vitest';
import type { Host } from '../../config/cluster.ts';
import type { Backend } from '../../controller/backends/api.ts';
import { BackendRouter } from '../../controller/backends/router.ts';

/** A backend that records which calls reached it. */
function recorder(name: string, calls: string[], withProgress = true): Backend {
  const hit =
    (m: string) =>
    async (...a: unknown[]) => {
      calls.push(`${name}.${m}:${(a[0] as Host).name}`);
      return undefined as never;
    };
  const b = {
    observe: hit('observe'),
    launch: hit('launch'),
    stop: hit('stop'),
    wait: hit('wait'),
    archive: hit('archive'),
    lease: hit('lease'),
    syncScripts: hit('syncScripts'),
    probe: hit('probe'),
    readLog: hit('readLog'),
    followLog: hit('followLog'),
    readMetrics: hit('readMetrics'),
    lastHeard: (h: Host) => {
      calls.push(`${name}.lastHeard:${h.name}`);
      return 1;
    },
    reach: hit('reach'),
    copyCheckpoint: hit('copyCheckpoint'),
    listCheckpoints: hit('listCheckpoints'),
    deleteCheckpoints: hit('deleteCheckpoints'),
  } as Backend;
  if (withProgress) b.readProgress = hit('readProgress');
  return b;
}

const host = (name: string, slurm = false) => ({ name, ...(slurm ? { slurm: {} } : {}) }) as unknown as Host;

describe('BackendRouter', () => {
  const calls: string[] = [];
  const router = new BackendRouter([
    { name: 'slurm', serves: (h) => h.slurm !== undefined, backend: recorder('slurm', calls, false) },
    { name: 'ssh', serves: () => true, backend: recorder('ssh', calls) },
  ]);
  const gpu1 = host('gpu1');
  const hpc = host('hpc', true);

  it('sends each call to the first row that serves the host', async () => {
    calls.length = 0;
    await router.observe(hpc, 'j');
    await router.observe(gpu1, 'j');
    await router.lease(hpc, 'me', 30);
    router.lastHeard(gpu1);
    expect(calls).toEqual(['slurm.observe:hpc', 'ssh.observe:gpu1', 'slurm.lease:hpc', 'ssh.lastHeard:gpu1']);
  });

  it('lists and deletes checkpoints through the row that serves the host', async () => {
    calls.length = 0;
    await router.listCheckpoints(hpc, '/c');
    await router.deleteCheckpoints(gpu1, '/c', ['step-1']);
    expect(calls).toEqual(['slurm.listCheckpoints:hpc', 'ssh.deleteCheckpoints:gpu1']);
  });

  it('copies between backends through the row that serves either end', async () => {
    calls.length = 0;
    await router.copyCheckpoint(gpu1, '/a', hpc, '/b', 'step-1');
    await router.copyCheckpoint(gpu1, '/a', host('gpu2'), '/b', 'step-1');
    expect(calls).toEqual(['slurm.copyCheckpoint:gpu1', 'ssh.copyCheckpoint:gpu1']);
  });

  it('refuses an optional role the backend lacks, naming it; a host no row serves is refused', () => {
    expect(() => router.readProgress(hpc, [])).toThrow(/slurm backend reports progress with its observe/);
    const none = new BackendRouter([
      { name: 'slurm', serves: (h) => h.slurm !== undefined, backend: recorder('s', []) },
    ]);
    expect(() => none.observe(gpu1)).toThrow(/no backend serves this host/);
  });
});
