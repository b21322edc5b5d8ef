"""UGRO reference training script: a small DDP model on synthetic data.

Runs under torchrun (UGRO starts it). Picks NCCL on CUDA GPUs, gloo on CPU. Rank 0 writes one
JSON line of metrics per epoch to $UGRO_METRICS_FILE and a checkpoint to $UGRO_CHECKPOINT_DIR.
Only built-in models are trained here; a hub model name fails clearly (no download is faked).
"""
import argparse
import json
import os
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn

BUILTIN = {"tiny-mlp": (32, 64), "small-mlp": (128, 512)}

# Objects holding the process group are kept alive until os._exit ends the process. Freeing
# DDP's Reducer drops the last reference to gloo's process group, whose destructor joins gloo's
# worker threads while holding the GIL; a worker freeing its last tensor waits for that GIL, and
# the rank hangs after "done" forever (torch 1.13, seen with gdb; 2 of 3 runs on a loaded box).
_KEEP_ALIVE: list = []


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="tiny-mlp")
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps-per-epoch", type=int, default=20)
    p.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep per step (tests)")
    p.add_argument("--fail-rank", type=int, default=-1, help="this global rank exits with --exit-code (tests)")
    p.add_argument("--exit-code", type=int, default=3)
    p.add_argument("--echo-args", action="store_true", help="print sys.argv as JSON and exit (tests)")
    a, extra = p.parse_known_args()

    rank = int(os.environ.get("RANK", "0"))
    if a.echo_args:
        print("ARGV " + json.dumps(sys.argv[1:]), flush=True)
        return 0
    if a.model not in BUILTIN:
        print(f"model {a.model!r} is not built in (built in: {', '.join(BUILTIN)}); "
              "hub models need the transformers package in the host environment", file=sys.stderr)
        return 2

    use_cuda = torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    dist.init_process_group(backend)
    world = dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    print(f"rank {rank}/{world} on {socket.gethostname()} backend={backend} device={device}", flush=True)

    if rank == a.fail_rank:
        print(f"rank {rank}: failing on purpose with exit code {a.exit_code}", flush=True)
        sys.stdout.flush()
        os._exit(a.exit_code)

    d_in, d_hidden = BUILTIN[a.model]
    torch.manual_seed(1234)
    model = nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, 1)).to(device)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[local] if use_cuda else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=a.lr)
    _KEEP_ALIVE.extend([ddp, model, opt])
    g = torch.Generator().manual_seed(rank)
    w_true = torch.randn(d_in, 1, generator=torch.Generator().manual_seed(0))

    ckpt_dir = os.environ.get("UGRO_CHECKPOINT_DIR")
    start_epoch = 0
    resume = os.environ.get("UGRO_RESUME_FROM")
    if resume and ckpt_dir and os.path.exists(os.path.join(ckpt_dir, resume + ".pt")):
        state = torch.load(os.path.join(ckpt_dir, resume + ".pt"), map_location=device)
        model.load_state_dict(state["model"])
        start_epoch = state["epoch"] + 1
        print(f"rank {rank}: resumed from {resume} (epoch {state['epoch']})", flush=True)

    step = start_epoch * a.steps_per_epoch
    for epoch in range(start_epoch, a.epochs):
        t0 = time.time()
        total = 0.0
        for _ in range(a.steps_per_epoch):
            x = torch.randn(a.batch_size, d_in, generator=g).to(device)
            y = x @ w_true.to(device)
            loss = nn.functional.mse_loss(ddp(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            step += 1
            if a.sleep:
                time.sleep(a.sleep)
        avg = torch.tensor([total / a.steps_per_epoch], device=device)
        dist.all_reduce(avg)
        avg = avg.item() / world
        print(f"rank {rank}: epoch {epoch} loss {avg:.5f} ({time.time() - t0:.2f}s)", flush=True)
        if rank == 0:
            if os.environ.get("UGRO_METRICS_FILE"):
                with open(os.environ["UGRO_METRICS_FILE"], "a") as f:
                    f.write(json.dumps({"epoch": epoch, "step": step, "loss": round(avg, 6), "world": world, "time": time.time()}) + "\n")
            if ckpt_dir:
                os.makedirs(ckpt_dir, exist_ok=True)
                tmp = os.path.join(ckpt_dir, f".step-{step}.pt.tmp")
                torch.save({"model": model.state_dict(), "epoch": epoch, "step": step}, tmp)
                os.replace(tmp, os.path.join(ckpt_dir, f"step-{step}.pt"))
    # NCCL's barrier wants the rank's device named (else a warning, and a guess at the device).
    dist.barrier(device_ids=[local]) if use_cuda else dist.barrier()
    dist.destroy_process_group()
    print(f"rank {rank}: done", flush=True)
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
