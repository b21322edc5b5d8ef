"""UGRO reference training script: a small DDP model on synthetic data.

Runs under torchrun (UGRO starts it), on Debian's torch 1.13 / Python 3.11 and on torch 2.x. Picks
NCCL on CUDA GPUs, gloo on CPU. Only built-in models are trained here; a hub model name fails
clearly (no download is faked). The optimizer is SGD with momentum 0.9, so it has state to restore.

Environment (UGRO sets these; every one is optional here):
  UGRO_CHECKPOINT_DIR   where checkpoints live on this host; without it nothing is saved.
  UGRO_RESUME_FROM      a checkpoint name like step-400: resume from $UGRO_CHECKPOINT_DIR/step-400.pt.
                        Only rank 0 reads the file (torch.load(weights_only=True)); it broadcasts the
                        state, so every rank resumes at the same step whether or not its host has the
                        file. When rank 0 cannot load it (no such file, no UGRO_CHECKPOINT_DIR, a bad
                        name or file), every rank exits 2, rank 0 with a message naming the file: a
                        resume never silently starts from scratch. Each rank prints
                        "rank R: resumed from NAME (step S, epoch E)".
  UGRO_RESTART_COUNT    how many times the controller restarted this job; printed at start.
  UGRO_HEARTBEAT_FILE   touched (its mtime set) right after init_process_group and after every step.
                        A literal `%r` in it is replaced by the global rank (one file per rank, e.g.
                        /run/hb-%r); without `%r` the ranks of a host share one file.
  UGRO_METRICS_FILE     rank 0 appends JSON lines: one every --metrics-every steps and one at the end
                        of each epoch ("epoch_end": true), each with epoch, step (global steps done),
                        total_steps, loss (mean over the ranks and the steps since the previous
                        line, or over the epoch), samples_per_s (all ranks, step time only), world and
                        time. An epoch's last step gets only the epoch line.
  UGRO_GLOBAL_BATCH     B, the global batch of one optimizer step (spec.batch.global). Unset: every rank
                        trains on --batch-size samples of its own per step, as before (nothing below
                        applies). Set: the ranks split B, and one step gives the gradient that one
                        process would get on all B samples, whatever the split:
  UGRO_RANK_BATCH       b_r, this rank's share of B, and
  UGRO_RANK_OFFSET      the index of its first sample in the global batch (rank.sh exports both from
                        UGRO_RANK_BATCHES / UGRO_RANK_OFFSETS by LOCAL_RANK). The shares are contiguous
                        and tile [0, B): checked over all ranks before training, else every rank exits 2.
                        Both unset: an even contiguous split by rank; one without the other: exit 2.
  UGRO_MICRO_BATCH      m_r, the most samples this rank runs forward at once, and
  UGRO_GRAD_ACCUM       k_r, its micro batches per step; m_r * k_r >= b_r, micro batch j is samples
                        [j*m_r, min((j+1)*m_r, b_r)) of the share (the last may be smaller; an empty
                        one is skipped). Unset: m_r = b_r, k_r = 1; only one set: the other is
                        ceil(b_r / it). All but the last micro batch run under DDP's no_sync(), so
                        every rank does exactly ONE gradient all-reduce per step, whatever its k_r.
                        Sample i of step s (i = global index, 0..B-1) is drawn from its own seed of
                        (--data-seed, s, i): any split and any micro batching see the same samples.
                        Loss weighting: the per-sample loss is the squared error, summed; rank r's
                        loss is L_r = (W / B) * sum over its samples (W = world size). DDP AVERAGES
                        the ranks' gradients, so the result is (1/B) * the sum over all B samples:
                        exactly the gradient of the mean loss over the global batch in one process.
                        The logged loss (sum of L_r over ranks / W) is that mean.
                        Speed (spec.batch.balance: speed): with UGRO_GLOBAL_BATCH each rank times its
                        own work per step, from the step's start to the moment its last gradient bucket
                        is ready for the all-reduce (a DDP comm hook that then runs the default
                        all-reduce), and the ranks share those times in the step's one collective
                        below (no extra collective). Rank 0's metrics lines then also carry
                        rank_ms ("12.3,9.8,10.1": each global rank's mean busy milliseconds a step
                        since the previous line, the run's first step left out: warm-up), rank_n (each
                        rank's share, the same order) and step_ms (the mean wall time of those steps).
                        The slowest rank's rank_ms minus another's is the time that one waits at the
                        all-reduce. The controller splits the next attempt by rank_n / rank_ms.
  UGRO_COLLECTIVE_TIMEOUT_SECONDS  passed to init_process_group as timeout=: a collective waiting on
                        a dead or stuck peer fails after it (the rank exits 1) instead of hanging. It
                        must exceed the longest time one rank can lag the others, e.g. rank 0 saving
                        or loading a checkpoint. With NCCL on torch < 2.2 it also sets
                        NCCL_ASYNC_ERROR_HANDLING=1 (unless set), without which a timed-out NCCL
                        collective is only logged, not aborted (2.2+ aborts by default).

Checkpoints, written by rank 0 only, in UGRO_CHECKPOINT_DIR:
  step-N.pt  after N global steps (N counts from the first run: a resumed run goes on counting).
             Written to .step-N.pt.tmp, flushed, fsynced, then renamed into place (and the directory
             fsynced): a step-N.pt is complete, or it is absent.
  latest     the name of the newest complete checkpoint and a newline ("step-N\\n"), replaced the same
             way (tmp, fsync, rename) after step-N.pt is in place.
  Saved at the end of every epoch, every --checkpoint-every steps (0: only per epoch) and on SIGTERM.
  Old checkpoints are kept. A step-N.pt holds only tensors, dicts, lists, ints and strings, because
  torch 1.13's weights_only unpickler refuses even floats:
    {"format": 1, "model": model.state_dict(), "optimizer": {"state": optimizer.state_dict()["state"]},
     "step": N, "epoch": the epoch of step N (0-based), "steps_per_epoch": int, "world": world size,
     "sums": float64 tensor [epoch loss, epoch steps, epoch seconds, window loss, window steps,
             window seconds] (the epoch's and metrics window's sums so far, so a resumed run
             reports the loss an uninterrupted one would; absent in older files)}
  The optimizer's hyperparameters (lr, momentum) come from the flags on resume, its state (momentum
  buffers) from the file. Training resumes at step N+1, mid-epoch if N is. Each batch is drawn from
  a seed of (rank, step) (with UGRO_GLOBAL_BATCH: each sample from (--data-seed, step, index)), so a
  resumed run sees the batches an uninterrupted one would.

SIGTERM (preemption, cancel; the controller signals the whole process group): before training has
started the rank exits 143 at once (nothing to save). During training the handler only sets a flag;
after every step the ranks all_reduce it (with the step's loss, by SUM: stop when the sum is > 0,
which is MAX for a 0/1 flag), so all of them stop after the SAME step S even if only one got the
signal. Rank 0 saves step-S and `latest`, all ranks meet at a barrier (nobody exits before the
checkpoint is complete), print "rank R: stopping on SIGTERM after step S" and exit 143. torchrun's
agent gives its workers 30 s after it forwards the signal before it SIGKILLs them.

--max-steps N ends training after global step N (counted like the checkpoints), even mid-epoch;
the last step is then checkpointed (when UGRO_CHECKPOINT_DIR is set) and gets a metrics line.

Out of memory is not caught: CUDA's error ends the rank with its traceback, whose last line
("torch.cuda.OutOfMemoryError: CUDA out of memory ...") rank.sh finds in the log, as it would for
any script; exit codes stay the job's to give a meaning (restartPolicy.exitCodes). --model
wide-mlp (4 -> 1,048,576 -> 1) holds about 11 MiB of activations a sample in the micro batch
against 24 MiB of weights: the lab's out-of-memory test (a micro batch of 28 runs out of a memory
limit that 14 fits in, README "Out of memory").

Exit codes: 0 done; 2 a bad setting (unknown model, --steps-per-epoch < 1, --max-steps < 0, a timeout
that is not a positive number, a bad or inconsistent UGRO_GLOBAL_BATCH split) or an unusable resume
checkpoint; 143 stopped on SIGTERM; 1 any other error (a
traceback; e.g. a collective timed out); --exit-code for --fail-rank.

Test-only flags: --fail-rank/--exit-code (a rank exits right after init), --hang-rank (a rank stops
taking part in collectives: sleeps until SIGTERM), --echo-args, --sleep (seconds per step), and
--ckpt-dir-per-rank (rank R > 0 uses $UGRO_CHECKPOINT_DIR/rank-R, to show that only rank 0 reads it),
--dump-grads FILE (rank 0 writes, after the backward of the first step this run takes and before
the optimizer uses them, the all-reduced gradients as JSON: {"step", "world", "global_batch",
"grads": {parameter name: [the gradient, flattened]}}; the exact-gradient test compares splits).
"""
import argparse
import contextlib
import datetime
import json
import os
import re
import signal
import socket
import sys
import time

