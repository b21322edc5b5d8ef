/**
 * The SSH layer and `ugro hosts trust` against an in-process ssh2 server (no lab, no root):
 * the server records what it is asked and answers in ways a real sshd may, including all at
 * once. Host keys come from real ssh-keygen.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint, pinnedHostKey, readKnownHosts } from '../../config/known-hosts.ts';
import { buildCommand } from '../../config/quote.ts';
import { HostError } from '../../controller/backends/errors.ts';
import type { SshTarget } from '../../controller/backends/ssh/connect.ts';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
import { fetchHostKey } from '../../controller/backends/ssh/trust.ts';
import { main } from '../../controller/cli/main.ts';

const dir = mkdtempSync(join(tmpdir(), 'ugro-ssh-server-'));
function keygen(type: 'ed25519' | 'ecdsa', name: string) {
  const f = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', name, '-f', f]);
  const pub = readFileSync(`${f}.pub`, 'utf8').trim();
  const [keyType, b64] = pub.split(' ');
  const fp = /SHA256:\S+/.exec(execFileSync('ssh-keygen', ['-lf', `${f}.pub`], { encoding: 'utf8' }))![0];
  return { priv: f, privKey: readFileSync(f), keyType, b64, blob: Buffer.from(b64, 'base64'), fp };
}
const hostEd = keygen('ed25519', 'host_ed25519');
const hostEcdsa = keygen('ecdsa', 'host_ecdsa');
const userKey = keygen('ed25519', 'user');
const otherUserKey = keygen('ed25519', 'other_user');
const strangerKey = keygen('ed25519', 'stranger');

/** What the server saw. */
const seen = { auths: 0, commands: [] as string[] };
let server: ssh2.Server;
let port = 0;

