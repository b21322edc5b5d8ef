/**
 * How git reaches a remote, without a lab: https with a token (a real git-http-backend behind a
 * small local HTTP server that demands Basic auth), and ssh through UGRO's GIT_SSH wrapper (a
 * stand-in `ssh` on PATH records the argv and environment it gets; real sshd is the lab's job).
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Git, gitEnv, writeGitHelpers } from '../../controller/gitops/git.ts';
import { GitSource } from '../../controller/gitops/git-source.ts';
import { jobText, localRemote, quietSourceOptions } from '../support/git-repo.ts';
import { memoryLogger } from '../support/memory-logger.ts';

const HTTP_BACKEND = '/usr/lib/git-core/git-http-backend';
const TOKEN = 'ghp_unit-test-token-0123456789';

/** git's smart HTTP over CGI, behind Basic auth with one user and token; `seen`: every Authorization sent. */
function gitHttpServer(
  root: string,
  user: string,
  token: string,
): Promise<{ server: Server; port: number; seen: string[] }> {
  const want = `Basic ${Buffer.from(`${user}:${token}`).toString('base64')}`;
  const seen: string[] = [];
  const server = createServer((req, res) => {
    if (req.headers.authorization) seen.push(req.headers.authorization);
    if (req.headers.authorization !== want) {
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="ugro-test"' });
      res.end();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://x');
    const child = spawn(HTTP_BACKEND, [], {
      env: {
        PATH: process.env.PATH,
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        HTTP_CONTENT_ENCODING: String(req.headers['content-encoding'] ?? ''),
        GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
        REMOTE_USER: user,
        REMOTE_ADDR: '127.0.0.1',
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    req.pipe(child.stdin);
    const out: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.on('close', () => {
      const all = Buffer.concat(out);
      const end = all.indexOf('\r\n\r\n');
      const head = all.subarray(0, end).toString('utf8').split('\r\n');
      let status = 200;
      const headers: Record<string, string> = {};
      for (const h of head) {
        const i = h.indexOf(':');
        const k = h.slice(0, i).trim();
        const v = h.slice(i + 1).trim();
        if (k.toLowerCase() === 'status') status = Number(v.split(' ')[0]);
        else headers[k] = v;
      }
      res.writeHead(status, headers);
      res.end(all.subarray(end + 4));
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port, seen })),
  );
}

/** Answers everything with a redirect to the same path on `target` (another host name). */
function redirectServer(target: string): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    res.writeHead(302, { Location: `${target}${req.url ?? '/'}` });
    res.end();
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port })),
  );
}

const servers: Server[] = [];
const sources: GitSource[] = [];
afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

/** Every file under dir (recursively), for "the token is on no disk". */
function allFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...allFiles(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

describe('https with a token', () => {
  it('fetches with the token from the environment (GIT_ASKPASS); refused without; the token on no disk', async () => {
    const remote = localRemote();
    const sha = remote.work.commit({ 'jobs/a.yaml': jobText('a', { command: ['true'] }) }, 'a');
    remote.work.push();
    const root = join(remote.bare, '..');
    const { server, port } = await gitHttpServer(root, 'x-access-token', TOKEN);
    servers.push(server);
    const url = `http://127.0.0.1:${port}/server.git`;
    const mk = (token?: string) => {
      const jobs = mkdtempSync(join(tmpdir(), 'ugro-https-'));
      const log = memoryLogger();
      const src = new GitSource({
        jobsDir: jobs,
        url,
        ...quietSourceOptions(),
        auth: { ...quietSourceOptions().auth, ...(token ? { token } : {}) },
        log,
      });
      sources.push(src);
      return { src, jobs, log };
    };
    const none = mk();
    await none.src.start(() => undefined);
    const out = await none.src.syncNow();
    expect(out.ok).toBe(false);
    expect(out.message).toMatch(/Authentication failed|could not read Username|401/i);

    const ok = mk(TOKEN);
    await ok.src.start(() => undefined);
    expect(readFileSync(join(ok.jobs, 'a.yaml'), 'utf8')).toContain('name: a');
    expect((await ok.src.infoFor('a'))?.commit?.revision).toBe(sha);
    for (const f of allFiles(ok.jobs)) expect(readFileSync(f).includes(TOKEN), f).toBe(false);
    expect(JSON.stringify(ok.log.lines)).not.toContain(TOKEN);
  });
});

describe('https: the token goes to the configured host only', () => {
  it('a redirect to another host is not followed, and the token is not answered to its prompt', async () => {
    const remote = localRemote();
    remote.work.commit({ 'jobs/a.yaml': jobText('a', { command: ['true'] }) }, 'a');
    remote.work.push();
    // The other host: a real git server that would accept the token (and records what it is sent).
    const other = await gitHttpServer(join(remote.bare, '..'), 'x-access-token', TOKEN);
    servers.push(other.server);
    // The configured host (127.0.0.1) redirects to it under another name (localhost).
    const hop = await redirectServer(`http://localhost:${other.port}`);
    servers.push(hop.server);
    const jobs = mkdtempSync(join(tmpdir(), 'ugro-https-'));
    const log = memoryLogger();
    const src = new GitSource({
      jobsDir: jobs,
      url: `http://127.0.0.1:${hop.port}/server.git`,
      ...quietSourceOptions(),
      auth: { ...quietSourceOptions().auth, token: TOKEN },
      log,
    });
    sources.push(src);
    await src.start(() => undefined);
    expect(other.seen).toEqual([]);
    const out = await src.syncNow();
    expect(out.ok).toBe(false);
    expect(out.message).toMatch(/302/);
    expect(other.seen).toEqual([]);
    expect(existsSync(join(jobs, 'a.yaml'))).toBe(false);
  });
});

describe('the askpass helper', () => {
  it("answers git's two prompts for the configured origin only", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ugro-askpass-'));
    const helpers = await writeGitHelpers(dir);
    const env = gitEnv(helpers, dir, {
      knownHosts: '/dev/null',
      useAgent: false,
      connectTimeoutSeconds: 5,
      token: TOKEN,
      origin: 'https://git.example.com:8443',
    });
    const ask = (prompt: string) => spawnSync(helpers.askpass, [prompt], { env, encoding: 'utf8' });
    expect(ask("Username for 'https://git.example.com:8443': ")).toMatchObject({
      status: 0,
      stdout: 'x-access-token\n',
    });
    expect(ask("Password for 'https://x-access-token@git.example.com:8443': ")).toMatchObject({
      status: 0,
      stdout: `${TOKEN}\n`,
    });
    for (const other of [
      "Password for 'https://x-access-token@evil.example.com': ",
      "Password for 'https://x-access-token@git.example.com': ",
      "Password for 'https://x-access-token@git.example.com:8443.evil.example.com': ",
      "Username for 'https://evil.example.com': ",
      'Password: ',
    ]) {
      const r = ask(other);
      expect(r.status, other).toBe(1);
      expect(r.stdout, other).toBe('');
    }
  });
});

