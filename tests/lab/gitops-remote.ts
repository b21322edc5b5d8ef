/**
 * A git server on the lab for the GitOps lab test and benchmark: a bare repository on gpu-master,
 * reached over real SSH as its user (master) with the lab key and the pinned host key, through
 * the same fixed GIT_SSH wrapper the controller uses. The test pushes from a working clone here.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeGitHelpers } from '../../controller/gitops/git.ts';
import { cloneWork, testGitEnv, type WorkRepo } from '../support/git-repo.ts';
import { ROOT } from './controller-harness.ts';

export const LAB_KEY = join(ROOT, '.lab/id_ed25519');
export const LAB_KNOWN_HOSTS = join(ROOT, '.lab/known_hosts');
/** gpu-master: the git server (its address is pinned in .lab/known_hosts). */
export const GIT_HOST = { name: 'gpu-master', address: '10.250.77.10', user: 'master', home: '/home/master' };

/** ssh to the git server as its user, argv only (for creating and removing the bare repository). */
export function sshGitHost(...argv: string[]): string {
  return execFileSync(
    'ssh',
    [
      '-F',
      '/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      `UserKnownHostsFile=${LAB_KNOWN_HOSTS}`,
      '-o',
      'IdentitiesOnly=yes',
      '-i',
      LAB_KEY,
      `${GIT_HOST.user}@${GIT_HOST.address}`,
      '--',
      ...argv.map(shWord),
    ],
    { encoding: 'utf8', timeout: 30_000 },
  );
}

/** One word for the remote login shell (ssh joins argv with spaces): single-quoted. */
function shWord(s: string): string {
  return /^[A-Za-z0-9_./=:@-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface LabRemote {
  url: string;
  /** Path of the bare repository on gpu-master. */
  path: string;
  work: WorkRepo;
  remove(): void;
}

/** A fresh bare repository on gpu-master and a working clone here that pushes to it over ssh. */
export async function labGitRemote(name = `ugro-gitops-${process.pid}-${Date.now().toString(36)}`): Promise<LabRemote> {
  const path = `${GIT_HOST.home}/${name}.git`;
  sshGitHost('git', 'init', '--quiet', '--bare', '-b', 'main', path);
  const url = `ssh://${GIT_HOST.user}@${GIT_HOST.address}${path}`;
  const helperDir = mkdtempSync(join(tmpdir(), 'ugro-gitssh-'));
  const helpers = await writeGitHelpers(helperDir);
  const env = testGitEnv({
    GIT_SSH: helpers.ssh,
    GIT_SSH_VARIANT: 'ssh',
    UGRO_GIT_SSH_KNOWN_HOSTS: LAB_KNOWN_HOSTS,
    UGRO_GIT_SSH_IDENTITY: LAB_KEY,
    UGRO_GIT_SSH_CONNECT_TIMEOUT: '5',
  });
  const work = cloneWork(url, mkdtempSync(join(tmpdir(), 'ugro-gitwork-')), env);
  return {
    url,
    path,
    work,
    remove: () => {
      try {
        sshGitHost('rm', '-rf', '--', path);
      } catch {
        /* the host may be down; the repository is only test data */
      }
      rmSync(helperDir, { recursive: true, force: true });
      rmSync(work.dir, { recursive: true, force: true });
    },
  };
}

/** `JOB-HASH8-aN` -> `JOB.HASH8.N`, the run directory's name. */
export function runDirName(runId: string): string {
  return runId.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2');
}

/**
 * Wait until no other controller's host lease is live on these hosts (a controller killed by
 * another lab test leaves its lease for up to 60 s): a test that starts while one is held would
 * only measure the wait. Gives up after `timeoutMs` and lets the test say what it sees.
 */
export async function foreignLeasesExpired(runsDirs: string[], timeoutMs = 90_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const live = runsDirs.filter((d) => {
      try {
        const m = /^expires=(\d+)$/m.exec(readFileSync(join(d, '.ugro-lease'), 'utf8'));
        return m !== null && Number(m[1]) * 1000 > Date.now();
      } catch {
        return false;
      }
    });
    if (!live.length || Date.now() > end) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
}