beforeAll(async () => {
  const allowed = ssh2.utils.parseKey(readFileSync(`${userKey.priv}.pub`));
  if (allowed instanceof Error) throw allowed;
  server = new ssh2.Server({ hostKeys: [hostEd.privKey, hostEcdsa.privKey] }, (client) => {
    client.on('error', () => {});
    // Like OpenSSH's sshd (TCP_NODELAY): each packet leaves at once, so what the server writes
    // in one tick reaches the client together.
    // (ssh2's server Connection has setNoDelay, its typings do not.)
    (client as unknown as { setNoDelay(on: boolean): void }).setNoDelay(true);
    client.on('authentication', (ctx) => {
      seen.auths++;
      if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
      if (ctx.key.algo !== allowed.type || !ctx.key.data.equals(allowed.getPublicSSH())) return ctx.reject();
      if (ctx.signature && allowed.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) !== true) return ctx.reject();
      ctx.accept();
    });
    client.on('ready', () => {
      client.on('session', (acceptSession) => {
        const session = acceptSession();
        session.on('exec', (accept, _reject, info) => {
          seen.commands.push(info.command);
          const stream = accept();
          if (info.command === buildCommand(['burst'])) {
            // Everything at once, in one tick: output, exit status, EOF, close. A fast command
            // on a busy connection looks exactly like this to the client.
            stream.write('hello\n');
            stream.exit(7);
            stream.end();
          } else {
            // Paced: the exit status follows the output a little later, as from a real command.
            const paced = info.command === buildCommand(['paced']);
            stream.write(paced ? 'hello\n' : `ran: ${info.command}\n`);
            setTimeout(() => {
              stream.exit(paced ? 7 : 0);
              stream.end();
            }, 30);
          }
        });
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

function target(knownHostsText: string, identityFile = userKey.priv): SshTarget {
  const f = join(mkdtempSync(join(dir, 'kh-')), 'known_hosts');
  writeFileSync(f, knownHostsText);
  return {
    name: 'fake',
    hostname: 'fake',
    address: '127.0.0.1',
    port,
    user: 'u',
    ssh: { identityFile, knownHosts: f, useAgent: false, connectTimeoutMs: 2000, keepaliveMs: 15000 },
  };
}
const pinEd = () => `[127.0.0.1]:${port} ${hostEd.keyType} ${hostEd.b64}\n`;
const pinEcdsa = () => `[127.0.0.1]:${port} ${hostEcdsa.keyType} ${hostEcdsa.b64}\n`;

async function refusal(p: Promise<unknown>): Promise<HostError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(HostError);
    return e as HostError;
  }
  throw new Error('expected a refusal');
}

describe('SshPool against an in-process server', () => {
  it('sends exactly buildCommand(argv) and returns output and exit code', async () => {
    const pool = new SshPool([target(pinEd())]);
    try {
      const argv = ['printf', '%s', "it's $(id)", ''];
      const r = await pool.exec('fake', argv, { env: { A: 'b c' }, cwd: '/tmp/x y' });
      const sent = buildCommand(argv, { env: { A: 'b c' }, cwd: '/tmp/x y' });
      expect(seen.commands.at(-1)).toBe(sent);
      expect(r).toMatchObject({ code: 0, signal: null, stdout: `ran: ${sent}\n`, stderr: '' });
    } finally {
      pool.close();
    }
  });

  it(
    'a host pinned by its ecdsa key is reached although it also has an ed25519 key ' +
      '(only pinned algorithms offered)',
    async () => {
      const pool = new SshPool([target(pinEcdsa())]);
      try {
        expect((await pool.exec('fake', ['true'])).code).toBe(0);
      } finally {
        pool.close();
      }
    },
  );

  it("a changed host key is refused before authentication: no login, no command ('hostkey-changed')", async () => {
    const before = { auths: seen.auths, commands: seen.commands.length };
    const pool = new SshPool([target(`[127.0.0.1]:${port} ${strangerKey.keyType} ${strangerKey.b64}\n`)]);
    try {
      const e = await refusal(pool.exec('fake', ['touch', '/tmp/pwned']));
      expect(e.kind).toBe('hostkey-changed');
      expect(e.message).toContain(strangerKey.fp);
      expect(e.message).toContain(hostEd.fp);
    } finally {
      pool.close();
    }
    expect(seen.auths).toBe(before.auths);
    expect(seen.commands.length).toBe(before.commands);
  });

  it("a key the server does not accept: kind 'auth', names the user", async () => {
    const pool = new SshPool([target(pinEd(), otherUserKey.priv)]);
    try {
      const e = await refusal(pool.exec('fake', ['true']));
      expect(e.kind).toBe('auth');
      expect(e.message).toContain('authentication failed for u@127.0.0.1');
    } finally {
      pool.close();
    }
  });

  it('control: an exit status sent a little after the output is returned', async () => {
    const pool = new SshPool([target(pinEd())]);
    try {
      expect(await pool.exec('fake', ['paced'])).toMatchObject({ code: 7, stdout: 'hello\n' });
    } finally {
      pool.close();
    }
  });

  it('regression: an exit status that arrives together with the output is not lost (code 7, not null)', async () => {
    // exec() attaches its 'exit' listener only after several awaits following the channel
    // callback; ssh2 emits 'exit' synchronously while parsing, so a fast command's status is
    // dropped (seen on the lab as code null for `sha256sum` right after an sftp upload).
    const pool = new SshPool([target(pinEd())]);
    try {
      await pool.exec('fake', ['true']); // connected, so the next answer comes in one read
      const r = await pool.exec('fake', ['burst']);
      expect(r.stdout).toBe('hello\n');
      expect(r.code).toBe(7);
    } finally {
      pool.close();
    }
  });
});

describe('fetchHostKey / ugro hosts trust against an in-process server', () => {
  function clusterFile(knownHostsText: string, workers = ''): { file: string; knownHosts: string } {
    const d = mkdtempSync(join(dir, 'cluster-'));
    const knownHosts = join(d, 'known_hosts');
    writeFileSync(knownHosts, knownHostsText);
    const file = join(d, 'cluster.yaml');
    writeFileSync(
      file,
      `cluster:\n  name: t\n  master: { name: fake, hostname: fake, ip: 127.0.0.1, port: ${port}, user: u }\n` +
        `ssh: { identity_file: "${userKey.priv}", known_hosts: "${knownHosts}", ` +
        'use_agent: false, connect_timeout_seconds: 2 }\n' +
        workers,
    );
    return { file, knownHosts };
  }
  async function ugro(...args: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(['node', 'ugro', ...args], { out: (s) => out.push(s), err: (s) => err.push(s) }, {});
    return { code, out: out.join('\n'), err: err.join('\n') };
  }

  it('fetchHostKey sees the key without logging in, of the type asked for', async () => {
    const before = seen.auths;
    const t = target('');
    const ed = await fetchHostKey(t);
    expect(ed).toMatchObject({ type: 'ssh-ed25519', fingerprint: hostEd.fp });
    expect(ed.key.equals(hostEd.blob)).toBe(true);
    const ec = await fetchHostKey(t, ['ecdsa-sha2-nistp256']);
    expect(ec).toMatchObject({ type: 'ecdsa-sha2-nistp256', fingerprint: hostEcdsa.fp });
    expect(seen.auths).toBe(before);
  });

  it(
    'trust pins every key an unknown host offers ' +
      '(fingerprints as ssh-keygen -lf), then the pool connects with them',
    async () => {
      const { file, knownHosts } = clusterFile('');
      const wrong = await ugro('--cluster', file, 'hosts', 'trust', 'fake', '--fingerprint', strangerKey.fp);
      expect(wrong.code).toBe(1);
      expect(wrong.err).toContain(
        `REFUSING: the host presents ssh-ed25519 ${hostEd.fp}, ecdsa-sha2-nistp256 ${hostEcdsa.fp}; ` +
          `none has the fingerprint ${strangerKey.fp}`,
      );
      expect(readFileSync(knownHosts, 'utf8')).toBe('');

      const r = await ugro('--cluster', file, 'hosts', 'trust', 'fake');
      expect(r.code).toBe(0);
      expect(r.out).toContain(`fake: pinned in ${knownHosts}:`);
      expect(r.out).toContain(`ssh-ed25519 ${hostEd.fp}`);
      expect(r.out).toContain(`ecdsa-sha2-nistp256 ${hostEcdsa.fp}`);
      expect(readFileSync(knownHosts, 'utf8')).toBe(
        `[fake]:${port},[127.0.0.1]:${port} ssh-ed25519 ${hostEd.b64}\n` +
          `[fake]:${port},[127.0.0.1]:${port} ecdsa-sha2-nistp256 ${hostEcdsa.b64}\n`,
      );
      expect(fingerprint(hostEd.blob)).toBe(hostEd.fp);
      // The key Pulumi's Go client would negotiate first is the one infra pins.
      expect(pinnedHostKey(readKnownHosts(knownHosts), ['fake'], port)).toBe(`ecdsa-sha2-nistp256 ${hostEcdsa.b64}`);

      const again = await ugro('--cluster', file, 'hosts', 'trust', 'fake');
      expect(again.code).toBe(0);
      expect(again.out).toContain('already pinned');
    },
  );

  it('trust --fingerprint pins only the keys it names and lists the others', async () => {
    const { file, knownHosts } = clusterFile('');
    const r = await ugro('--cluster', file, 'hosts', 'trust', '--fingerprint', hostEd.fp, 'fake');
    expect(r.code, r.err).toBe(0);
    expect(readFileSync(knownHosts, 'utf8')).toBe(`[fake]:${port},[127.0.0.1]:${port} ssh-ed25519 ${hostEd.b64}\n`);
    expect(r.out).toContain(`not pinned (no --fingerprint given for them): ecdsa-sha2-nistp256 ${hostEcdsa.fp}`);
  });

  it('trust --fingerprint adds a new type to a pinned host; a key marked @revoked is never pinned', async () => {
    const ed = `[127.0.0.1]:${port} ssh-ed25519 ${hostEd.b64}\n`;
    const { file, knownHosts } = clusterFile(ed);
    const add = await ugro('--cluster', file, 'hosts', 'trust', 'fake', '--fingerprint', hostEcdsa.fp);
    expect(add.code, add.err).toBe(0);
    expect(readFileSync(knownHosts, 'utf8')).toBe(
      `${ed}[fake]:${port},[127.0.0.1]:${port} ecdsa-sha2-nistp256 ${hostEcdsa.b64}\n`,
    );

    const rev = clusterFile(`@revoked [127.0.0.1]:${port} ecdsa-sha2-nistp256 ${hostEcdsa.b64}\n`);
    const r = await ugro('--cluster', rev.file, 'hosts', 'trust', 'fake');
    expect(r.code).toBe(0);
    expect(r.err).toContain(`not pinning ecdsa-sha2-nistp256 ${hostEcdsa.fp}: ${rev.knownHosts} marks it @revoked`);
    expect(readFileSync(rev.knownHosts, 'utf8').split('\n').filter(Boolean)).toEqual([
      `@revoked [127.0.0.1]:${port} ecdsa-sha2-nistp256 ${hostEcdsa.b64}`,
      `[fake]:${port},[127.0.0.1]:${port} ssh-ed25519 ${hostEd.b64}`,
    ]);
  });

  it('a host that refuses connections fails alone: the others are still trusted, exit 1', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const deadPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const { file, knownHosts } = clusterFile(
      '',
      `workers:\n  - { name: dead, hostname: dead, ip: 127.0.0.1, ssh_port: ${deadPort}, user: u, rank: 1 }\n`,
    );
    const r = await ugro('--cluster', file, 'hosts', 'trust', 'dead', 'fake');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^dead: ssh: connection refused/m);
    expect(readFileSync(knownHosts, 'utf8')).toContain(`ssh-ed25519 ${hostEd.b64}`);
  });

  it('trust refuses to replace a different pinned key and leaves known_hosts alone', async () => {
    const text = `[127.0.0.1]:${port} ${strangerKey.keyType} ${strangerKey.b64}\n`;
    const { file, knownHosts } = clusterFile(text);
    const r = await ugro('--cluster', file, 'hosts', 'trust', 'fake');
    expect(r.code).toBe(1);
    expect(r.err).toContain('REFUSING');
    expect(r.err).toContain(strangerKey.fp);
    expect(r.err).toContain(hostEd.fp);
    expect(readFileSync(knownHosts, 'utf8')).toBe(text);
  });

  it('regression: a host pinned by its ecdsa key is "already pinned", not a changed key', async () => {
    // `fetchHostKey(h, pinned[0] ? undefined : undefined)` never asks for the pinned key's
    // type, so the server shows its ed25519 key and trust cries "different key".
    const { file } = clusterFile(pinEcdsa());
    const r = await ugro('--cluster', file, 'hosts', 'trust', 'fake');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain(`fake: ecdsa-sha2-nistp256 ${hostEcdsa.fp} already pinned`);
  });
});
