/**
 * Pure builders of the shell scripts the Pulumi program runs on each host (docs/conventions.md, "Pulumi components").
 *
 * Every builder takes typed inputs and returns a POSIX sh script in which every interpolated
 * value went through shQuote. Every script:
 *  - is idempotent: a second run changes nothing and ends with `ugro: HOST: STEP: unchanged…`;
 *    a run that changed something ends with `ugro: HOST: STEP: changed: …`;
 *  - fails with one line on stderr that names the host, what is wrong and the fix
 *    (`gpu2: NVIDIA driver 470.82.01 < required 550: upgrade the driver`), and exit status 1;
 *  - reports what it found as `ugro-fact KEY=VALUE` lines on stdout (parsed by parseFacts
 *    into the stack outputs).
 * No I/O here: the component (gpu-host.ts) computes hashes and paths and passes them in.
 *
 * A `\` at the very end of a line inside these template literals is a JavaScript line
 * continuation: it keeps the source within 120 columns and is not part of the script (the
 * host gets one line; the text after it starts at column 0 so that no spaces are added).
 */

import { assert, UgroError } from '../config/errors.ts';
import { shQuote as q } from '../config/quote.ts';
import { CHECK_SHA, prelude } from './script-prelude.ts';

/**
 * The command string given to remote.Command. The SSH server runs it with the login shell of
 * the user, which may be bash, zsh or dash; `sh -c` makes every script run under POSIX sh.
 */
export function asRemoteCommand(script: string, name: string): string {
  return `sh -c ${q(script)} ${q(name)}`;
}

export interface ReachabilityInput {
  host: string;
  user: string;
}

/** Runs once the provider's dial loop got a session: proves we are who the cluster file says. */
export function reachabilityScript(i: ReachabilityInput): string {
  return `${prelude(i.host, 'reachable')}
want=${q(i.user)}
me=$(id -un)
[ "$me" = "$want" ] || \
fail "logged in as $me, the cluster file says $want: fix user (or ssh_port/ip) in the cluster file"
[ -n "\${HOME:-}" ] && [ -d "$HOME" ] || \
fail "home directory \${HOME:-(unset)} of $me does not exist: create it (sudo mkhomedir_helper $me)"
fact os "$(uname -s)"
fact arch "$(uname -m)"
fact hostname "$(uname -n)"
say "unchanged: reachable over SSH as $me on $(uname -n) ($(uname -sm))"
`;
}

export interface DriverCheckInput {
  host: string;
  /** Lowest accepted driver, e.g. "550" or "525.60.13"; compared numerically field by field. */
  minDriver: string;
  /** GPU models the cluster file expects on this host; empty: no GPU expected, check skipped. */
  expectModels: string[];
}

/** NVIDIA driver present, new enough, and every expected GPU visible. */
export function driverCheckScript(i: DriverCheckInput): string {
  // Both sources are checked by a schema (ugro:minDriverVersion, environment.min_driver_version).
  assert(
    /^\d+(\.\d+)*$/.test(i.minDriver),
    () => `driverCheckScript: minDriver ${JSON.stringify(i.minDriver)} is not a version`,
  );
  if (!i.expectModels.length) {
    return `${prelude(i.host, 'driver')}
fact gpu_count 0
say "unchanged: no GPU expected in the cluster file, driver check skipped"
`;
  }
  const models = i.expectModels.join(', ');
  return `${prelude(i.host, 'driver')}
min=${q(i.minDriver)}
expect=${i.expectModels.length}
models=${q(models)}
# true when version $1 < $2, numerically per dot-separated field (550.54.14 >= 550)
ver_lt() {
  awk -v a="$1" -v b="$2" 'BEGIN { na = split(a, x, "."); nb = split(b, y, "."); n = na > nb ? na : nb
    for (i = 1; i <= n; i++) { p = (i <= na) ? x[i] + 0 : 0; r = (i <= nb) ? y[i] + 0 : 0
      if (p < r) exit 0; if (p > r) exit 1 }
    exit 1 }'
}
trim() { printf '%s' "$1" | sed 's/^[[:space:]]*//;s/[[:space:]]*$//'; }
command -v nvidia-smi >/dev/null 2>&1 || \
fail "nvidia-smi not found: no NVIDIA driver installed (install the NVIDIA driver >= $min)"
if ! out=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>&1); then
  fail "nvidia-smi failed: $(printf '%s\\n' "$out" | head -n 1): the driver is installed but not working (reboot, or \
reinstall the NVIDIA driver >= $min for the running kernel)"
fi
drv=$(trim "$(printf '%s\\n' "$out" | head -n 1)")
case $drv in
  '' | *[!0-9.]*) \
fail "nvidia-smi reports driver version '$drv', not a version number: check the driver installation" ;;
esac
if ver_lt "$drv" "$min"; then fail "NVIDIA driver $drv < required $min: upgrade the driver"; fi
gpus=$(nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits 2>&1) || \
fail "nvidia-smi cannot list the GPUs: $(printf '%s\\n' "$gpus" | head -n 1)"
n=$(printf '%s\\n' "$gpus" | grep -c . || true)
[ "$n" -ge "$expect" ] || \
fail "nvidia-smi lists $n GPU(s), the cluster file expects $expect ($models): check that every GPU \
is seated and powered, or fix gpus/hardware in the cluster file"
fact driver "$drv"
fact gpu_count "$n"
printf '%s\\n' "$gpus" | while IFS=, read -r idx name mem; do
  idx=$(trim "$idx")
  fact "gpu.$idx.name" "$(trim "$name")"
  fact "gpu.$idx.memory_mib" "$(trim "$mem")"
done
# A different model is worth a warning, not a failure (names vary: "GeForce RTX 4070" vs "RTX 4070").
old_ifs=$IFS; IFS=,
for m in $models; do
  m=$(trim "$m")
  printf '%s\\n' "$gpus" | grep -qiF -- "$m" || printf 'ugro: %s: driver: warning: the cluster file expects a %s, \
nvidia-smi lists: %s\\n' "$host" "$m" "$(printf '%s' "$gpus" | tr '\\n' ';')" >&2
done
IFS=$old_ifs
say "unchanged: NVIDIA driver $drv >= $min, $n GPU(s)"
`;
}

