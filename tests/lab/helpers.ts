/**
 * Shared helpers for the ssh and health lab tests: where the repo and the lab files are, the
 * lab's cluster, and the lab's fault verbs. The lab must be up: a missing lab is an error with
 * the command that fixes it, never a silent skip.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { type Cluster, loadCluster } from '../../config/cluster.ts';

export const ROOT = resolve(new URL('../..', import.meta.url).pathname);
export const LAB_DIR = join(ROOT, '.lab');
export const LAB_CLUSTER_FILE = join(LAB_DIR, 'cluster.yaml');
export const LAB_KNOWN_HOSTS = join(LAB_DIR, 'known_hosts');
export const LAB_SH = join(ROOT, 'tests/lab/lab.sh');

/** Throws (does not skip) when the lab has not been brought up. */
export function labAvailable(): void {
  if (!existsSync(LAB_CLUSTER_FILE)) {
    throw new Error(
      `the lab is not up: ${LAB_CLUSTER_FILE} is missing; run npm run lab -- up first (bash tests/lab/lab.sh up)`,
    );
  }
}

/**
 * Throws unless every lab host is up (namespace, sshd, link), with lab.sh's status table and the
 * command that fixes it. Does not bring the lab up itself: another lab test may own a fault.
 */
export function labNominal(): void {
  labAvailable();
  const r = spawnSync('bash', [LAB_SH, 'status'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0)
    throw new Error(`the lab is not nominal; run npm run lab -- up (it restores every host):\n${r.stdout}${r.stderr}`);
}

export function labCluster(): Cluster {
  labAvailable();
  return loadCluster(LAB_CLUSTER_FILE);
}

/** `bash tests/lab/lab.sh ARGS…`, synchronously; throws with lab.sh's stderr if it fails. */
export function lab(...args: string[]): string {
  const r = spawnSync('bash', [LAB_SH, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) {
    throw new Error(
      `lab ${args.join(' ')} failed (exit ${r.status ?? r.signal}): ${(r.stderr || r.stdout || '').trim()}`,
    );
  }
  return r.stdout;
}

/** `ssh-keygen -lf FILE` → the `SHA256:…` fingerprint. */
export function sshKeygenFingerprint(pubKeyFile: string): string {
  const out = execFileSync('ssh-keygen', ['-lf', pubKeyFile], { encoding: 'utf8' });
  const m = /\b(SHA256:[A-Za-z0-9+/]+)\b/.exec(out);
  if (!m) throw new Error(`ssh-keygen -lf ${pubKeyFile}: unexpected output ${JSON.stringify(out)}`);
  return m[1];
}

/** The lab host's own public host key file (what its sshd presents; it has an ed25519 and an ecdsa key). */
export function hostPubKeyFile(host: string, type: 'ed25519' | 'ecdsa' = 'ed25519'): string {
  return join(LAB_DIR, 'hosts', host, `ssh_host_${type}_key.pub`);
}

/** A fresh ed25519 key pair in a temp dir; returns the `.pub` line ("ssh-ed25519 AAAA… comment") and its path. */
export function newEd25519Key(comment = 'ugro-test-wrong-key'): { pubLine: string; pubFile: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ugro-key-'));
  const key = join(dir, 'id');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', key]);
  return { pubLine: readFileSync(`${key}.pub`, 'utf8').trim(), pubFile: `${key}.pub` };
}

/**
 * A temp copy of the lab's cluster file whose `ssh.known_hosts` points at a temp file with
 * `knownHostsText` in it. Returns both paths.
 */
export function tempLabCluster(knownHostsText: string): { clusterFile: string; knownHosts: string; dir: string } {
  labAvailable();
  const dir = mkdtempSync(join(tmpdir(), 'ugro-lab-cluster-'));
  const knownHosts = join(dir, 'known_hosts');
  writeFileSync(knownHosts, knownHostsText, { mode: 0o600 });
  const doc = parse(readFileSync(LAB_CLUSTER_FILE, 'utf8')) as { ssh: Record<string, unknown> };
  doc.ssh.known_hosts = knownHosts;
  const clusterFile = join(dir, 'cluster.yaml');
  writeFileSync(clusterFile, stringify(doc));
  return { clusterFile, knownHosts, dir };
}

/** Captures what a CLI command writes, for main(argv, io). */
export function captureIo(): {
  io: { out: (s: string) => void; err: (s: string) => void };
  out: () => string;
  err: () => string;
} {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { out: (s) => out.push(s), err: (s) => err.push(s) },
    out: () => out.join('\n'),
    err: () => err.join('\n'),
  };
}