# SIGTERM is handled before torch is imported (2-3 s): until training starts the rank just exits;
# from then on (_SIG["armed"]) the handler only asks for a stop after the current step.
_SIG = {"armed": False, "stop": False}


def _on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    if not _SIG["armed"]:
        sys.stdout.write(f"rank {os.environ.get('RANK', '0')}: SIGTERM before training started, exiting\n")
        sys.stdout.flush()
        os._exit(143)
    _SIG["stop"] = True


signal.signal(signal.SIGTERM, _on_sigterm)

import torch  # noqa: E402 - after the SIGTERM handler, see above
import torch.distributed as dist  # noqa: E402
import torch.nn as nn  # noqa: E402

# (inputs, hidden units). wide-mlp is for memory tests: few weights, a wide hidden layer, so its
# memory grows with the micro batch (activations) far more than with the model (see README, OOM).
BUILTIN = {"tiny-mlp": (32, 64), "small-mlp": (128, 512), "wide-mlp": (4, 1 << 20), "compute-mlp": (64, 8192)}
CKPT_FORMAT = 1
NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")

# Objects holding the process group are kept alive until os._exit ends the process. Freeing
# DDP's Reducer drops the last reference to gloo's process group, whose destructor joins gloo's
# worker threads while holding the GIL; a worker freeing its last tensor waits for that GIL, and
# the rank hangs after "done" forever (torch 1.13, seen with gdb; 2 of 3 runs on a loaded box).
_KEEP_ALIVE: list = []