export interface DirectorySpec {
  path: string;
  /** Octal mode for a directory this script creates, e.g. "755". */
  mode: string;
  /** What it is for, in messages ("checkpoints"). */
  what: string;
}

export interface DirectoriesInput {
  host: string;
  dirs: DirectorySpec[];
}

/**
 * Creates missing directories with their mode. Existing ones are kept as the user made them,
 * except that write permission for others is removed. Never deletes anything.
 */
export function directoriesScript(i: DirectoriesInput): string {
  for (const d of i.dirs) {
    // The cluster file's paths may be relative (its schema does not refuse them): input, not a bug.
    if (!d.path.startsWith('/'))
      throw new UgroError(
        `${i.host}: the ${d.what} path ${JSON.stringify(d.path)} is not absolute: ` +
          'give the paths of this host in the cluster file as /… or ~/…',
      );
    assert(/^[0-7]{3,4}$/.test(d.mode), () => `directoriesScript: mode ${JSON.stringify(d.mode)} is not octal`);
  }
  const calls = i.dirs.map((d) => `ensure_dir ${q(d.path)} ${q(d.mode)} ${q(d.what)}`).join('\n');
  return `${prelude(i.host, 'dirs')}
me=$(id -un)
created=0 fixed=0 kept=0
ensure_dir() {
  d=$1 mode=$2 what=$3
  if [ -d "$d" ]; then
    if [ -n "$(find "$d" -maxdepth 0 -perm -0002 2>/dev/null)" ]; then
      chmod o-w "$d" || fail "$d ($what) is writable by everyone and chmod o-w failed: sudo chmod o-w $d"
      fixed=$((fixed + 1)); say "removed write permission for others on $d ($what)"
    else
      kept=$((kept + 1))
    fi
  elif [ -e "$d" ] || [ -L "$d" ]; then
    fail "$d ($what) exists and is not a directory: move it away, or set paths in the cluster file"
  else
    mkdir -p "$d" 2>/dev/null || \
fail "cannot create $d ($what) as $me: sudo install -d -o $me $d, or set paths in the cluster file"
    chmod "$mode" "$d"
    created=$((created + 1)); say "created $d ($what, mode $mode)"
  fi
  [ -w "$d" ] || fail "$d ($what) is not writable by $me: sudo chown $me $d"
}
${calls}
if [ $((created + fixed)) -eq 0 ]; then say "unchanged: $kept directories in place"; \
else say "changed: $created created, $fixed permissions fixed, $kept unchanged"; fi
`;
}

export interface SystemEnvInput {
  host: string;
  /** Interpreter name or path, e.g. "/usr/bin/python3" or "python3". */
  python: string;
}

/** manager=system: nothing to install; the interpreter must exist. */
export function systemEnvScript(i: SystemEnvInput): string {
  return `${prelude(i.host, 'env')}
py=${q(i.python)}
p=$(command -v "$py" 2>/dev/null) || \
fail "python interpreter $py not found: install python3, or set environment.python in the cluster file (or ugro:python)"
ver=$("$p" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>&1) || \
fail "$p does not run: $ver: reinstall python3"
fact python "$p"
fact env_path "$("$p" -c 'import sys; print(sys.prefix)')"
say "unchanged: system python $p (Python $ver), nothing to install with manager system"
`;
}

