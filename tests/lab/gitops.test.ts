/**
 * GitOps on the lab, for real: a bare repository on gpu-master reached over SSH as master (the lab
 * key, the pinned host key, StrictHostKeyChecking=yes), pushed to from a working clone here, and
 * a real `ugro controller --git` training real torchrun jobs (scripts/train.py, small epochs) on
 * the lab hosts. One repository and one controller at a time, shared by the scenarios in order
 * (a restart only to change --prune / --require-signed, as a person would).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type JobStatus, parseJobStatus } from '../../controller/api/status.ts';
import { readGitState } from '../../controller/gitops/state.ts';
import { jobText, signingKey } from '../support/git-repo.ts';
import {
  CLUSTER_FILE,
  type Ctl,
  labCluster,
  newJobsDir,
  ROOT,
  readStatus,
  runProcesses,
  startController,
  stopController,
  ugro,
  waitFor,
  waitPhase,
} from './controller-harness.ts';
import { foreignLeasesExpired, type LabRemote, labGitRemote, runDirName } from './gitops-remote.ts';
import {
  hostPubKeyFile,
  LAB_KNOWN_HOSTS,
  lab,
  labNominal,
  newEd25519Key,
  sshKeygenFingerprint,
  tempLabCluster,
} from './helpers.ts';

const cluster = labCluster();
const hostOf = (name: string) => cluster.hosts.find((h) => h.name === name)!;
/** Trains until stopped (about 5 steps a second), on gpu1: never on the git server. */
const LONG = {
  script: 'train.py',
  args: ['--epochs', '1000', '--steps-per-epoch', '20', '--sleep', '0.2'],
  nodes: 1,
  hosts: ['gpu1'],
};
/** Seconds of training (most of it importing torch). */
const short = (host: string, steps = 5) => ({
  script: 'train.py',
  args: ['--epochs', '1', '--steps-per-epoch', String(steps)],
  nodes: 1,
  hosts: [host],
});

let remote: LabRemote;
let jobs: string;
let ctl: Ctl | undefined;

const cond = (s: JobStatus | undefined, t: string) => s?.conditions.find((c) => c.type === t);

async function controller(...extra: string[]): Promise<void> {
  if (ctl) await stopController(ctl);
  ctl = startController(jobs, ['--git', remote.url, '--interval', '2', ...extra]);
  await waitFor('the git source to start', () => readGitState(jobs)?.pid === ctl!.pid, 60_000);
}

function sync(): { code: number; out: string; err: string } {
  return ugro(jobs, 'sync', '--timeout', '60');
}