describe('ssh through the GIT_SSH wrapper', () => {
  it("runs OpenSSH with UGRO's pins only: strict host keys, the known_hosts and key from the environment", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ugro-gitssh-'));
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    const record = join(dir, 'ssh-argv');
    // A stand-in ssh: writes its argv, one per line, and the variables it was given, then fails.
    writeFileSync(
      join(bin, 'ssh'),
      [
        '#!/bin/sh',
        `for a in "$@"; do printf '%s\\n' "$a"; done > "${record}"`,
        "echo 'ssh: stand-in refuses' >&2",
        'exit 255',
        '',
      ].join('\n'),
    );
    chmodSync(join(bin, 'ssh'), 0o755);
    mkdirSync(join(dir, 'state'));
    const helpers = await writeGitHelpers(join(dir, 'state'));
    expect(statSync(helpers.ssh).mode & 0o777).toBe(0o700);
    const paths = { knownHosts: join(dir, 'known_hosts'), key: join(dir, 'id key') };
    const env = gitEnv(
      helpers,
      dir,
      {
        knownHosts: paths.knownHosts,
        identityFile: paths.key,
        useAgent: false,
        connectTimeoutSeconds: 3,
      },
      {
        PATH: `${bin}:${process.env.PATH}`,
        SSH_AUTH_SOCK: '/tmp/agent.sock',
        GIT_DIR: '/etc',
        GIT_SSH_COMMAND: 'evil',
      },
    );
    // The wrapper, not the caller's GIT_SSH_COMMAND: it also beats any core.sshCommand in a config file.
    expect(env.GIT_SSH_COMMAND).toBe(helpers.ssh);
    expect(env.SSH_AUTH_SOCK).toBeUndefined();
    const git = new Git(join(dir, 'repo.git'), env);
    await git.init();
    await expect(git.fetch('ssh://master@10.250.77.10:2222/home/master/jobs.git', 'main')).rejects.toThrow(
      /stand-in refuses/,
    );
    const argv = readFileSync(record, 'utf8').trim().split('\n');
    expect(argv).toEqual([
      '-F',
      '/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'UpdateHostKeys=no',
      '-o',
      'CheckHostIP=no',
      '-o',
      'GlobalKnownHostsFile=/dev/null',
      '-o',
      `UserKnownHostsFile=${paths.knownHosts}`,
      '-o',
      'ConnectTimeout=3',
      '-o',
      'ServerAliveInterval=5',
      '-o',
      'ServerAliveCountMax=3',
      '-o',
      'LogLevel=ERROR',
      '-o',
      'IdentitiesOnly=yes',
      '-i',
      paths.key,
      '-o',
      'SendEnv=GIT_PROTOCOL',
      '-p',
      '2222',
      'master@10.250.77.10',
      "git-upload-pack '/home/master/jobs.git'",
    ]);
  });
});
