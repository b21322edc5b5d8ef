# UGRO host runtime: one rank of `ugro doctor`'s all-reduce test (torch.distributed, every host).
# Usage: doctor-allreduce.sh PYTHON BACKEND MASTER_ADDR PORT SPAN RANK WORLD BYTES ITERS TIMEOUT_S PAIRS
#   BACKEND   gloo | nccl
#   PORT SPAN rank 0 (on MASTER_ADDR) takes the first free port of [PORT, PORT+SPAN) and answers
#             @@port port=P before it imports torch (the other ranks are started with P, SPAN 0)
#   PAIRS     the rank pairs to time, `0-1,0-2,1-2`: an all-reduce of one float (latency) and of
#             BYTES (bandwidth), ITERS times each, one pair after the other
# Answers @@rank (torch, nccl, import_s), then for each pair its lower rank @@allreduce I-J with
# lat_us, time_ms, bytes, busbw_gbps (medians; for two ranks the bus bandwidth is the algorithm's),
# and @@done. Bounded: TIMEOUT_S inside, `timeout -s KILL` outside, and it ends when its stdin
# closes (the doctor gave up or its SSH connection is gone). gloo/NCCL use the interface that routes
# to MASTER_ADDR (lib.sh's ugro_collective_dev, as a launch does).
set -u
[ $# -eq 11 ] ||
  ugro_fail 2 "usage: doctor-allreduce.sh PYTHON BACKEND MASTER_ADDR PORT SPAN RANK WORLD BYTES ITERS TIMEOUT_S PAIRS"
py=$1
shift
case $1 in gloo | nccl) ;; *) ugro_fail 2 "BACKEND must be gloo or nccl" ;; esac
for n in "$3" "$4" "$5" "$6" "$7" "$8" "$9"; do ugro_is_uint "$n" || ugro_fail 2 "not an integer: $n"; done
case ${10} in *[!0-9,-]*) ugro_fail 2 "PAIRS must look like 0-1,0-2,1-2" ;; esac
ugro_collective_dev "$2"
[ -z "$ugro_v" ] || export GLOO_SOCKET_IFNAME="$ugro_v" NCCL_SOCKET_IFNAME="$ugro_v"
t=""
command -v timeout >/dev/null 2>&1 && t="timeout -s KILL $(($9 + 5))"
# The program on fd 3: stdin stays the SSH channel, whose end stops the rank.
exec $t "$py" /dev/fd/3 "$@" 3<<'PY'
import os, socket, sys, threading, time
from datetime import timedelta

backend, addr = sys.argv[1], sys.argv[2]
port, span, rank, world, nbytes, iters, tmo = (int(x) for x in sys.argv[3:10])
pairs = [tuple(int(r) for r in p.split("-")) for p in sys.argv[10].split(",") if p]


def say(s):
    sys.stdout.write(s + "\n")
    sys.stdout.flush()


def die(code, why):
    say("@@error\nwhy=%s\n@@end" % str(why).replace("\n", " ")[:300])
    os._exit(code)


def stdin_closed():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except Exception:
        pass
    os._exit(3)


threading.Thread(target=stdin_closed, daemon=True).start()
timer = threading.Timer(tmo, die, (4, "timed out after %d s" % tmo))
timer.daemon = True
timer.start()

if rank == 0 and span > 0:
    for p in range(port, min(port + span, 65536)):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", p))
            port = p
            break
        except OSError:
            pass
        finally:
            s.close()
    else:
        die(1, "no free port in %d..%d" % (port, port + span - 1))
    say("@@port\nport=%d\n@@end" % port)

t0 = time.monotonic()
try:
    import torch
    import torch.distributed as dist
except Exception as e:
    die(1, "cannot import torch: %s" % e)
nccl = "none"
try:
    v = torch.cuda.nccl.version()
    if isinstance(v, int):
        v = (v // 10000, v // 100 % 100, v % 100) if v >= 10000 else (v // 1000, v // 100 % 10, v % 100)
    nccl = ".".join(str(x) for x in v)
except Exception:
    pass
say("@@rank\ntorch=%s\nnccl=%s\nimport_s=%.3f\n@@end" % (torch.__version__, nccl, time.monotonic() - t0))

try:
    dist.init_process_group(
        backend, init_method="tcp://%s:%d" % (addr, port), rank=rank, world_size=world,
        timeout=timedelta(seconds=tmo))
    dev = torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(0)
        dev = torch.device("cuda", 0)

    def sync():
        if backend == "nccl":
            torch.cuda.synchronize()

    groups = [dist.new_group(list(p)) for p in pairs]  # every rank makes every group, in order
    small = torch.ones(1, device=dev)
    big = torch.ones(max(1, nbytes // 4), device=dev)
    for p, g in zip(pairs, groups):
        if rank in p:
            for _ in range(2):
                dist.all_reduce(small, group=g)
                dist.all_reduce(big, group=g)
            sync()
            lat, bw = [], []
            for _ in range(iters * 2):
                a = time.perf_counter()
                dist.all_reduce(small, group=g)
                sync()
                lat.append(time.perf_counter() - a)
            for _ in range(iters):
                a = time.perf_counter()
                dist.all_reduce(big, group=g)
                sync()
                bw.append(time.perf_counter() - a)
            lat.sort()
            bw.sort()
            if rank == min(p):
                m = bw[len(bw) // 2]
                say("@@allreduce %d-%d\nlat_us=%.1f\ntime_ms=%.3f\nbytes=%d\nbusbw_gbps=%.4f\n@@end" % (
                    p[0], p[1], lat[len(lat) // 2] * 1e6, m * 1e3, big.numel() * 4, big.numel() * 4 / m / 1e9))
        dist.barrier()
    say("@@done\n@@end")
except Exception as e:
    die(1, "%s: %s" % (type(e).__name__, e))
os._exit(0)
PY
