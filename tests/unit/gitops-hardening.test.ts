/**
 * Nothing in the clone's directory chooses a program or a destination for git (issue 15, item 2):
 * a repo.git/config planted with every key that can name a program (core.sshCommand, uploadpack,
 * gpg.ssh.program, hooks, fsmonitor, credential.helper, alternateRefsCommand, include.path ...)
 * or redirect a fetch (url.*.insteadOf) runs none of them, fetches from the configured URL only,
 * and is restored with a CloneTampered event. Real git, a file:// remote and, for ssh, a stand-in
 * `ssh` on PATH (real sshd is the lab's). Each planted program appends its name to a marker file.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GitSource, type GitSourceOptions } from '../../controller/gitops/git-source.ts';
import { jobText, localRemote, quietSourceOptions, signingKey } from '../support/git-repo.ts';
import { memoryLogger } from '../support/memory-logger.ts';

const SPEC = { command: ['python3', '/opt/t.py'] };
const sources: GitSource[] = [];
afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
});

function source(o: Partial<GitSourceOptions> & { url: string; jobsDir: string }) {
  const log = memoryLogger();
  const src = new GitSource({
    ...quietSourceOptions(),
    log,
    ...o,
  });
  sources.push(src);
  return { src, log };
}

/** Programs that record that they ran (their name, one line each) in `ran`, then fail. */
function evilKit(dir: string) {
  const ran = join(dir, 'ran');
  const bin = join(dir, 'evil');
  mkdirSync(join(bin, 'hooks'), { recursive: true });
  const prog = (name: string, at = join(bin, name)) => {
    writeFileSync(at, `#!/bin/sh\necho ${name} >> '${ran}'\nexit 1\n`);
    chmodSync(at, 0o755);
    return at;
  };
  for (const h of ['reference-transaction', 'post-update', 'pre-auto-gc', 'post-checkout', 'fsmonitor-watchman'])
    prog(`hook-${h}`, join(bin, 'hooks', h));
  return {
    ran: () => (existsSync(ran) ? readFileSync(ran, 'utf8').trim().split('\n') : []),
    prog,
    hooks: join(bin, 'hooks'),
  };
}