/** The events log as written (jobs/.ugro/events.jsonl), optionally one job's. */
function events(name?: string): { reason: string; message: string; job: string }[] {
  return readFileSync(join(jobs, '.ugro', 'events.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((e) => !name || e.job === name);
}

beforeAll(async () => {
  labNominal();
  await foreignLeasesExpired(cluster.hosts.map((h) => h.paths.runs));
  remote = await labGitRemote();
  jobs = newJobsDir();
});

afterEach(({ task }) => {
  if (task.result?.state === 'fail' && ctl)
    console.error(`controller log (last 60 lines):\n${ctl.logText().split('\n').slice(-60).join('\n')}`);
});

afterAll(async () => {
  // Stop every run this test started: the jobs go (with pruning, the controller stops them).
  try {
    if (ctl && ctl.exitCode === null) {
      for (const f of readdirSync(jobs).filter((x) => /^[a-z0-9-]+\.ya?ml$/.test(x) && !x.includes('.status.')))
        execFileSync('rm', ['-f', '--', join(jobs, f)]);
      await waitFor('every job gone', () => !readdirSync(jobs).some((f) => f.endsWith('.status.yaml')), 60_000).catch(
        () => undefined,
      );
    }
  } finally {
    if (ctl) await stopController(ctl);
    remote?.remove();
  }
});

describe('GitOps on the lab (real git over real ssh, real training)', () => {
  let alpha: JobStatus;
  let v1Commit: string;

  it('push a new TrainingJob: it trains, and status.revision is the pushed SHA', async () => {
    const sha = remote.work.commit({ 'jobs/alpha.yaml': jobText('alpha', LONG), 'README.md': '# jobs\n' }, 'add alpha');
    remote.work.push();
    await controller();
    const s = sync();
    expect(s.code, s.err).toBe(0);
    expect(s.out).toContain(sha.slice(0, 12));
    alpha = await waitPhase(jobs, 'alpha', ['Running'], 120_000);
    expect(alpha.revision).toBe(sha);
    expect(alpha.source).toMatchObject({
      revision: sha,
      subject: 'add alpha',
      sync: 'Synced',
      file: 'jobs/alpha.yaml',
    });
    // Accounts are on (ugro controller reads the account database): an unsigned commit's jobs belong
    // to the unsigned owner (no users: section, so the controller's own account); the author is a claim.
    expect(alpha.owner).toBe(userInfo().username);
    expect(alpha.ownerBy).toBe(`unsigned commit ${sha.slice(0, 12)} by Ada Lovelace <ada@example.com> (unverified)`);
    const wide = ugro(jobs, 'get', 'jobs', '-o', 'wide');
    expect(wide.out).toMatch(new RegExp(`alpha .*${sha.slice(0, 8)}\\s+Synced`));
  });

  it('push a commit touching only a README: no restart, the revision of the job unchanged', async () => {
    const before = readStatus(jobs, 'alpha')!;
    const pids = runProcesses(before.runId!);
    expect(pids.length).toBeGreaterThan(0);
    remote.work.commit({ 'README.md': '# jobs\nhow to train\n' }, 'docs');
    remote.work.push();
    expect(sync().code).toBe(0);
    await new Promise((r) => setTimeout(r, 1500));
    const after = readStatus(jobs, 'alpha')!;
    expect(after).toMatchObject({
      phase: 'Running',
      runId: before.runId,
      attempt: before.attempt,
      revision: before.revision,
    });
    expect(runProcesses(before.runId!)).toEqual(pids);
  });

  it('an invalid file beside a valid one: Invalid with the commit and line; the valid one trains', async () => {
    const bad = jobText('bad', { ...short('gpu2'), nodes: 0 });
    const line = bad.split('\n').findIndex((l) => l.startsWith('  nodes:')) + 1;
    v1Commit = remote.work.commit(
      { 'jobs/bad.yaml': bad, 'jobs/good.yaml': jobText('good', short('gpu2')) },
      'bad and good',
    );
    remote.work.push();
    expect(sync().code).toBe(0);
    const b = await waitPhase(jobs, 'bad', ['Invalid'], 30_000);
    expect(b.message).toMatch(
      new RegExp(`^${v1Commit.slice(0, 12)}:jobs/bad\\.yaml:${line}:\\d+: spec\\.nodes: must be >= 1`),
    );
    expect(b.revision).toBe(v1Commit);
    await waitPhase(jobs, 'good', ['Succeeded'], 120_000);
    expect(readStatus(jobs, 'alpha')?.runId).toBe(alpha.runId);
  });

  it('push a changed spec: a new generation, the old run stopped', async () => {
    const sha = remote.work.commit(
      { 'jobs/alpha.yaml': jobText('alpha', { ...LONG, args: [...LONG.args, '--lr', '0.02'] }) },
      'alpha lr',
    );
    remote.work.push();
    expect(sync().code).toBe(0);
    const next = await waitFor(
      'alpha running its new spec',
      () => {
        const s = readStatus(jobs, 'alpha');
        return s?.phase === 'Running' && s.runId !== alpha.runId ? s : undefined;
      },
      120_000,
    );
    expect(next.observedGeneration).toBe(alpha.observedGeneration + 1);
    expect(next.revision).toBe(sha);
    await waitFor('the old run gone', () => runProcesses(alpha.runId!).length === 0, 30_000);
  });

  it('the git server down (sshd stopped): no job changes, SourceReady=False; recovers when back', async () => {
    const before = readStatus(jobs, 'alpha')!;
    lab('stop-host', 'gpu-master');
    try {
      const s = sync();
      expect(s.code).toBe(1);
      expect(s.err).toMatch(/cannot fetch|Connection refused|connect to host/i);
      const down = await waitFor(
        'SourceReady=False on alpha',
        () => {
          const st = readStatus(jobs, 'alpha');
          return cond(st, 'SourceReady')?.status === 'False' ? st : undefined;
        },
        30_000,
      );
      expect(cond(down, 'SourceReady')?.reason).toBe('FetchFailed');
      expect(down).toMatchObject({ phase: 'Running', runId: before.runId, revision: before.revision });
      expect(ugro(jobs, 'get', 'jobs').err).toMatch(/SourceReady=False/);
      expect(readGitState(jobs)?.failures).toBeGreaterThanOrEqual(1);
    } finally {
      lab('start-host', 'gpu-master');
    }
    // Back on its own (the fetch backs off, then succeeds): no `ugro sync` here.
    const up = await waitFor(
      'SourceReady=True again',
      () => {
        const st = readStatus(jobs, 'alpha');
        return cond(st, 'SourceReady')?.status === 'True' ? st : undefined;
      },
      60_000,
    );
    expect(up).toMatchObject({ phase: 'Running', runId: before.runId, revision: before.revision });
  });

  it('force-push an older history: applied like any head (HistoryRewritten); the old spec trains again', async () => {
    const before = readStatus(jobs, 'alpha')!;
    remote.work.resetTo(v1Commit);
    remote.work.push(true);
    expect(sync().code).toBe(0);
    const back = await waitFor(
      'alpha back on its first spec',
      () => {
        const s = readStatus(jobs, 'alpha');
        return s?.phase === 'Running' && s.specHash === alpha.specHash && s.runId !== before.runId ? s : undefined;
      },
      120_000,
    );
    expect(back.revision).toBe(alpha.revision);
    const all = events();
    expect(all.find((e) => e.reason === 'HistoryRewritten' && e.job === '(git)')?.message).toContain(
      before.revision!.slice(0, 12),
    );
    expect(events('alpha').map((e) => e.reason)).toEqual(expect.arrayContaining(['HistoryRewritten', 'SpecReverted']));
    alpha = back;
  });

  it('remove the file with pruning off: OutOfSync, and it keeps running', async () => {
    const removed = remote.work.commit({ 'jobs/alpha.yaml': null }, 'remove alpha');
    remote.work.push();
    expect(sync().code).toBe(0);
    const st = await waitFor(
      'alpha OutOfSync',
      () => {
        const s = readStatus(jobs, 'alpha');
        return s?.source?.sync === 'OutOfSync' ? s : undefined;
      },
      30_000,
    );
    expect(st).toMatchObject({ phase: 'Running', runId: alpha.runId, source: { reason: 'RemovedFromGit' } });
    expect(cond(st, 'Synced')?.message).toContain(`removed from git at ${removed.slice(0, 12)}`);
    expect(existsSync(join(jobs, 'alpha.yaml'))).toBe(true);
    expect(runProcesses(alpha.runId!).length).toBeGreaterThan(0);
  });

  it('with --prune: the removed job is stopped with its grace (the script checkpoints on SIGTERM)', async () => {
    await controller('--prune');
    await waitFor(
      'alpha pruned and gone',
      () => !readStatus(jobs, 'alpha') && !existsSync(join(jobs, 'alpha.yaml')),
      60_000,
    );
    expect(runProcesses(alpha.runId!)).toEqual([]);
    // The run dir was archived (runs/.deleted/<dir>.<ms>); its rank 0 stopped on SIGTERM, not SIGKILL.
    const deleted = join(hostOf('gpu1').paths.runs, '.deleted');
    const dir = readdirSync(deleted).find((d) => d.startsWith(`${runDirName(alpha.runId!)}.`));
    expect(dir).toBeDefined();
    expect(readFileSync(join(deleted, dir!, 'rank-0.log'), 'utf8')).toMatch(/stopping on SIGTERM after step \d+/);
  });

  it('a commit removing the whole path is not pruned without --prune-all', async () => {
    const sha = remote.work.commit({ jobs: null }, 'oops: remove every job');
    remote.work.push();
    expect(sync().code).toBe(0);
    const good = await waitFor(
      'good OutOfSync',
      () => {
        const s = readStatus(jobs, 'good');
        return s?.source?.sync === 'OutOfSync' ? s : undefined;
      },
      30_000,
    );
    expect(cond(good, 'Synced')?.message).toMatch(/whole jobs path.*--prune-all/);
    expect(existsSync(join(jobs, 'good.yaml'))).toBe(true);
    expect(ugro(jobs, 'get', 'jobs').err).toMatch(/not pruned \(--prune-all allows it\)/);
    remote.work.resetTo(`${sha}~1`);
    remote.work.push(true);
    expect(sync().code).toBe(0);
  });

  it('50 commits pushed in a burst: only the final state is applied, no job started and stopped between', async () => {
    const runsDir = hostOf('gpu2').paths.runs;
    const earlier = new Set(readdirSync(runsDir));
    for (let i = 0; i < 50; i++) {
      const files: Record<string, string | null> = {
        'jobs/burst.yaml': jobText('burst', short('gpu2', i + 1)),
        'jobs/burst-tmp.yaml': i % 2 === 0 ? jobText('burst-tmp', short('gpu1')) : null,
      };
      if (i === 49) files['jobs/burst-tmp.yaml'] = null;
      remote.work.commit(files, `burst ${i}`);
    }
    const last = remote.work.head();
    remote.work.push();
    expect(sync().code).toBe(0);
    const st = await waitPhase(jobs, 'burst', ['Succeeded'], 120_000);
    expect(st).toMatchObject({ attempt: 1, observedGeneration: 1, revision: last });
    expect(existsSync(join(jobs, 'burst-tmp.yaml'))).toBe(false);
    expect(events().some((e) => e.job === 'burst-tmp')).toBe(false);
    const runs = readdirSync(runsDir).filter((d) => d.startsWith('burst') && !earlier.has(d));
    expect(runs).toEqual([runDirName(st.runId!)]);
  });

  it('--require-signed: an unsigned head is not applied (says why); a signed one is, owned by its signer', async () => {
    // The allowed signers file names the key's owner by login name: ob's key signs, so the job is ob's.
    const keys = signingKey(mkdtempSync(join(tmpdir(), 'ugro-sign-')), 'ob');
    await controller('--prune', '--prune-all', '--require-signed', '--allowed-signers', keys.allowedSigners);
    remote.work.commit({ 'jobs/signed.yaml': jobText('signed', short('gpu2')) }, 'unsigned');
    remote.work.push();
    const s = sync();
    expect(s.code).toBe(1);
    expect(s.err).toMatch(/not applied: the commit is not signed/);
    expect(existsSync(join(jobs, 'signed.yaml'))).toBe(false);
    expect(ugro(jobs, 'get', 'jobs').err).toMatch(/not applied: the commit is not signed/);
    await waitFor('the refusal in the log', () =>
      /head not applied: its signature does not verify/.test(ctl!.logText()),
    );
    // The signed head changes the file too: status.revision is the commit that last changed a job's
    // file, so with the unsigned commit's bytes it would stay that commit's, signed head or not.
    const sha = remote.work.commit({ 'jobs/signed.yaml': jobText('signed', short('gpu2', 6)) }, 'signed', {
      signingKey: keys.key,
    });
    remote.work.push();
    const ok = sync();
    expect(ok.code, ok.err).toBe(0);
    const st = await waitPhase(jobs, 'signed', ['Running', 'Succeeded'], 120_000);
    expect(st.revision).toBe(sha);
    expect(st.owner).toBe('ob');
    expect(st.ownerBy).toBe(`signed commit ${sha.slice(0, 12)}`);
    expect(readGitState(jobs)?.refused).toBeUndefined();
  });

  it('a git server presenting a different host key is refused, with both fingerprints', async () => {
    // This controller's known_hosts pins another key for gpu-master: to it, the server's key changed.
    const pinned = newEd25519Key('not-gpu-master');
    const known = readFileSync(LAB_KNOWN_HOSTS, 'utf8')
      .split('\n')
      .map((l) => (l.startsWith('gpu-master,') ? `gpu-master,10.250.77.10 ${pinned.pubLine}` : l))
      .join('\n');
    const { clusterFile } = tempLabCluster(known);
    const other = newJobsDir();
    const child = spawn(
      process.execPath,
      [join(ROOT, 'bin/ugro.mjs'), '--cluster', clusterFile, '--jobs', other, 'controller', '--git', remote.url],
      { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    let log = '';
    child.stdout!.on('data', (b) => (log += b));
    child.stderr!.on('data', (b) => (log += b));
    try {
      const state = await waitFor(
        'the fetch refused',
        () => {
          const s = readGitState(other);
          return s?.reason === 'FetchFailed' ? s : undefined;
        },
        60_000,
      );
      const presented = sshKeygenFingerprint(hostPubKeyFile('gpu-master'));
      const pinnedFp = sshKeygenFingerprint(pinned.pubFile);
      expect(state.message).toContain('host key of 10.250.77.10 changed');
      expect(state.message).toContain(presented);
      expect(state.message).toContain(pinnedFp);
      expect(readdirSync(other).filter((f) => f.endsWith('.yaml'))).toEqual([]);
      expect(log).toContain(presented);
    } finally {
      await stopController(child);
    }
  });
});

// Issue 15: the controller's state dir and hostile commits, over real ssh.
describe('GitOps on the lab: the private state dir, a planted clone config, a 600-character author', () => {
  /** A job that only has to run: a one-node sleep on gpu2 (no torch import). */
  const SLEEPER = { command: ['sleep', '600'], nodes: 1, hosts: ['gpu2'] };

  it('a repo.git/config planted while it runs (core.sshCommand, insteadOf) runs nothing and is restored', async () => {
    await controller('--prune');
    const dir = mkdtempSync(join(tmpdir(), 'ugro-planted-'));
    const marker = join(dir, 'ran');
    const evil = join(dir, 'evil');
    writeFileSync(evil, `#!/bin/sh\necho "$@" >> '${marker}'\nexit 1\n`);
    chmodSync(evil, 0o755);
    const config = join(jobs, '.ugro', 'git', 'repo.git', 'config');
    writeFileSync(
      config,
      `[core]\n\tbare = true\n\tsshCommand = ${evil}\n[url "ssh://evil.invalid/"]\n\tinsteadOf = ${remote.url}\n`,
    );
    const sha = remote.work.commit({ 'jobs/planted.yaml': jobText('planted', SLEEPER) }, 'after the planting');
    remote.work.push();
    const s = sync();
    expect(s.code, s.err).toBe(0);
    expect(existsSync(marker)).toBe(false);
    expect(readGitState(jobs)?.applied).toBe(sha);
    expect(readFileSync(config, 'utf8')).not.toContain('sshCommand');
    expect(events('(git)').map((e) => e.reason)).toContain('CloneTampered');
  });

  it('a 600-character commit author: the status stays valid (no StatusSalvaged), the job runs', async () => {
    const name = 'Long Author '.repeat(50);
    const spec = { ...SLEEPER, hosts: ['gpu-master'] };
    const sha = remote.work.commit({ 'jobs/longauthor.yaml': jobText('longauthor', spec) }, 'long author', {
      author: { name, email: 'long@example.com' },
    });
    remote.work.push();
    const s = sync();
    expect(s.code, s.err).toBe(0);
    const st = await waitPhase(jobs, 'longauthor', ['Running'], 60_000);
    const raw = parse(readFileSync(join(jobs, 'longauthor.status.yaml'), 'utf8'));
    expect(parseJobStatus(raw)).toBeDefined();
    expect(st.revision).toBe(sha);
    expect(st.source?.author?.length).toBeLessThanOrEqual(512);
    expect(st.source?.author).toMatch(/^Long Author .*… <long@example\.com>$/);
    expect(cond(st, 'StatusSalvaged')).toBeUndefined();
    // Starting, then Running: read back and written again, the same job (not started over).
    expect(events('longauthor').filter((e) => e.reason === 'RevisionApplied')).toHaveLength(1);
  });

  it('`ugro controller` on a group-writable jobs/.ugro refuses to start, saying how to fix it', () => {
    const other = newJobsDir();
    mkdirSync(join(other, '.ugro'));
    chmodSync(join(other, '.ugro'), 0o775);
    const r = spawnSync(
      process.execPath,
      [join(ROOT, 'bin/ugro.mjs'), '--cluster', CLUSTER_FILE, '--jobs', other, 'controller', '--git', remote.url],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`must not be writable by group or others; it is: ${join(other, '.ugro')}`);
    expect(r.stderr).toContain(`chmod -R go-w ${join(other, '.ugro')}`);
  });
});
