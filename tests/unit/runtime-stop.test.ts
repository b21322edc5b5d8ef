/**
 * stop.sh, the real script on this machine (LocalTransport): its arguments are data, never
 * program text (the old script pasted a cancel's grace into an awk program), bad ones touch
 * nothing; a live run is stopped through its process group and its UGRO_RUN_ID marker, with
 * `remaining` as the proof; a run that ignores SIGTERM is killed after its grace and gets 137.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { STOP_REASONS, type StopReason } from '../../controller/api/run.ts';
import { HostError } from '../../controller/backends/errors.ts';
import { parseRecords, stopAnswerOf } from '../../controller/backends/records.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { LocalTransport, localHost } from '../support/local-transport.ts';
import { runOf } from '../support/run-fixtures.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'ugro-stop-'));
/** Pids of processes whose environment holds UGRO_RUN_ID=id (what stop.sh looks for). */
function marked(id: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/environ`, 'latin1').split('\0').includes(`UGRO_RUN_ID=${id}`)) out.push(Number(p));
    } catch {
      /* gone */
    }
  }
  return out;
}
const aliveNow = (pid: number) => {
  try {
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].startsWith('Z');
  } catch {
    return false;
  }
};

describe.skipIf(process.platform !== 'linux')('stop.sh arguments are data', () => {
  it('a hostile GRACE_MS is refused (exit 2) and runs nothing; the run dir is untouched', async () => {
    const root = tmp();
    const host = localHost(root);
    const { dir, runId } = runOf(host.name, 'train');
    const runDir = join(host.paths.runs, dir);
    mkdirSync(runDir, { recursive: true });
    const pwned = join(root, 'pwned');
    const awkPayload = `0); system("touch ${pwned}"); print (0`;
    // The payload is live: pasted into an awk program as the old stop.sh did, it runs.
    execFileSync('awk', [`BEGIN{print int(${awkPayload}*5)}`]);
    expect(existsSync(pwned)).toBe(true);
    rmSync(pwned);

    const tr = new LocalTransport();
    for (const grace of [
      awkPayload,
      `$(touch ${pwned})`,
      `\`touch ${pwned}\``,
      `1; touch ${pwned}`,
      '1e3',
      '-5',
      '0x10',
      '2.5',
      '',
      '9999999999',
    ]) {
      const res = await tr.sh(host, 'stop', [runDir, runId, grace, 'cancelled']);
      expect(res.code, grace).toBe(2);
      expect(parseRecords(res.stdout).map((b) => b.kind)).toEqual(['error']);
      expect(res.stderr).toMatch(/GRACE_MS must be a decimal integer/);
      expect(existsSync(pwned), grace).toBe(false);
      expect(readdirSync(runDir), grace).toEqual([]);
    }
  });

  it('REASON must be one of STOP_REASONS (each is accepted); RUN_ID must be a plain word', async () => {
    const root = tmp();
    const host = localHost(root);
    const { dir, runId } = runOf(host.name, 'train');
    const runDir = join(host.paths.runs, dir);
    mkdirSync(runDir, { recursive: true });
    const tr = new LocalTransport();
    for (const reason of ['because I said so', 'spec changed', '', `cancelled\n@@stop`, '$(id)']) {
      const res = await tr.sh(host, 'stop', [runDir, runId, '0', reason]);
      expect(res.code, reason).toBe(2);
      expect(readdirSync(runDir)).toEqual([]);
    }
    for (const id of ['', 'a b', '$(id)', '../x', `x\ny`]) {
      expect((await tr.sh(host, 'stop', [runDir, id, '0', 'cancelled'])).code, id).toBe(2);
      expect(readdirSync(runDir)).toEqual([]);
    }
    expect((await tr.sh(host, 'stop', [runDir, runId, '0'])).code).toBe(2);
    // Every reason UGRO has is accepted (here on a dir that does not exist: nothing to stop).
    for (const reason of STOP_REASONS) {
      const res = await tr.sh(host, 'stop', [join(root, 'none'), runId, '0', reason]);
      expect(res.code, reason).toBe(0);
      expect(stopAnswerOf(res.stdout)).toEqual({ remaining: 0, killed: false });
    }
  });

  it('SshBackend.stop refuses a bad reason, grace or run dir before anything reaches the host', async () => {
    const host = localHost(tmp());
    const tr = new LocalTransport();
    const rt = new SshBackend(tr);
    const { dir, runId } = runOf(host.name, 'train');
    for (const req of [
      { dir, runId, graceSeconds: 1, reason: 'sudo' as StopReason },
      { dir, runId, graceSeconds: -1, reason: 'cancelled' as const },
      { dir, runId, graceSeconds: Number.NaN, reason: 'cancelled' as const },
      { dir, runId, graceSeconds: Number.POSITIVE_INFINITY, reason: 'cancelled' as const },
      { dir: '../etc', runId, graceSeconds: 1, reason: 'cancelled' as const },
    ]) {
      const err = await rt.stop(host, req).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HostError);
      expect((err as HostError).kind).toBe('config');
    }
    expect(tr.calls).toEqual([]);
  });

  it('stop.sh answers remaining>0 with exit 1; SshBackend returns it for the caller to log', () => {
    expect(stopAnswerOf('@@stop\nkilled=1\nremaining=2\nwaited_ms=5000\n@@end\n')).toEqual({
      remaining: 2,
      killed: true,
    });
    expect(stopAnswerOf('')).toEqual({ error: 'stop.sh gave no answer' });
  });
});

