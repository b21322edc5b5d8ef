/**
 * How each node's torchrun is started (torchrunArgv's program: `python -c TORCHRUN_MAIN FLAGS…`),
 * run for real by python3 against a stand-in torch.distributed.run (this machine's python may
 * have no torch; only the wrapper around torchrun's main is under test): its flags reach main;
 * a torchrun that fails (a worker failed, a signal) prints its traceback and exits 1 at once,
 * without the interpreter's teardown (an atexit handler shows whether it ran: torch's teardown
 * is 0.3-0.6 s on the lab, see npm run bench, recovery); a success or sys.exit exits as Python
 * would, teardown included (the store host must outlive its peers' closing of the rendezvous).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { describe, expect, it } from 'vitest';
import { torchrunArgv } from '../../controller/core/launch.ts';
import { host, job } from './job-fixtures.ts';

const STANDIN_RUN = `
import atexit, os, sys
def main():
    atexit.register(lambda: open(os.environ["TEARDOWN_FILE"], "w").write("ran"))
    sys.stdout.write("main got " + " ".join(sys.argv[1:4]) + "\\n")  # block-buffered on a pipe
    mode = os.environ["STANDIN_MODE"]
    if mode == "fail":
        raise RuntimeError("worker group failed")
    if mode == "exit":
        sys.exit(3)
if __name__ == "__main__":
    main()
`;

function run(mode: 'ok' | 'fail' | 'exit') {
  const dir = mkdtempSync(join(tmpdir(), 'ugro-torchrun-main-'));
  mkdirSync(join(dir, 'torch/distributed'), { recursive: true });
  writeFileSync(join(dir, 'torch/__init__.py'), '');
  writeFileSync(join(dir, 'torch/distributed/__init__.py'), '');
  writeFileSync(join(dir, 'torch/distributed/run.py'), STANDIN_RUN);
  const h = host('gpu1');
  const argv = torchrunArgv(job('train', { script: 'train.py', nodes: 2 }), {
    host: h,
    nodeRank: 1,
    nnodes: 2,
    nproc: 1,
    rdzvAddr: '10.0.0.10',
    port: 29500,
    runId: 'train-abcd1234-a1',
    runDir: posix.join(h.paths.runs, 'train.abcd1234.1'),
    attempt: 1,
    rdzvTimeoutSeconds: 300,
  });
  const teardown = join(dir, 'teardown');
  const r = spawnSync('python3', argv.slice(1), {
    encoding: 'utf8',
    env: { ...process.env, PYTHONPATH: dir, STANDIN_MODE: mode, TEARDOWN_FILE: teardown },
    timeout: 30_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr, tornDown: existsSync(teardown) };
}

describe("torchrun's main as UGRO starts it", () => {
  it('a failed torchrun: its traceback, exit 1, no interpreter teardown, its output flushed', () => {
    const r = run('fail');
    expect(r.code).toBe(1);
    expect(r.err).toContain('Traceback (most recent call last)');
    expect(r.err).toContain('RuntimeError: worker group failed');
    expect(r.out).toBe('main got --nnodes=2 --nproc_per_node=1 --node_rank=1\n');
    expect(r.tornDown).toBe(false);
  });

  it('a torchrun that succeeds exits 0 with the teardown', () => {
    const r = run('ok');
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toContain('main got --nnodes=2');
    expect(r.tornDown).toBe(true);
  });

  it("torchrun's own sys.exit keeps its code (an argument error is exit 2 in argparse)", () => {
    const r = run('exit');
    expect(r.code).toBe(3);
    expect(r.tornDown).toBe(true);
  });
});
