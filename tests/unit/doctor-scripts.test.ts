/**
 * The doctor's reachability scripts, run for real here (sh + python3, loopback): the listener takes the
 * first free port of the range and names the busy ones, answers its token, and ends when its stdin
 * closes (or, for a job's preflight, once it answered EXPECT peers, leaving the port bindable at once);
 * the connector tells ok from refused from a stranger on the port.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { parseRecords } from '../../controller/backends/records.ts';
import { runtimeScripts } from '../../controller/backends/ssh/scripts.ts';

const S = runtimeScripts();
const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});
/** A TCP server on a free loopback port that answers `text` (a stranger on the rendezvous port). */
async function server(text = ''): Promise<number> {
  const s = createServer((c) => c.end(text));
  servers.push(s);
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return (s.address() as { port: number }).port;
}
/** The connector, run without blocking this process (its test servers must answer meanwhile). */
const connect = async (token: string, ...peers: string[]) =>
  parseRecords(
    (
      await promisify(execFile)('sh', [
        '-c',
        S.text('doctor-connect'),
        'ugro-doctor-connect',
        'python3',
        '2000',
        token,
        ...peers,
      ])
    ).stdout,
  ).map((b) => Object.fromEntries(b.fields));

describe('doctor-listen.sh and doctor-connect.sh', () => {
  it('the first free port of the range, its token to a connect, and an end when stdin closes', async () => {
    const busy = await server();
    const p = spawn(
      'sh',
      ['-c', S.text('doctor-listen'), 'ugro-doctor-listen', 'python3', String(busy), '8', 'tok1', '20'],
      {
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    );
    let out = '';
    p.stdout.on('data', (b) => {
      out += b;
    });
    while (!out.includes('@@end')) await once(p.stdout, 'data');
    const b = parseRecords(out)[0];
    expect(b.kind).toBe('listen');
    const port = Number(b.fields.find(([k]) => k === 'port')![1]);
    expect(port).toBeGreaterThan(busy);
    expect(b.fields.filter(([k]) => k === 'busy').map(([, v]) => Number(v))).toContain(busy);
    const stranger = await server('SSH-2.0-OpenSSH\n');
    const closed = await server();
    const last = servers.pop()!;
    last.close(); // nothing listens there any more: refused
    await once(last, 'close');
    const r = await connect(
      'tok1',
      'a',
      '127.0.0.1',
      String(port),
      'b',
      '127.0.0.1',
      String(stranger),
      'c',
      '127.0.0.1',
      String(closed),
    );
    expect(r.map((x) => [x.peer, x.result])).toEqual([
      ['a', 'ok'],
      ['b', 'wrong-answer'],
      ['c', 'refused'],
    ]);
    const exited = once(p, 'exit');
    p.stdin.end();
    const [code] = await exited;
    expect(code).toBe(0);
  });

  it('EXPECT 2: ends by itself once two peers were answered; its port binds again at once (no TIME_WAIT)', async () => {
    const p = spawn(
      'sh',
      ['-c', S.text('doctor-listen'), 'ugro-doctor-listen', 'python3', '29650', '16', 'tok2', '20', '2'],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    let out = '';
    p.stdout.on('data', (b) => {
      out += b;
    });
    while (!out.includes('@@end')) await once(p.stdout, 'data');
    const port = parseRecords(out)[0].fields.find(([k]) => k === 'port')![1];
    const exited = once(p, 'exit');
    const r = await connect('tok2', 'a', '127.0.0.1', port, 'b', '127.0.0.1', port);
    expect(r.map((x) => x.result)).toEqual(['ok', 'ok']);
    // Its stdin is still open: it ended because both peers were answered.
    const [code] = await exited;
    expect(code).toBe(0);
    // A bind without SO_REUSEADDR fails while a closed connection of the port is in TIME_WAIT here.
    const bind = await promisify(execFile)('python3', [
      '-c',
      'import socket,sys; s=socket.socket(); s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); print("bound")',
      port,
    ]);
    expect(bind.stdout.trim()).toBe('bound');
  });

  it('refuses a token that is not plain letters and digits (it is sent back over the network)', () => {
    expect(() =>
      execFileSync('sh', ['-c', S.text('doctor-listen'), 'ugro-doctor-listen', 'python3', '29500', '4', 'a b', '5'], {
        stdio: 'pipe',
      }),
    ).toThrow(/TOKEN must be/);
  });
});