/** The pid a run's shell writes to `file` (`echo $! >file`): the file exists before the number is in it. */
async function pidWrittenTo(file: string): Promise<number> {
  const pid = () => (existsSync(file) ? /^(\d+)\n$/.exec(readFileSync(file, 'utf8'))?.[1] : undefined);
  for (let i = 0; i < 100 && !pid(); i++) await new Promise((r) => setTimeout(r, 20));
  return Number(pid());
}

describe.skipIf(process.platform !== 'linux')('stopping a live run', () => {
  it('TERM reaches the group and a process that left it (found by its marker); remaining=0', async () => {
    const host = localHost(tmp());
    const rt = new SshBackend(new LocalTransport());
    const { dir, runId, meta } = runOf(host.name, 'esc', 'abcd0001');
    // torchrun that starts a process in a session of its own (out of the run's group).
    const argv = [
      'sh',
      '-c',
      'setsid sleep 60 </dev/null >/dev/null 2>&1 & echo $! >"$UGRO_RUN_DIR/escaped"; sleep 60',
    ];
    await rt.launch(host, { dir, rdzvAddr: '127.0.0.1', meta, argv, ugroEnv: { UGRO_RUN_ID: runId }, jobEnv: {} });
    const escapedFile = join(host.paths.runs, dir, 'escaped');
    const escaped = await pidWrittenTo(escapedFile);
    // Until it has exec'd sleep, $! is a copy of the shell mid-exec, whose environ may not read
    // (a full unit run once saw it missing from marked()).
    const cmd = () => readFileSync(`/proc/${escaped}/cmdline`, 'latin1');
    for (let i = 0; i < 100 && !cmd().startsWith('sleep'); i++) await new Promise((r) => setTimeout(r, 20));
    expect(marked(runId)).toContain(escaped);

    const t0 = Date.now();
    expect(await rt.stop(host, { dir, runId, graceSeconds: 10, reason: 'deleted' })).toEqual({
      remaining: 0,
      killed: false,
    });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(aliveNow(escaped)).toBe(false);
    expect(marked(runId)).toEqual([]);
    const [p] = (await rt.observe(host)).parts;
    expect(p).toMatchObject({ alive: false, stopReason: 'deleted', exitCode: 143 });
  });

  it('the process group is signalled too: a process of the run without the marker stops', async () => {
    const host = localHost(tmp());
    const rt = new SshBackend(new LocalTransport());
    const { dir, runId, meta } = runOf(host.name, 'group', 'abcd0003');
    // A training process that dropped its environment: only the group kill reaches it. (The
    // old stop.sh's `kill -TERM -- -PGID` is an error in dash, so it never did.)
    const argv = ['sh', '-c', 'env -i sleep 60 & echo $! >"$UGRO_RUN_DIR/unmarked"; wait'];
    await rt.launch(host, { dir, rdzvAddr: '127.0.0.1', meta, argv, ugroEnv: { UGRO_RUN_ID: runId }, jobEnv: {} });
    const file = join(host.paths.runs, dir, 'unmarked');
    const unmarked = await pidWrittenTo(file);
    // Until it has exec'd sleep, $! is still a copy of the (marked) shell.
    const cmd = () => readFileSync(`/proc/${unmarked}/cmdline`, 'latin1');
    for (let i = 0; i < 100 && !cmd().startsWith('sleep'); i++) await new Promise((r) => setTimeout(r, 20));
    expect(aliveNow(unmarked)).toBe(true);
    expect(marked(runId)).not.toContain(unmarked);
    expect(await rt.stop(host, { dir, runId, graceSeconds: 10, reason: 'cancelled' })).toEqual({
      remaining: 0,
      killed: false,
    });
    expect(aliveNow(unmarked)).toBe(false);
  });

  it('a run that ignores TERM is killed after its grace: killed=1, exit 137 and a finish time recorded', async () => {
    const host = localHost(tmp());
    const rt = new SshBackend(new LocalTransport());
    const { dir, runId, meta } = runOf(host.name, 'stubborn', 'abcd0002');
    const argv = ['sh', '-c', 'trap "" TERM; sleep 60 & wait'];
    await rt.launch(host, { dir, rdzvAddr: '127.0.0.1', meta, argv, ugroEnv: { UGRO_RUN_ID: runId }, jobEnv: {} });
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    expect(await rt.stop(host, { dir, runId, graceSeconds: 0.6, reason: 'cancelled' })).toEqual({
      remaining: 0,
      killed: true,
    });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(600);
    expect(marked(runId)).toEqual([]);
    const [p] = (await rt.observe(host)).parts;
    expect(p).toMatchObject({ alive: false, stopReason: 'cancelled', exitCode: 137 });
    expect(p.finishedAtMs).toBeGreaterThanOrEqual(t0);
    // The first reason stays: a second stop does not rewrite it.
    await rt.stop(host, { dir, runId, graceSeconds: 0, reason: 'deleted' });
    expect((await rt.observe(host)).parts[0].stopReason).toBe('cancelled');
  });
});