export interface VenvEnvInput {
  host: string;
  /** Interpreter that creates the venv. */
  basePython: string;
  venvDir: string;
  /** Requirements file already copied to the host, with its sha256; none: a bare venv. */
  requirements?: { path: string; sha256: string };
  systemSitePackages: boolean;
}

/** manager=venv: a venv in the project, requirements installed when their hash changes. */
export function venvEnvScript(i: VenvEnvInput): string {
  const ssp = i.systemSitePackages;
  const req = i.requirements;
  return `${prelude(i.host, 'env')}
${CHECK_SHA}
base=${q(i.basePython)}
venv=${q(i.venvDir)}
state="$venv/.ugro-requirements.sha256"
changed=''
command -v "$base" >/dev/null 2>&1 || \
fail "python $base not found: install python3 and python3-venv, or set ugro:python"
# A venv created with the other include-system-site-packages setting is recreated.
if [ -x "$venv/bin/python" ] && grep -qx 'include-system-site-packages = ${ssp}' "$venv/pyvenv.cfg" 2>/dev/null; then
  :
else
  clear=''; [ -e "$venv" ] && clear=--clear
  "$base" -m venv $clear${ssp ? ' --system-site-packages' : ''} "$venv" >&2 || \
fail "cannot create a venv at $venv with $base: install the venv module (Debian/Ubuntu: sudo apt install python3-venv)"
  rm -f "$state"
  changed="created venv $venv"
fi
${
  req
    ? `req=${q(req.path)}
want=${q(req.sha256)}
check_sha "$req" "$want"
if [ "$(cat "$state" 2>/dev/null || true)" != "$want" ]; then
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -r "$req" >&2 || \
fail "pip install -r $req failed (see the output above): fix the requirements file (ugro:venvRequirements) \
and run pulumi up again"
  printf '%s\\n' "$want" > "$state"
  changed="\${changed:+$changed, }installed $req"
fi`
    : ''
}
fact python "$venv/bin/python"
fact env_path "$venv"
if [ -z "$changed" ]; then say "unchanged: venv $venv is up to date"; else say "changed: $changed"; fi
`;
}

export interface PixiEnvInput {
  host: string;
  /** pixi.toml on the host (copied there by the program). */
  manifestPath: string;
  /** pixi.lock on the host and its sha256: the environment is synced when it changes. */
  lock: { path: string; sha256: string };
  environment: string;
  /** Where the hash of the lock last installed is kept (UGRO's state directory on the host). */
  stateFile: string;
}

/** Where pixi puts an environment: next to the manifest. */
export function pixiEnvDir(manifestPath: string, environment: string): string {
  return `${manifestPath.replace(/\/[^/]*$/, '')}/.pixi/envs/${environment}`;
}

/** manager=pixi: `pixi install --locked` when pixi.lock changed (or the environment is gone). */
export function pixiEnvScript(i: PixiEnvInput): string {
  // ugro:pixiEnvironment's schema allows only these.
  assert(
    /^[a-z0-9-]+$/.test(i.environment),
    () => `pixiEnvScript: bad environment name ${JSON.stringify(i.environment)}`,
  );
  const envDir = pixiEnvDir(i.manifestPath, i.environment);
  const envArgs = i.environment === 'default' ? '' : ` --environment ${q(i.environment)}`;
  return `${prelude(i.host, 'env')}
${CHECK_SHA}
manifest=${q(i.manifestPath)}
lock=${q(i.lock.path)}
want=${q(i.lock.sha256)}
envdir=${q(envDir)}
state=${q(i.stateFile)}
pixi=$(command -v pixi 2>/dev/null || true)
[ -n "$pixi" ] || [ ! -x "$HOME/.pixi/bin/pixi" ] || pixi=$HOME/.pixi/bin/pixi
[ -n "$pixi" ] || \
fail "pixi not found (not on PATH, not in ~/.pixi/bin): install it (curl -fsSL https://pixi.sh/install.sh | bash), \
or set ugro:environmentManager to venv or system"
[ -f "$manifest" ] || fail "$manifest is missing: the copy step did not run; run pulumi up again"
check_sha "$lock" "$want"
fact python "$envdir/bin/python"
fact env_path "$envdir"
if [ -x "$envdir/bin/python" ] && [ "$(cat "$state" 2>/dev/null || true)" = "$want" ]; then
  say "unchanged: pixi environment ${i.environment} matches pixi.lock (sha256 $(printf '%s' "$want" | cut -c1-12))"
  exit 0
fi
"$pixi" install --manifest-path "$manifest" --locked${envArgs} >&2 || \
fail "pixi install --locked failed (see the output above): if pixi.lock is out of date, run pixi install where you \
edit pixi.toml, keep the new pixi.lock, and run pulumi up again"
[ -x "$envdir/bin/python" ] || \
fail "pixi installed the environment but $envdir/bin/python is missing: add python to the dependencies in pixi.toml"
mkdir -p "$(dirname "$state")" && printf '%s\\n' "$want" > "$state"
say "changed: pixi environment ${i.environment} installed from pixi.lock (sha256 $(printf '%s' "$want" | cut -c1-12))"
`;
}