_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """splitmix64's finalizer: a well-spread 64-bit value of x."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_seed(seed: int, step: int, index: int) -> int:
    """The seed of global sample `index` of global step `step` (63 bits: any torch accepts it)."""
    return _mix64(_mix64(_mix64(seed & _MASK64) ^ (step & _MASK64)) ^ (index & _MASK64)) >> 1


def batch_plan(env, rank: int, world: int):
    """UGRO_GLOBAL_BATCH and this rank's UGRO_RANK_* as (plan, None), or (None, why). plan: dict with
    global, batch, offset, micro, accum and chunks, the (lo, hi) sample ranges within the share that
    are run as micro batches (never empty unless the share is)."""
    def num(name, lo):
        v = env.get(name, "").strip()
        if not v:
            return None
        if not re.fullmatch(r"\d+", v) or int(v) < lo:
            raise ValueError(f"{name}={env.get(name)!r} is not an integer >= {lo}")
        return int(v)

    try:
        gb = num("UGRO_GLOBAL_BATCH", 1)
        b, off = num("UGRO_RANK_BATCH", 0), num("UGRO_RANK_OFFSET", 0)
        m, k = num("UGRO_MICRO_BATCH", 1), num("UGRO_GRAD_ACCUM", 1)
    except ValueError as e:
        return None, str(e)
    if (b is None) != (off is None):
        return None, "UGRO_RANK_BATCH and UGRO_RANK_OFFSET must be set together"
    if b is None:  # an even contiguous split by rank
        q, r = divmod(gb, world)
        b, off = q + (1 if rank < r else 0), rank * q + min(rank, r)
    if off + b > gb:
        return None, f"UGRO_RANK_OFFSET {off} + UGRO_RANK_BATCH {b} exceeds UGRO_GLOBAL_BATCH {gb}"
    if m is None and k is None:
        m, k = max(b, 1), 1
    elif m is None:
        m = max(-(-b // k), 1)
    elif k is None:
        k = max(-(-b // m), 1)
    if m * k < b:
        return None, f"UGRO_MICRO_BATCH {m} x UGRO_GRAD_ACCUM {k} < UGRO_RANK_BATCH {b}"
    chunks = [(j * m, min((j + 1) * m, b)) for j in range(k) if j * m < b] or [(0, 0)]
    return {"global": gb, "batch": b, "offset": off, "micro": m, "accum": k, "chunks": chunks}, None


def check_split(shares, gb: int):
    """None when the ranks' (offset, batch) shares tile [0, gb) exactly, else why not."""
    at = 0
    for off, b, r in sorted((o, b, r) for r, (o, b) in enumerate(shares)):
        if off != at:
            return (f"the shares do not tile the global batch {gb}: rank {r} starts at {off}, "
                    f"expected {at} (shares as rank:offset+batch: "
                    + ", ".join(f"{i}:{o}+{n}" for i, (o, n) in enumerate(shares)) + ")")
        at += b
    if at != gb:
        return f"the shares add up to {at}, not UGRO_GLOBAL_BATCH {gb}"
    return None