describe('the clone cannot choose a program or a destination', () => {
  it('a planted repo.git/config (and alternates) runs nothing, fetches the configured URL only', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ugro-planted-'));
    const kit = evilKit(dir);
    const key = signingKey(dir);
    const remote = localRemote();
    remote.work.commit({ 'jobs/a.yaml': jobText('a', SPEC) }, 'a', { signingKey: key.key });
    remote.work.push();
    // What the attacker would rather have applied: another repository with its own job.
    const other = localRemote();
    other.work.commit({ 'jobs/evil.yaml': jobText('evil', SPEC) }, 'evil', { signingKey: key.key });
    other.work.push();
    const jobsDir = mkdtempSync(join(tmpdir(), 'ugro-gitjobs-'));
    const { src, log } = source({ url: remote.url, jobsDir, requireSigned: true, allowedSigners: key.allowedSigners });
    await src.start(() => undefined);
    expect(existsSync(join(jobsDir, 'a.yaml'))).toBe(true);

    const repo = join(jobsDir, '.ugro', 'git', 'repo.git');
    const included = join(dir, 'included.config');
    writeFileSync(included, `[core]\n\tsshCommand = ${kit.prog('include-ssh')}\n`);
    const planted = [
      '[core]',
      '\trepositoryformatversion = 0',
      '\tbare = true',
      `\tsshCommand = ${kit.prog('core-sshCommand')}`,
      `\taskPass = ${kit.prog('core-askPass')}`,
      `\tfsmonitor = ${kit.prog('core-fsmonitor')}`,
      `\thooksPath = ${kit.hooks}`,
      `\talternateRefsCommand = ${kit.prog('core-alternateRefsCommand')}`,
      '[credential]',
      `\thelper = !${kit.prog('credential-helper')}`,
      '[gpg]',
      `\tprogram = ${kit.prog('gpg-program')}`,
      '[gpg "ssh"]',
      `\tprogram = ${kit.prog('gpg-ssh-program')}`,
      '[log]',
      '\tshowSignature = true',
      `[remote "${remote.url}"]`,
      `\tuploadpack = ${kit.prog('remote-uploadpack')}`,
      `[url "${other.url}"]`,
      `\tinsteadOf = ${remote.url}`,
      '[protocol]',
      '\tallow = always',
      '[include]',
      `\tpath = ${included}`,
      '',
    ].join('\n');
    writeFileSync(join(repo, 'config'), planted);
    mkdirSync(join(repo, 'objects', 'info'), { recursive: true });
    writeFileSync(join(repo, 'objects', 'info', 'alternates'), `${join(other.bare, 'objects')}\n`);

    // A new signed head: fetch, verify-commit, log and show all run with the planted config there.
    const sha = remote.work.commit({ 'jobs/b.yaml': jobText('b', SPEC) }, 'b', { signingKey: key.key });
    remote.work.push();
    const out = await src.syncNow();
    expect(kit.ran()).toEqual([]);
    expect(out).toMatchObject({ ok: true, revision: sha });
    expect(existsSync(join(jobsDir, 'b.yaml'))).toBe(true);
    expect(existsSync(join(jobsDir, 'evil.yaml'))).toBe(false);
    // Restored, and said so.
    expect(readFileSync(join(repo, 'config'), 'utf8')).not.toContain('sshCommand');
    expect(existsSync(join(repo, 'objects', 'info', 'alternates'))).toBe(false);
    expect(log.lines.some((l) => l.msg.includes('changed by someone else'))).toBe(true);
    const events = readFileSync(join(jobsDir, '.ugro', 'events.jsonl'), 'utf8');
    expect(events).toContain('CloneTampered');

    // Planted while stopped: the next start restores it before git reads it.
    await src.stop();
    writeFileSync(join(repo, 'config'), planted);
    const again = source({ url: remote.url, jobsDir, requireSigned: true, allowedSigners: key.allowedSigners });
    await again.src.start(() => undefined);
    remote.work.commit({ 'jobs/c.yaml': jobText('c', SPEC) }, 'c', { signingKey: key.key });
    remote.work.push();
    expect(await again.src.syncNow()).toMatchObject({ ok: true });
    expect(kit.ran()).toEqual([]);
  });

  it("ssh: a planted core.sshCommand loses to UGRO's wrapper (which runs OpenSSH from PATH)", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ugro-planted-ssh-'));
    const kit = evilKit(dir);
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    const standIn = join(dir, 'stand-in-ran');
    writeFileSync(
      join(bin, 'ssh'),
      `#!/bin/sh\necho "$@" >> '${standIn}'\necho 'ssh: stand-in refuses' >&2\nexit 255\n`,
    );
    chmodSync(join(bin, 'ssh'), 0o755);
    const jobsDir = mkdtempSync(join(tmpdir(), 'ugro-gitjobs-'));
    const url = 'ssh://git@git.example.com/jobs.git';
    const baseEnv = { PATH: `${bin}:${process.env.PATH}` };
    const first = source({ url, jobsDir, baseEnv });
    await first.src.start(() => undefined);
    await first.src.stop();
    const repo = join(jobsDir, '.ugro', 'git', 'repo.git');
    writeFileSync(
      join(repo, 'config'),
      `[core]\n\tbare = true\n\tsshCommand = ${kit.prog('core-sshCommand')}\n` +
        `[url "ssh://evil.example.com/"]\n\tinsteadOf = ssh://git@git.example.com/\n`,
    );
    const { src } = source({ url, jobsDir, baseEnv });
    await src.start(() => undefined);
    const out = await src.syncNow();
    expect(kit.ran()).toEqual([]);
    expect(out.ok).toBe(false);
    expect(out.message).toMatch(/stand-in refuses/);
    const calls = readFileSync(standIn, 'utf8');
    expect(calls).toContain('git@git.example.com');
    expect(calls).not.toContain('evil.example.com');
  });
});