export interface TorchCheckInput {
  host: string;
  /** The environment's interpreter. */
  python: string;
  /** Required CUDA major of the torch build, e.g. "12". */
  cudaMajor: string;
  /** false: a CPU build is accepted and CUDA is only reported (the lab). */
  requireCuda: boolean;
  /** The host should have a GPU, so torch.cuda.is_available() must be true (with requireCuda). */
  expectGpu: boolean;
}

const TORCH_CHECK_PY = `import sys
host, need, require_cuda, expect_gpu = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
def fail(msg):
    print("%s: %s" % (host, msg), file=sys.stderr)
    sys.exit(1)
try:
    import torch
except Exception as e:
    fail("cannot import torch with %s: %s: %s: add torch to the environment (pixi.toml, requirements or the system \
packages) and run pulumi up again" % (sys.executable, type(e).__name__, e))
ver = torch.__version__
cuda = torch.version.cuda
avail = bool(torch.cuda.is_available())
print("ugro-fact torch=%s" % ver)
print("ugro-fact torch_cuda=%s" % (cuda or "none"))
print("ugro-fact cuda_available=%s" % ("true" if avail else "false"))
if avail:
    print("ugro-fact cuda_device=%s" % torch.cuda.get_device_name(0))
if require_cuda:
    if not cuda:
        fail("torch %s is a CPU-only build, CUDA %s required: install a CUDA %s build of torch (pixi.toml or \
requirements), or set ugro:requireCuda false" % (ver, need, need))
    if cuda.split(".")[0] != need:
        fail("torch %s is built for CUDA %s, CUDA %s required: install a CUDA %s build of torch, or set \
ugro:cudaMajor" % (ver, cuda, need, need))
    if expect_gpu and not avail:
        fail("torch.cuda.is_available() is False (torch %s, CUDA %s): the driver is too old for this CUDA build or no \
GPU is visible: check nvidia-smi and upgrade the driver" % (ver, cuda))
print("ugro: %s: torch: unchanged: torch %s imports, CUDA build %s, cuda available: %s%s" % \
(host, ver, cuda or "none", avail, "" if require_cuda else " (CUDA not required: ugro:requireCuda false)"))
`;

/** torch imports, its CUDA build has the required major, and CUDA works on a GPU host. */
export function torchCheckScript(i: TorchCheckInput): string {
  // ugro:cudaMajor's schema, or the digits of environment.cuda_version, or 12.
  assert(/^\d+$/.test(i.cudaMajor), () => `torchCheckScript: cudaMajor ${JSON.stringify(i.cudaMajor)} is not a number`);
  return `${prelude(i.host, 'torch')}
py=${q(i.python)}
command -v "$py" >/dev/null 2>&1 || \
fail "python $py not found: the environment step did not create it; run pulumi up again"
fact python "$py"
exec "$py" -c ${q(TORCH_CHECK_PY)} ${q(i.host)} ${q(i.cudaMajor)} ${i.requireCuda ? 1 : 0} ${i.expectGpu ? 1 : 0}
`;
}

/** `ugro-fact KEY=VALUE` lines of a step's stdout; later lines win. */
export function parseFacts(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^ugro-fact ([A-Za-z0-9_.-]+)=(.*)$/.exec(line.replace(/\r$/, ''));
    if (m) out[m[1]] = m[2];
  }
  return out;
}

/** The summary line of a step's stdout: `unchanged`, `changed`, or undefined if there is none. */
export function stepOutcome(stdout: string): 'unchanged' | 'changed' | undefined {
  let r: 'unchanged' | 'changed' | undefined;
  for (const line of stdout.split('\n')) {
    const m = /^ugro: [^:]+: [^:]+: (unchanged|changed)\b/.exec(line);
    if (m) r = m[1] as 'unchanged' | 'changed';
  }
  return r;
}