def say(line: str, err: bool = False) -> None:
    """One line in ONE write: under PYTHONUNBUFFERED (UGRO sets it) print() writes the text and the
    newline separately, and ranks sharing a stdout interleave mid-line ("rank 0: donerank 1: done")."""
    f = sys.stderr if err else sys.stdout
    f.write(line + "\n")
    f.flush()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_durably(tmp: str, final: str, write) -> None:
    """write(f) into tmp, flush and fsync it, rename it to final and fsync the directory."""
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(os.path.dirname(final) or ".")


def save_checkpoint(ckpt_dir: str, state: dict) -> str:
    """Rank 0: step-N.pt (complete or absent), then `latest` naming it. Returns the name."""
    name = f"step-{state['step']}"
    os.makedirs(ckpt_dir, exist_ok=True)
    _replace_durably(os.path.join(ckpt_dir, f".{name}.pt.tmp"), os.path.join(ckpt_dir, f"{name}.pt"),
                     lambda f: torch.save(state, f))
    _replace_durably(os.path.join(ckpt_dir, ".latest.tmp"), os.path.join(ckpt_dir, "latest"),
                     lambda f: f.write(f"{name}\n".encode()))
    return name


def load_checkpoint(ckpt_dir, name: str):
    """Rank 0: (state, None), or (None, why) naming the file."""
    if not NAME_RE.match(name):
        return None, f"UGRO_RESUME_FROM={name!r} is not a checkpoint name like step-400"
    if not ckpt_dir:
        return None, f"UGRO_RESUME_FROM={name} but UGRO_CHECKPOINT_DIR is not set: rank 0 must have {name}.pt"
    path = os.path.join(ckpt_dir, f"{name}.pt")
    if not os.path.isfile(path):
        return None, (f"cannot resume from {name}: {path} does not exist on rank 0's host "
                      f"({socket.gethostname()}); rank 0 must have the checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same failure
        return None, f"cannot resume from {name}: rank 0 could not load {path}: {type(e).__name__}: {e}"
    ok = (isinstance(state, dict) and isinstance(state.get("model"), dict)
          and isinstance(state.get("optimizer"), dict) and isinstance(state.get("step"), int)
          and isinstance(state.get("epoch"), int) and state["step"] >= 0)
    if not ok:
        return None, f"cannot resume from {name}: {path} is not a checkpoint of this script"
    return state, None


class Heartbeat:
    """Sets the mtime of $UGRO_HEARTBEAT_FILE (with %r replaced by the rank); warns once on failure."""

    def __init__(self, template, rank: int):
        self.path = template.replace("%r", str(rank)) if template else None
        self.warned = False

    def touch(self) -> None:
        if not self.path:
            return
        try:
            try:
                os.utime(self.path, None)  # one syscall a step: rank.sh created the file
            except FileNotFoundError:
                with open(self.path, "a"):
                    pass
        except OSError as e:
            if not self.warned:
                say(f"heartbeat: cannot touch {self.path}: {e}", err=True)
                self.warned = True


class StepTimer:
    """Each rank's busy time a step (spec.batch.balance, see UGRO_GLOBAL_BATCH above): from the step's
    start to its last gradient bucket ready for the all-reduce, which a DDP comm hook notes before it
    runs the default all-reduce (the same mean over the ranks DDP computes without a hook)."""

    def __init__(self, ddp, world: int, rank: int, start_step: int):
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

        self.world, self.rank, self.first = world, rank, start_step + 1
        self.t0 = self.ready = 0.0
        self.sums = [0.0] * world
        self.wall = 0.0
        self.steps = 0

        def timed(state, bucket):
            self.ready = time.perf_counter()  # the last one a step is when this rank's work is done
            return default_hooks.allreduce_hook(state, bucket)

        ddp.register_comm_hook(None, timed)

    def start(self) -> None:
        self.t0 = self.ready = time.perf_counter()

    def mine(self) -> list:
        """The step's collective's extra slots: this rank's busy milliseconds at its own index."""
        out = [0.0] * self.world
        out[self.rank] = (self.ready - self.t0) * 1000
        return out

    def add(self, step: int, busy: list, wall_s: float) -> None:
        if step <= self.first:  # the run's first step: warm-up (allocation, DDP's bucket rebuild)
            return
        self.sums = [a + b for a, b in zip(self.sums, busy)]
        self.wall += wall_s * 1000
        self.steps += 1

    def report(self, shares: list) -> dict:
        """rank_ms, rank_n and step_ms since the last report (nothing when no step counted), then reset."""
        if not self.steps:
            return {}
        n = self.steps
        ms = ",".join(f"{x / n:.1f}" if x / n < 100 else f"{x / n:.0f}" for x in self.sums)
        out = {"rank_ms": ms, "rank_n": ",".join(str(b) for b in shares), "step_ms": round(self.wall / n, 1)}
        self.sums, self.wall, self.steps = [0.0] * self.world, 0.0, 0
        return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="tiny-mlp")
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps-per-epoch", type=int, default=20)
    p.add_argument("--checkpoint-every", type=int, default=0,
                   help="also save every N global steps (0: only at the end of each epoch)")
    p.add_argument("--metrics-every", type=int, default=10,
                   help="a metrics line every N global steps (0: only per epoch)")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep per step (tests)")
    p.add_argument("--fail-rank", type=int, default=-1, help="this global rank exits with --exit-code (tests)")
    p.add_argument("--exit-code", type=int, default=3)
    p.add_argument("--hang-rank", type=int, default=-1,
                   help="this global rank stops taking part in collectives after init, until SIGTERM (tests)")
    p.add_argument("--ckpt-dir-per-rank", action="store_true",
                   help="rank R > 0 uses $UGRO_CHECKPOINT_DIR/rank-R (tests: only rank 0 reads checkpoints)")
    p.add_argument("--echo-args", action="store_true", help="print sys.argv as JSON and exit (tests)")
    p.add_argument("--max-steps", type=int, default=0,
                   help="stop after global step N, even mid-epoch (0: no limit; counted like checkpoints)")
    p.add_argument("--data-seed", type=int, default=0,
                   help="with UGRO_GLOBAL_BATCH: sample i of step s is drawn from (seed, s, i)")
    p.add_argument("--dump-grads", default=None, metavar="FILE",
                   help="rank 0 writes the all-reduced gradients of the first step as JSON (tests)")
    a, extra = p.parse_known_args()

    rank = int(os.environ.get("RANK", "0"))
    if a.echo_args:
        say("ARGV " + json.dumps(sys.argv[1:]))
        return 0
    if a.model not in BUILTIN:
        say(f"model {a.model!r} is not built in (built in: {', '.join(BUILTIN)}); "
            "hub models need the transformers package in the host environment", err=True)
        return 2
    if a.steps_per_epoch < 1:
        say("--steps-per-epoch must be at least 1", err=True)
        return 2
    if a.max_steps < 0:
        say("--max-steps must be 0 (no limit) or more", err=True)
        return 2

    use_cuda = torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)  # broadcast_object_list on NCCL uses the current device
    init_kw = {}
    timeout_s = os.environ.get("UGRO_COLLECTIVE_TIMEOUT_SECONDS")
    if timeout_s:
        try:
            init_kw["timeout"] = datetime.timedelta(seconds=float(timeout_s))
        except (ValueError, OverflowError):
            init_kw["timeout"] = datetime.timedelta(0)
        if not init_kw["timeout"] > datetime.timedelta(0):
            say(f"UGRO_COLLECTIVE_TIMEOUT_SECONDS={timeout_s!r} is not a positive number of seconds", err=True)
            return 2
        if use_cuda and tuple(int(x) for x in re.findall(r"\d+", torch.__version__)[:2]) < (2, 2):
            os.environ.setdefault("NCCL_ASYNC_ERROR_HANDLING", "1")  # 2.2+ tears down by default
    dist.init_process_group(backend, **init_kw)
    heartbeat = Heartbeat(os.environ.get("UGRO_HEARTBEAT_FILE"), rank)
    heartbeat.touch()
    world = dist.get_world_size()
    device = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    say(f"rank {rank}/{world} on {socket.gethostname()} backend={backend} device={device}")
    say(f"rank {rank}: restart count {os.environ.get('UGRO_RESTART_COUNT', '0')}")

    if rank == a.fail_rank:
        say(f"rank {rank}: failing on purpose with exit code {a.exit_code}")
        sys.stdout.flush()
        os._exit(a.exit_code)
    if rank == a.hang_rank:
        say(f"rank {rank}: hanging on purpose (no more collectives) until SIGTERM")
        while True:
            time.sleep(1)

    def barrier() -> None:
        # NCCL's barrier wants the rank's device named (else a warning, and a guess at the device).
        dist.barrier(device_ids=[local]) if use_cuda else dist.barrier()

    # spec.batch: every rank checks its own values, then all of them check the whole split together,
    # so a bad setting on one rank stops every rank with exit 2 instead of a hang in a collective.
    plan = None
    if os.environ.get("UGRO_GLOBAL_BATCH", "").strip():
        plan, why = batch_plan(os.environ, rank, world)
        shares = [None] * world
        dist.all_gather_object(shares, None if plan is None else (plan["offset"], plan["batch"], plan["global"]))
        if why is None and any(s is None for s in shares):
            bad = ", ".join(str(r) for r, s in enumerate(shares) if s is None)
            why = f"rank(s) {bad} have a bad batch setting (see their messages)"
        elif why is None and len({s[2] for s in shares}) != 1:
            why = f"the ranks disagree on UGRO_GLOBAL_BATCH: {[s[2] for s in shares]}"
        elif why is None:
            why = check_split([(s[0], s[1]) for s in shares], plan["global"])
        if why is not None:
            say(f"rank {rank}: bad batch split: {why}", err=True)
            return 2
        plan["shares"] = [s[1] for s in shares]  # every rank's share, by global rank (rank_n)
        say(f"rank {rank}: batch {plan['batch']} of global {plan['global']} at offset {plan['offset']}, "
            f"{len(plan['chunks'])} micro batch(es) of at most {plan['micro']} (UGRO_GRAD_ACCUM {plan['accum']})")

    d_in, d_hidden = BUILTIN[a.model]
    torch.manual_seed(1234)
    model = nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, 1)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    spe = a.steps_per_epoch
    total_steps = a.epochs * spe
    if a.max_steps:
        total_steps = min(total_steps, a.max_steps)
    samples_per_step = plan["global"] if plan else a.batch_size * world

    ckpt_dir = os.environ.get("UGRO_CHECKPOINT_DIR") or None
    if ckpt_dir and a.ckpt_dir_per_rank and rank > 0:
        ckpt_dir = os.path.join(ckpt_dir, f"rank-{rank}")
    start_step = 0
    carry = None  # a checkpoint's loss and time sums (see checkpoint())
    resume = os.environ.get("UGRO_RESUME_FROM")
    if resume:
        box = list(load_checkpoint(ckpt_dir, resume)) if rank == 0 else [None, None]
        dist.broadcast_object_list(box, src=0)  # ranks > 0 never open the file
        state, why = box
        if why is not None:
            if rank == 0:
                say(f"rank 0: {why}", err=True)
            else:
                say(f"rank {rank}: cannot resume from {resume}: rank 0 could not load it (see rank 0)", err=True)
            return 2
        try:
            model.load_state_dict(state["model"])
            saved = opt.state_dict()
            saved["state"] = state["optimizer"].get("state", {})
            opt.load_state_dict(saved)
        except (RuntimeError, ValueError, KeyError, TypeError) as e:  # the same on every rank
            say(f"rank {rank}: cannot resume from {resume}: it does not fit --model {a.model}: {e}", err=True)
            return 2
        start_step = state["step"]
        sums = state.get("sums")
        if isinstance(sums, torch.Tensor) and sums.numel() == 6:
            carry = [float(v) for v in sums.tolist()]
        say(f"rank {rank}: resumed from {resume} (step {start_step}, epoch {state['epoch']})")
        if state.get("steps_per_epoch", spe) != spe or state.get("world", world) != world:
            say(f"rank {rank}: note: {resume} was written with --steps-per-epoch {state.get('steps_per_epoch')} "
                f"and world {state.get('world')}; now {spe} and {world}; continuing at global step {start_step + 1}")
        del state, box, saved
    heartbeat.touch()

    # DDP wraps the same parameters (the optimizer keeps them) and broadcasts rank 0's values.
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[local] if use_cuda else None)
    _KEEP_ALIVE.extend([ddp, model, opt])
    timer = StepTimer(ddp, world, rank, start_step) if plan else None
    w_true = torch.randn(d_in, 1, generator=torch.Generator().manual_seed(0)).to(device)
    g = torch.Generator()
    metrics_path = os.environ.get("UGRO_METRICS_FILE") if rank == 0 else None

    def metrics(line: dict) -> None:
        if timer:
            line.update(timer.report(plan["shares"]))
        if metrics_path:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(line) + "\n")

    def checkpoint(step: int, epoch: int) -> None:
        if rank == 0 and ckpt_dir:
            name = save_checkpoint(ckpt_dir, {
                "format": CKPT_FORMAT, "model": model.state_dict(), "optimizer": {"state": opt.state_dict()["state"]},
                "step": step, "epoch": epoch, "steps_per_epoch": spe, "world": world,
                # The loss and time sums of the epoch and metrics window so far (a tensor: the
                # weights_only unpickler refuses floats), so a resumed run reports what an
                # uninterrupted one would: without them a resumed epoch's loss averaged only its
                # own later, lower steps.
                "sums": torch.tensor([ep_loss, ep_steps, ep_time, win_loss, win_steps, win_time],
                                     dtype=torch.float64),
            })
            say(f"rank 0: saved checkpoint {name}")

    step = start_step
    if step >= total_steps:
        say(f"rank {rank}: nothing left to train (step {step} of {total_steps})")
    weight = world / plan["global"] if plan else 1.0  # L_r = (W / B) * sum of the rank's sample losses

    def samples(lo: int, hi: int):
        """Global samples lo..hi-1 of this step (x, y), each from its own seed; on the device."""
        if hi <= lo:
            x = torch.zeros(0, d_in)
        else:
            x = torch.stack([torch.randn(d_in, generator=g.manual_seed(sample_seed(a.data_seed, step, i)))
                             for i in range(lo, hi)])
        x = x.to(device)
        return x, x @ w_true

    def dump_grads(path: str) -> None:
        grads = {n: (p.grad.detach().reshape(-1).cpu().tolist() if p.grad is not None else None)
                 for n, p in model.named_parameters()}
        line = {"step": step + 1, "world": world, "global_batch": plan["global"] if plan else None,
                "grads": grads}
        _replace_durably(path + ".tmp", path, lambda f: f.write(json.dumps(line).encode()))
        say(f"rank 0: wrote the gradients of step {step + 1} to {path}")

    _SIG["armed"] = True  # from here SIGTERM stops after a step, with a checkpoint
    # Sums of each step's mean loss (over the ranks) and time, since the previous metrics line and
    # since the epoch began; carried over from the checkpoint a mid-epoch resume started from.
    win_loss = win_time = 0.0
    win_steps = 0
    ep_loss = ep_time = 0.0
    ep_steps = 0
    if carry is not None and step % spe != 0:
        ep_loss, ep_steps, ep_time, win_loss, win_steps, win_time = carry
        ep_steps, win_steps = int(ep_steps), int(win_steps)
    for epoch in range(step // spe, a.epochs):
        t0 = time.time()
        if step % spe == 0:
            ep_loss = ep_time = 0.0
            ep_steps = 0
        for _ in range(step % spe, spe):
            if step >= total_steps:  # --max-steps
                break
            ts = time.time()
            if timer:
                timer.start()
            if plan is None:
                g.manual_seed(step * 65536 + rank)  # the batch depends on (rank, step) only
                x = torch.randn(a.batch_size, d_in, generator=g).to(device)
                y = x @ w_true
                loss = nn.functional.mse_loss(ddp(x), y)
                opt.zero_grad()
                loss.backward()
                loss_val = loss.item()
            else:
                opt.zero_grad()
                loss_val = 0.0
                chunks = plan["chunks"]
                for j, (lo, hi) in enumerate(chunks):
                    x, y = samples(plan["offset"] + lo, plan["offset"] + hi)
                    # no_sync on all but the last micro batch: the gradients add up locally and the
                    # last backward all-reduces the sum, once per step on every rank.
                    with ddp.no_sync() if j < len(chunks) - 1 else contextlib.nullcontext():
                        loss = ((ddp(x) - y) ** 2).sum() * weight
                        loss.backward()
                    loss_val += loss.item()
            if a.dump_grads and rank == 0 and step == start_step:
                dump_grads(a.dump_grads)
            opt.step()
            step += 1
            if a.sleep:
                time.sleep(a.sleep)
            # One collective per step: [stop flag, loss], summed. Every rank gets the same values,
            # so every rank takes the same decision after the same step.
            # With a batch plan each rank adds its busy time at its own index: everyone's, summed.
            red = torch.tensor([1.0 if _SIG["stop"] else 0.0, loss_val] + (timer.mine() if timer else []),
                               device=device)
            dist.all_reduce(red)
            stop_votes, loss_sum, *busy = red.tolist()
            heartbeat.touch()
            dt = time.time() - ts
            if timer:
                timer.add(step, busy, dt)
            win_loss += loss_sum / world
            win_time += dt
            win_steps += 1
            ep_loss += loss_sum / world
            ep_time += dt
            ep_steps += 1
            saved_at = None
            if step % spe == 0:  # the epoch's last step
                avg = ep_loss / ep_steps
                say(f"rank {rank}: epoch {epoch} loss {avg:.5f} ({time.time() - t0:.2f}s)")
                metrics({"epoch": epoch, "step": step, "total_steps": total_steps, "loss": round(avg, 6),
                         "samples_per_s": round(ep_steps * samples_per_step / max(ep_time, 1e-9), 1),
                         "world": world, "time": time.time(), "epoch_end": True})
                win_loss = win_time = 0.0
                win_steps = 0
                checkpoint(step, epoch)
                saved_at = step
            else:
                if a.metrics_every > 0 and step % a.metrics_every == 0:
                    metrics({"epoch": epoch, "step": step, "total_steps": total_steps,
                             "loss": round(win_loss / win_steps, 6),
                             "samples_per_s": round(win_steps * samples_per_step / max(win_time, 1e-9), 1),
                             "world": world, "time": time.time()})
                    win_loss = win_time = 0.0
                    win_steps = 0
                if a.checkpoint_every > 0 and step % a.checkpoint_every == 0:
                    checkpoint(step, epoch)
                    saved_at = step
                if step == total_steps:  # --max-steps ended training mid-epoch: keep its last step
                    if win_steps:
                        metrics({"epoch": epoch, "step": step, "total_steps": total_steps,
                                 "loss": round(win_loss / win_steps, 6),
                                 "samples_per_s": round(win_steps * samples_per_step / max(win_time, 1e-9), 1),
                                 "world": world, "time": time.time()})
                        win_loss = win_time = 0.0
                        win_steps = 0
                    if saved_at != step:
                        checkpoint(step, epoch)
                        saved_at = step
            if stop_votes > 0:
                if saved_at != step:
                    checkpoint(step, epoch)
                barrier()  # nobody exits before rank 0's checkpoint is complete
                dist.destroy_process_group()
                say(f"rank {rank}: stopping on SIGTERM after step {step}")
                return 143
        if step >= total_steps:
            break
    barrier()
    dist.destroy_process_group()
    say(f"rank {rank}: done")
    return 0


if __name__ == "__main__":
    try:
        rc = main()
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - any failure must still skip the teardown below
        import traceback

        traceback.print_exc()
        rc = 1
    # Exit without interpreter teardown, for the same reason as _KEEP_ALIVE: finalizers that free
    # gloo's process group can deadlock on the GIL, leaving a finished rank alive forever.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
