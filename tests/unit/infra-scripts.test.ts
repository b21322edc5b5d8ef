/**
 * The remote-script builders of infra/scripts.ts, run for real under /bin/sh on this machine
 * (no SSH): against the lab's stand-in nvidia-smi and pixi, Debian's python3 and torch, and
 * temp directories. Each step must say `unchanged` on a second run, and fail with one line that
 * names the host and the fix.
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InternalError, UgroError } from '../../config/errors.ts';
import { readTree, sha256 } from '../../config/hash.ts';
import { shQuote } from '../../config/quote.ts';
import { deployTreeScript, removeTreeScript } from '../../infra/deploy-scripts.ts';
import {
  asRemoteCommand,
  directoriesScript,
  driverCheckScript,
  parseFacts,
  pixiEnvScript,
  reachabilityScript,
  stepOutcome,
  systemEnvScript,
  torchCheckScript,
  venvEnvScript,
} from '../../infra/scripts.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const STAND_INS = join(ROOT, 'tests/lab/stand-ins');
const tmpRoot = mkdtempSync(join(tmpdir(), 'ugro-infra-scripts-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));
let n = 0;
const tmp = (name = 't') => {
  const d = join(tmpRoot, `${name}-${n++}`);
  mkdirSync(d, { recursive: true });
  return d;
};

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
/** Run a script the way the provider does: through the login shell, which runs `sh -c SCRIPT`. */
function run(script: string, env: Record<string, string> = {}, shell = 'bash'): Run {
  const r = spawnSync(shell, ['-c', asRemoteCommand(script, 'ugro-test')], {
    encoding: 'utf8',
    env: { PATH: '/usr/bin:/bin', HOME: tmpRoot, LANG: 'C.UTF-8', ...env },
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A bin/ with the lab's stand-in nvidia-smi and its gpu.conf next to it (as the lab lays it out). */
function gpuHost(mode: 'ok' | 'old-driver' | 'failing' | 'absent', name = 'NVIDIA GeForce RTX 4070'): string {
  const d = tmp('gpu');
  mkdirSync(join(d, 'bin'));
  if (mode !== 'absent') copyFileSync(join(STAND_INS, 'nvidia-smi'), join(d, 'bin/nvidia-smi'));
  writeFileSync(
    join(d, 'gpu.conf'),
    `mode=${mode}\nname="${name}"\nmemory_total=8188\nmemory_used=312\ndriver=570.133.07\n`,
  );
  return join(d, 'bin');
}

describe('quoting', () => {
  it('passes hostile values through shQuote as single words', () => {
    for (const w of ["it's", '$(touch /tmp/pwned)', '`id`', 'a b', '', 'x;y', '"q"', '\\', '*', '~root', 'a\nb']) {
      const r = spawnSync('sh', ['-c', `printf '%s' ${shQuote(w)}`], { encoding: 'utf8' });
      expect(r.stdout).toBe(w);
    }
  });

  it('asRemoteCommand runs the same under bash and dash, with the exit status kept', () => {
    for (const shell of ['bash', 'sh']) {
      const r = run(`printf '%s|' "$0" "it's"; exit 3`, {}, shell);
      expect(r).toMatchObject({ code: 3, stdout: "ugro-test|it's|" });
    }
  });

  it('a path with quotes, spaces and $() becomes exactly that directory, nothing else runs', () => {
    const base = tmp('q');
    const evil = join(base, `pro ject'$(touch ${base}/pwned)"x`);
    const r = run(directoriesScript({ host: "gpu'1", dirs: [{ path: evil, mode: '750', what: 'project' }] }));
    expect(r.code).toBe(0);
    expect(statSync(evil).isDirectory()).toBe(true);
    expect(existsSync(join(base, 'pwned'))).toBe(false);
    expect(r.stdout).toContain(`ugro: gpu'1: dirs: created ${evil} (project, mode 750)`);
  });
});

describe('reachability', () => {
  it('passes as the right user and refuses the wrong one', () => {
    const me = spawnSync('id', ['-un'], { encoding: 'utf8' }).stdout.trim();
    const ok = run(reachabilityScript({ host: 'gpu1', user: me }));
    expect(ok.code).toBe(0);
    expect(stepOutcome(ok.stdout)).toBe('unchanged');
    expect(parseFacts(ok.stdout).os).toBe('Linux');
    const bad = run(reachabilityScript({ host: 'gpu1', user: 'ob' }));
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toBe(
      `gpu1: logged in as ${me}, the cluster file says ob: fix user (or ssh_port/ip) in the cluster file`,
    );
  });
});

describe('NVIDIA driver check (stand-in nvidia-smi)', () => {
  const script = (min = '550') => driverCheckScript({ host: 'gpu2', minDriver: min, expectModels: ['RTX 4070'] });

  it('passes a new enough driver and reports the GPU', () => {
    const r = run(script(), { PATH: `${gpuHost('ok')}:/usr/bin:/bin` });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(parseFacts(r.stdout)).toEqual({
      driver: '570.133.07',
      gpu_count: '1',
      'gpu.0.name': 'NVIDIA GeForce RTX 4070',
      'gpu.0.memory_mib': '8188',
    });
    expect(r.stdout).toContain('ugro: gpu2: driver: unchanged: NVIDIA driver 570.133.07 >= 550, 1 GPU(s)');
  });

  it('fails an old driver with the exact message', () => {
    const r = run(script(), { PATH: `${gpuHost('old-driver')}:/usr/bin:/bin` });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('gpu2: NVIDIA driver 470.82.01 < required 550: upgrade the driver');
    expect(r.stdout).not.toMatch(/ugro: gpu2: driver: (unchanged|changed)/);
  });

  it('fails a missing driver with the exact message', () => {
    const r = run(script('525.60.13'), { PATH: `${gpuHost('absent')}:/usr/bin:/bin` });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(
      'gpu2: nvidia-smi not found: no NVIDIA driver installed (install the NVIDIA driver >= 525.60.13)',
    );
  });

  it('fails a driver that does not answer', () => {
    const r = run(script(), { PATH: `${gpuHost('failing')}:/usr/bin:/bin` });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(
      new RegExp(
        "^gpu2: nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate " +
          'with the NVIDIA driver\\..*: the driver is installed but not working ' +
          '\\(reboot, or reinstall the NVIDIA driver >= 550 for the running kernel\\)$',
      ),
    );
  });

  it('warns (does not fail) when the model differs from the cluster file', () => {
    const r = run(script(), { PATH: `${gpuHost('ok', 'NVIDIA GeForce RTX 3060')}:/usr/bin:/bin` });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(
      'ugro: gpu2: driver: warning: the cluster file expects a RTX 4070, ' +
        'nvidia-smi lists: 0, NVIDIA GeForce RTX 3060, 8188',
    );
  });

  it('fails when fewer GPUs answer than the cluster file expects', () => {
    const r = run(driverCheckScript({ host: 'gpu2', minDriver: '550', expectModels: ['RTX 4070', 'RTX 4070'] }), {
      PATH: `${gpuHost('ok')}:/usr/bin:/bin`,
    });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(
      'gpu2: nvidia-smi lists 1 GPU(s), the cluster file expects 2 (RTX 4070, RTX 4070): ' +
        'check that every GPU is seated and powered, or fix gpus/hardware in the cluster file',
    );
  });

  // Numeric, field by field; a stub nvidia-smi that prints one version is enough for this.
  it.each([
    ['550.54.14', '550', true],
    ['550', '550.0.0', true],
    ['525.60', '525.60.13', false],
    ['1000.1', '999.99', true],
    ['535.54', '550', false],
    ['550.100', '550.54.14', true],
  ])('driver %s against minimum %s: passes=%s', (drv, min, passes) => {
    const bin = tmp('stub');
    writeFileSync(
      join(bin, 'nvidia-smi'),
      `#!/bin/sh\ncase "$*" in *index,name*) echo "0, NVIDIA GeForce RTX 4070, 8188" ;; *) echo "${drv}" ;; esac\n`,
    );
    chmodSync(join(bin, 'nvidia-smi'), 0o755);
    const r = run(script(min), { PATH: `${bin}:/usr/bin:/bin` });
    expect(r.code).toBe(passes ? 0 : 1);
    if (!passes) expect(r.stderr.trim()).toBe(`gpu2: NVIDIA driver ${drv} < required ${min}: upgrade the driver`);
  });

  it('skips the check on a host without GPUs', () => {
    const r = run(driverCheckScript({ host: 'cpu1', minDriver: '550', expectModels: [] }));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      'ugro: cpu1: driver: unchanged: no GPU expected in the cluster file, driver check skipped',
    );
  });

  it('refuses a minimum that is not a version', () => {
    expect(() => driverCheckScript({ host: 'g', minDriver: '550; rm -rf /', expectModels: ['x'] })).toThrow(
      /not a version/,
    );
    // Both its sources are schema-checked: a bug, not the machine.
    expect(() => driverCheckScript({ host: 'g', minDriver: 'x', expectModels: ['x'] })).toThrow(InternalError);
  });
});

describe('directories', () => {
  it("refuses a relative path from the cluster file (its schema allows one) with the fix, as the input's error", () => {
    const dirs = [{ path: 'ugro/runs', mode: '750', what: 'runs' }];
    expect(() => directoriesScript({ host: 'gpu1', dirs })).toThrow(UgroError);
    expect(() => directoriesScript({ host: 'gpu1', dirs })).toThrow(
      'gpu1: the runs path "ugro/runs" is not absolute: give the paths of this host in the cluster file as /… or ~/…',
    );
  });

  it('creates with modes, then reports unchanged; fixes world-writable; never deletes', () => {
    const base = tmp('dirs');
    const dirs = [
      { path: join(base, 'p'), mode: '755', what: 'project' },
      { path: join(base, 'p/checkpoints'), mode: '750', what: 'checkpoints' },
      { path: join(base, 'p/.ugro'), mode: '700', what: 'UGRO state' },
    ];
    const s = directoriesScript({ host: 'gpu1', dirs });
    const a = run(s);
    expect(a.code).toBe(0);
    expect(stepOutcome(a.stdout)).toBe('changed');
    expect(dirs.map((d) => (statSync(d.path).mode & 0o777).toString(8))).toEqual(['755', '750', '700']);
    writeFileSync(join(base, 'p/checkpoints/step-100.pt'), 'weights');
    const b = run(s);
    expect(b.stdout.trim()).toBe('ugro: gpu1: dirs: unchanged: 3 directories in place');
    chmodSync(join(base, 'p/checkpoints'), 0o777);
    const c = run(s);
    expect(c.stdout).toContain(
      `ugro: gpu1: dirs: removed write permission for others on ${base}/p/checkpoints (checkpoints)`,
    );
    expect((statSync(join(base, 'p/checkpoints')).mode & 0o777).toString(8)).toBe('775');
    expect(readFileSync(join(base, 'p/checkpoints/step-100.pt'), 'utf8')).toBe('weights');
  });

  it('fails on a file where a directory should be', () => {
    const base = tmp('dirs');
    writeFileSync(join(base, 'runs'), 'x');
    const r = run(directoriesScript({ host: 'gpu1', dirs: [{ path: join(base, 'runs'), mode: '750', what: 'runs' }] }));
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(
      `gpu1: ${base}/runs (runs) exists and is not a directory: move it away, or set paths in the cluster file`,
    );
  });

  it('refuses relative paths and odd modes at build time', () => {
    expect(() => directoriesScript({ host: 'g', dirs: [{ path: 'ugro', mode: '755', what: 'project' }] })).toThrow(
      /not absolute/,
    );
    expect(() => directoriesScript({ host: 'g', dirs: [{ path: '/u', mode: 'rwx', what: 'project' }] })).toThrow(
      /not octal/,
    );
  });
});

describe('environments', () => {
  it('system: reports the interpreter; a missing one fails with the fix', () => {
    const r = run(systemEnvScript({ host: 'gpu1', python: '/usr/bin/python3' }));
    expect(r.code).toBe(0);
    expect(parseFacts(r.stdout)).toMatchObject({ python: '/usr/bin/python3', env_path: '/usr' });
    expect(stepOutcome(r.stdout)).toBe('unchanged');
    const bad = run(systemEnvScript({ host: 'gpu1', python: 'python9' }));
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toBe(
      'gpu1: python interpreter python9 not found: ' +
        'install python3, or set environment.python in the cluster file (or ugro:python)',
    );
  });

  describe('pixi (stand-in pixi: checks arguments like pixi 0.40)', () => {
    const project = () => {
      const d = tmp('pixi');
      writeFileSync(
        join(d, 'pixi.toml'),
        '[project]\nname = "ugro"\nchannels = ["conda-forge"]\nplatforms = ["linux-64"]\n\n' +
          '[dependencies]\npython = "3.11.*"\n',
      );
      writeFileSync(join(d, 'pixi.lock'), 'version: 6\nenvironments: {}\npackages: []\n');
      return d;
    };
    const env = (log: string) => ({ PATH: `${STAND_INS}:/usr/bin:/bin`, PIXI_STANDIN_LOG: log });
    const script = (d: string, environment = 'default') =>
      pixiEnvScript({
        host: 'gpu1',
        manifestPath: join(d, 'pixi.toml'),
        lock: { path: join(d, 'pixi.lock'), sha256: sha256(readFileSync(join(d, 'pixi.lock'))) },
        environment,
        stateFile: join(d, '.ugro', `pixi-${environment}.lock.sha256`),
      });

    it('installs with --locked --manifest-path once, then says unchanged without calling pixi', () => {
      const d = project();
      const log = join(d, 'pixi.log');
      const a = run(script(d), env(log));
      expect(a.stderr).toContain('The default environment has been installed.');
      expect(a.code).toBe(0);
      expect(stepOutcome(a.stdout)).toBe('changed');
      expect(parseFacts(a.stdout)).toMatchObject({
        python: `${d}/.pixi/envs/default/bin/python`,
        env_path: `${d}/.pixi/envs/default`,
      });
      const calls = readFileSync(log, 'utf8').trim().split('\n');
      expect(calls).toHaveLength(1);
      expect(calls[0].split('\t')[2]).toBe(`pixi install --manifest-path ${d}/pixi.toml --locked`);
      const b = run(script(d), env(log));
      expect(b.code).toBe(0);
      expect(b.stdout.trim().split('\n').pop()).toMatch(
        /^ugro: gpu1: env: unchanged: pixi environment default matches pixi\.lock \(sha256 [0-9a-f]{12}\)$/,
      );
      expect(readFileSync(log, 'utf8').trim().split('\n')).toHaveLength(1);
      // a new lock re-installs
      writeFileSync(join(d, 'pixi.lock'), 'version: 6\nenvironments: {default: {}}\npackages: []\n');
      const c = run(script(d), env(log));
      expect(stepOutcome(c.stdout)).toBe('changed');
      expect(readFileSync(log, 'utf8').trim().split('\n')).toHaveLength(2);
      // an environment removed on the host is installed again, though the lock did not change
      rmSync(join(d, '.pixi'), { recursive: true });
      expect(stepOutcome(run(script(d), env(log)).stdout)).toBe('changed');
      expect(readFileSync(log, 'utf8').trim().split('\n')).toHaveLength(3);
    });

    it('passes a named environment with --environment', () => {
      const d = project();
      writeFileSync(
        join(d, 'pixi.toml'),
        `${readFileSync(join(d, 'pixi.toml'), 'utf8')}\n[environments]\ncuda = ["cuda"]\n`,
      );
      const log = join(d, 'pixi.log');
      const r = run(script(d, 'cuda'), env(log));
      expect(r.code).toBe(0);
      expect(readFileSync(log, 'utf8').split('\t')[2].trim()).toBe(
        `pixi install --manifest-path ${d}/pixi.toml --locked --environment cuda`,
      );
      expect(existsSync(join(d, '.pixi/envs/cuda/bin/python'))).toBe(true);
    });

    it('a lock on the host that differs from the local one fails before pixi runs', () => {
      const d = project();
      const s = pixiEnvScript({
        host: 'gpu1',
        manifestPath: join(d, 'pixi.toml'),
        lock: { path: join(d, 'pixi.lock'), sha256: 'f'.repeat(64) },
        environment: 'default',
        stateFile: join(d, '.ugro/x'),
      });
      const log = join(d, 'pixi.log');
      const r = run(s, env(log));
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toMatch(
        new RegExp(
          `^gpu1: ${d}/pixi\\.lock has sha256 [0-9a-f]{64}, expected f{64}: ` +
            'it was edited on the host or the copy failed; run pulumi up again$',
        ),
      );
      expect(existsSync(log)).toBe(false);
    });

    it('no pixi on the host: says how to install it', () => {
      const d = project();
      const r = run(script(d), { PATH: '/usr/bin:/bin', HOME: d });
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe(
        'gpu1: pixi not found (not on PATH, not in ~/.pixi/bin): ' +
          'install it (curl -fsSL https://pixi.sh/install.sh | bash), or set ugro:environmentManager to venv or system',
      );
    });

    it('finds pixi in ~/.pixi/bin when it is not on PATH (non-login SSH sessions)', () => {
      const d = project();
      mkdirSync(join(d, 'home/.pixi/bin'), { recursive: true });
      copyFileSync(join(STAND_INS, 'pixi'), join(d, 'home/.pixi/bin/pixi'));
      chmodSync(join(d, 'home/.pixi/bin/pixi'), 0o755);
      const r = run(script(d), { PATH: '/usr/bin:/bin', HOME: join(d, 'home'), PIXI_STANDIN_LOG: join(d, 'pixi.log') });
      expect(r.code).toBe(0);
      expect(stepOutcome(r.stdout)).toBe('changed');
    });
  });

  it('venv: creates it, installs requirements once, then says unchanged', () => {
    const d = tmp('venv');
    const req = join(d, 'requirements.txt');
    // torch is satisfied from the system site-packages: pip needs no network for it.
    writeFileSync(req, 'torch\n');
    const s = venvEnvScript({
      host: 'gpu1',
      basePython: '/usr/bin/python3',
      venvDir: join(d, '.venv'),
      requirements: { path: req, sha256: sha256(readFileSync(req)) },
      systemSitePackages: true,
    });
    const a = run(s);
    expect(a.stderr).toMatch(/Requirement already satisfied: torch/);
    expect(a.code).toBe(0);
    expect(a.stdout.trim().split('\n').pop()).toBe(
      `ugro: gpu1: env: changed: created venv ${d}/.venv, installed ${req}`,
    );
    const b = run(s);
    expect(b.stdout.trim().split('\n').pop()).toBe(`ugro: gpu1: env: unchanged: venv ${d}/.venv is up to date`);
    expect(parseFacts(b.stdout).python).toBe(`${d}/.venv/bin/python`);
  }, 60_000);
});

describe('torch check (Debian python3-torch, a CPU build)', () => {
  const s = (requireCuda: boolean, python = '/usr/bin/python3') =>
    torchCheckScript({ host: 'gpu1', python, cudaMajor: '12', requireCuda, expectGpu: true });

  it('requireCuda false: a CPU build passes and CUDA is reported', () => {
    const r = run(s(false));
    expect(r.code).toBe(0);
    expect(parseFacts(r.stdout)).toMatchObject({ torch_cuda: 'none', cuda_available: 'false' });
    expect(r.stdout).toMatch(
      new RegExp(
        '^ugro: gpu1: torch: unchanged: torch \\S+ imports, CUDA build none, cuda available: False ' +
          '\\(CUDA not required: ugro:requireCuda false\\)$',
        'm',
      ),
    );
  });

  it('requireCuda true: a CPU build fails with the fix', () => {
    const r = run(s(true));
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(
      new RegExp(
        '^gpu1: torch \\S+ is a CPU-only build, CUDA 12 required: ' +
          'install a CUDA 12 build of torch \\(pixi\\.toml or requirements\\), or set ugro:requireCuda false$',
      ),
    );
  });

  it('no torch in the environment: names the interpreter and the fix', () => {
    const d = tmp('nopy');
    writeFileSync(join(d, 'python'), '#!/bin/sh\nexec /usr/bin/python3 -S "$@"\n');
    chmodSync(join(d, 'python'), 0o755);
    const r = run(s(false, join(d, 'python')));
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(
      new RegExp(
        "^gpu1: cannot import torch with /usr/bin/python3: ModuleNotFoundError: No module named 'torch': " +
          'add torch to the environment',
      ),
    );
  });
});

describe('tree deployment', () => {
  const setup = (layout: 'provider' | 'flat') => {
    const d = tmp('tree');
    const src = join(d, 'scripts');
    mkdirSync(join(src, 'sub'), { recursive: true });
    writeFileSync(join(src, 'train.py'), 'print("hi")\n');
    writeFileSync(join(src, 'run.sh'), '#!/bin/sh\necho run\n');
    chmodSync(join(src, 'run.sh'), 0o755);
    writeFileSync(join(src, "sub/it's data.txt"), 'x'.repeat(1000));
    const dest = join(d, 'host/scripts');
    const stageRoot = join(d, 'host/.ugro/stage');
    const stageFor = (hash: string) => join(stageRoot, `scripts-${hash.slice(0, 16)}`);
    /** What CopyToRemote does: directory source lands at STAGE/<basename>; a plain upload at STAGE. */
    const copy = (stage: string) => {
      const to = layout === 'provider' ? join(stage, 'scripts') : stage;
      mkdirSync(to, { recursive: true });
      spawnSync('cp', ['-a', `${src}/.`, to]);
    };
    /** The install step alone (the copy step did not run again). */
    const install = () => {
      const t = readTree(src);
      return run(
        deployTreeScript({
          host: 'gpu1',
          label: 'scripts',
          dest,
          stage: stageFor(t.hash),
          sourceBase: 'scripts',
          stageRoot,
          files: t.files,
        }),
      );
    };
    const deploy = () => {
      copy(stageFor(readTree(src).hash));
      return install();
    };
    return { d, src, dest, stageRoot, deploy, install };
  };

  for (const layout of ['provider', 'flat'] as const) {
    it(`deploys byte-exact with modes, then unchanged (${layout} copy layout)`, () => {
      const t = setup(layout);
      const a = t.deploy();
      expect(a.stderr).toBe('');
      expect(a.stdout.trim().split('\n').pop()).toBe(
        `ugro: gpu1: scripts: changed: 3 updated, 0 removed, 0 unchanged in ${t.dest}`,
      );
      for (const f of ['train.py', 'run.sh', "sub/it's data.txt"])
        expect(readFileSync(join(t.dest, f))).toEqual(readFileSync(join(t.src, f)));
      expect((statSync(join(t.dest, 'run.sh')).mode & 0o777).toString(8)).toBe('755');
      expect((statSync(join(t.dest, 'train.py')).mode & 0o777).toString(8)).toBe('644');
      const b = t.deploy();
      expect(b.stdout.trim()).toBe(`ugro: gpu1: scripts: unchanged: 3 files in ${t.dest} match`);
    });
  }

  it('updates only what changed, removes what left the tree, leaves other files alone, prunes old stages', () => {
    const t = setup('provider');
    t.deploy();
    writeFileSync(join(t.dest, 'notes.txt'), 'mine');
    writeFileSync(join(t.src, 'train.py'), 'print("v2")\n');
    rmSync(join(t.src, 'run.sh'));
    const r = t.deploy();
    expect(r.stdout).toContain('ugro: gpu1: scripts: updated train.py');
    expect(r.stdout).toContain('ugro: gpu1: scripts: removed run.sh (no longer in the tree)');
    expect(r.stdout.trim().split('\n').pop()).toBe(
      `ugro: gpu1: scripts: changed: 1 updated, 1 removed, 1 unchanged in ${t.dest}`,
    );
    expect(readFileSync(join(t.dest, 'train.py'), 'utf8')).toBe('print("v2")\n');
    expect(existsSync(join(t.dest, 'run.sh'))).toBe(false);
    expect(readFileSync(join(t.dest, 'notes.txt'), 'utf8')).toBe('mine');
    expect(spawnSync('ls', [t.stageRoot], { encoding: 'utf8' }).stdout.trim().split('\n')).toHaveLength(1);
  });

  it('a corrupt stage fails with the file and the fix; a file edited on the host is put back', () => {
    const t = setup('flat');
    const tree = readTree(t.src);
    const stage = join(t.stageRoot, 'scripts-x');
    mkdirSync(stage, { recursive: true });
    spawnSync('cp', ['-a', `${t.src}/.`, stage]);
    writeFileSync(join(stage, 'train.py'), 'tampered');
    const r = run(
      deployTreeScript({
        host: 'gpu1',
        label: 'scripts',
        dest: t.dest,
        stage,
        sourceBase: 'scripts',
        stageRoot: t.stageRoot,
        files: tree.files,
      }),
    );
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(
      new RegExp(
        '^gpu1: scripts: the staged train\\.py has sha256 [0-9a-f]{64}, expected [0-9a-f]{64}: ' +
          'the copy is stale or corrupt; run pulumi up again$',
      ),
    );
    const t2 = setup('flat');
    t2.deploy();
    writeFileSync(join(t2.dest, 'train.py'), 'edited on the host');
    const r2 = t2.deploy();
    expect(r2.stdout).toContain('ugro: gpu1: scripts: updated train.py');
    expect(readFileSync(join(t2.dest, 'train.py'), 'utf8')).toBe('print("hi")\n');
  });

  it('destroy removes exactly the deployed files, then says unchanged; the stage stays for a replacement', () => {
    const t = setup('provider');
    t.deploy();
    writeFileSync(join(t.dest, 'notes.txt'), 'mine');
    const s = removeTreeScript({ host: 'gpu1', label: 'scripts', dest: t.dest });
    const a = run(s);
    expect(a.stdout.trim()).toBe(
      `ugro: gpu1: scripts: changed: removed 3 deployed files from ${t.dest} (other files left in place)`,
    );
    expect(spawnSync('find', [t.dest], { encoding: 'utf8' }).stdout.trim().split('\n').sort()).toEqual([
      t.dest,
      join(t.dest, 'notes.txt'),
    ]);
    expect(run(s).stdout.trim()).toBe(`ugro: gpu1: scripts: unchanged: nothing deployed in ${t.dest}`);
    // A replacement runs delete, then create: the create still finds its stage and redeploys.
    const again = t.install();
    expect(again.stdout).toContain('ugro: gpu1: scripts: changed: 3 updated, 0 removed, 0 unchanged');
  });

  it('an empty tree deploys nothing and removes what was deployed before', () => {
    const t = setup('flat');
    t.deploy();
    const r = run(
      deployTreeScript({
        host: 'gpu1',
        label: 'scripts',
        dest: t.dest,
        stage: join(t.stageRoot, 'scripts-empty'),
        sourceBase: 'scripts',
        stageRoot: t.stageRoot,
        files: [],
      }),
    );
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').pop()).toBe(
      `ugro: gpu1: scripts: changed: 0 updated, 3 removed, 0 unchanged in ${t.dest}`,
    );
    expect(
      run(
        deployTreeScript({
          host: 'gpu1',
          label: 'scripts',
          dest: t.dest,
          stage: join(t.stageRoot, 'scripts-empty'),
          sourceBase: 'scripts',
          stageRoot: t.stageRoot,
          files: [],
        }),
      ).stdout.trim(),
    ).toBe(`ugro: gpu1: scripts: unchanged: 0 files in ${t.dest} match`);
  });

  it('refuses paths that could escape the destination', () => {
    const f = { sha256: 'a'.repeat(64), mode: '644' as const, size: 1 };
    for (const p of ['../x', '/etc/passwd', 'a/../../b', 'a//b', './a', 'a\nb']) {
      const deploy = () =>
        deployTreeScript({
          host: 'g',
          label: 'scripts',
          dest: '/d',
          stage: '/s',
          sourceBase: 'scripts',
          stageRoot: '/r',
          files: [{ ...f, path: p }],
        });
      expect(deploy).toThrow(/bad relative path/);
      expect(deploy).toThrow(UgroError); // a local file's name (a line break is legal in one): rename it
    }
  });
});

describe('report parsing', () => {
  it('parseFacts and stepOutcome read what the scripts print', () => {
    const out =
      'ugro-fact driver=570.1\nugro-fact gpu.0.name=NVIDIA GeForce RTX 4070\n' +
      'ugro: gpu1: dirs: created /x\nugro: gpu1: dirs: changed: 1 created\n';
    expect(parseFacts(out)).toEqual({ driver: '570.1', 'gpu.0.name': 'NVIDIA GeForce RTX 4070' });
    expect(stepOutcome(out)).toBe('changed');
    expect(stepOutcome('ugro: gpu1: env: unchanged: x')).toBe('unchanged');
    expect(stepOutcome('nothing')).toBeUndefined();
  });
});
