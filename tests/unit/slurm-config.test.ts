/**
 * The cluster file's `slurm:` section as UGRO reads it: the login host normalized like every
 * other host (its `~` is the login user's home on the login host), run dirs apart from an SSH
 * host's, the section's settings carried on that host, and the cluster's other hosts unchanged.
 */
import { describe, expect, it } from 'vitest';
import { allHosts } from '../../config/cluster.ts';
import { slurmCluster } from './slurm-fixtures.ts';

describe('slurm: in the cluster file', () => {
  it('is a host named after the cluster, reached over SSH with the same keys, outside `hosts`', () => {
    const c = slurmCluster();
    expect(c.hosts.map((h) => h.name)).toEqual(['gpu-master', 'gpu1', 'gpu2']);
    expect(allHosts(c).map((h) => h.name)).toEqual(['gpu-master', 'gpu1', 'gpu2', 'hpc']);
    expect(c.slurm).toMatchObject({
      name: 'hpc',
      hostname: 'login1',
      address: '10.0.0.50',
      port: 22,
      user: 'alice',
      python: '/usr/bin/python3',
      gpus: [],
      paths: {
        project: '/home/alice/ugro',
        runs: '/home/alice/ugro/slurm-runs',
        scripts: '/home/alice/ugro/scripts',
        checkpoints: '/home/alice/ugro/checkpoints',
      },
      ssh: { knownHosts: c.master.ssh.knownHosts },
      slurm: {
        default: false,
        partition: 'gpu',
        account: 'ml-team',
        sbatch: ['--mem=0', '--constraint=a100'],
        priority: { nice: true, qos: { high: 'urgent' } },
        pollMs: 1000,
        accounting: false,
        rdzvPort: 29500,
      },
    });
  });

  it("paths on the shared storage keep `~` as the login user's home; defaults are minimal", () => {
    const c = slurmCluster(
      '\nslurm:\n  login: { hostname: l, ip: 10.0.0.5, user: bob, port: 2222 }\n' +
        '  paths: { project: "~/work", checkpoints: /nfs/ckpt }\n  python: "~/venv/bin/python"\n  default: true\n',
    );
    expect(c.slurm).toMatchObject({
      name: 'slurm',
      port: 2222,
      python: '/home/bob/venv/bin/python',
      paths: { project: '/home/bob/work', runs: '/home/bob/work/slurm-runs', checkpoints: '/nfs/ckpt' },
      slurm: { default: true, sbatch: [], priority: { nice: true, qos: {} }, pollMs: 2000 },
    });
    expect(slurmCluster('').slurm).toBeUndefined();
  });
});
