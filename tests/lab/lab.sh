#!/usr/bin/env bash
# The UGRO lab: several real hosts on this one machine.
#
# Each host is a network namespace with its own veth link on a bridge, its own
# UTS hostname, its own /etc/hosts, its own user and its own OpenSSH sshd, so
# the controller talks to it exactly as to a real box: ssh, known_hosts
# pinning, torchrun rendezvous over TCP. Only the GPU is faked (stand-in
# nvidia-smi, see stand-ins/). Needs root (namespaces, users, sshd).
#
# Usage: bash tests/lab/lab.sh <verb> [args]   (npm run lab -- <verb> [args])
#   up [--hosts N]        create the lab (default 3 hosts), or bring it back to
#                         nominal (all running, linked, GPU ok); idempotent
#   down                  remove everything the lab made (hosts, users, .lab)
#   status                one line per host; exit 0 only if all are up
#   stop-host H           kill H's sshd and all its processes (connect: refused)
#   start-host H          start H's sshd again and wait for port 22
#   cut H [--peers]       take H's link down on both ends (connect: times out); --peers:
#                         cut H off the other lab hosts only (their connects to H time out,
#                         its own fail: no route) while this machine (the controller) still reaches
#                         it over ssh, like a data network failing beside a healthy management one
#   heal H                bring H's link back (and its peers) and wait for port 22
#   gpu H MODE            switch H's stand-in GPU: ok | absent | old-driver | failing |
#                         xid (an XID 79 in its kernel log) | pcie-degraded (gen 1 x4 of
#                         4 x16) | throttled (93 C, thermal slowdown); `ok` clears them
#   gpus H NAME:GB[,NAME:GB...]|default   give H these stand-in GPUs (indices
#                         0..n-1, e.g. "RTX 5070 Ti:12,RTX 4070:8"), or its seed
#                         GPU back; the mode is kept; `up` restores every host
#   speed H FACTOR [--cores N]  H's processes get FACTOR x N CPUs (cgroup cpu quota;
#                         FACTOR in (0,1], N default 1); `speed H 1` lifts it
#   mem H MiB|off         H's processes get MiB of memory (cgroup memory limit: a real
#                         OOM kill beyond it); `mem H off` lifts it
#   ssh H [CMD...]        ssh into H as its user with the lab key (convenience)
#   smoke                 ssh + stand-in + N-host torchrun (gloo) end-to-end check
#   slurm up|down|status  Slurm (slurm-wlm + munge) on the lab hosts (tests/lab/slurm.sh)
# H is a host name (gpu-master, gpu1, ...), its index, its address or its user.
set -euo pipefail

LAB_SH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$LAB_SH_DIR/../.." && pwd)
LAB=${UGRO_LAB_DIR:-$REPO/.lab}
case $LAB in /*) ;; *) LAB=$PWD/$LAB ;; esac # paths in cluster.yaml must be absolute

BRIDGE=ugrobr0
BRIDGE_MAC=02:50:77:00:00:01
SUBNET=10.250.77
GATEWAY=$SUBNET.1
SSH_PORT=22
DEFAULT_HOSTS=3
# Users created by the lab carry this GECOS marker; `down` only deletes those.
LAB_GECOS="UGRO lab host user"
LOCK=/run/lock/ugro-lab.lock
PACKAGES=(openssh-server python3-torch iproute2 procps util-linux)

log() { printf '[lab] %s\n' "$*" >&2; }
die() { printf '[lab] error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=tests/lab/knobs.sh
. "$LAB_SH_DIR/knobs.sh" # speed and mem (cgroups)

# ---------------------------------------------------------------- host table
host_name() { if [ "$1" -eq 0 ]; then echo gpu-master; else echo "gpu$1"; fi; }
host_user() {
  case $1 in 0) echo master ;; 1) echo ob ;; 2) echo ollie ;; *) echo "w$1" ;; esac
}
host_ip() { echo "$SUBNET.$((10 + $1))"; }
host_veth() { echo "ugv$1"; }                                   # root-ns end (<= 15 chars)
host_mac() { printf '02:50:77:00:00:%02x\n' $((10 + $1)); }     # fixed: lets us pin ARP
host_dir() { echo "$LAB/hosts/$(host_name "$1")"; }
host_gpu_name() {
  case $1 in
    0) echo "NVIDIA GeForce RTX 5070 Ti" ;; 1) echo "NVIDIA GeForce RTX 4070" ;;
    2) echo "NVIDIA GeForce RTX 3070 Ti" ;; *) echo "NVIDIA GeForce RTX 3060" ;;
  esac
}
host_gpu_mib() { case $1 in 0) echo 12227 ;; 1) echo 8188 ;; 2) echo 8192 ;; *) echo 12288 ;; esac; }
# cluster.yaml wording (model without vendor prefix, VRAM in GB)
host_gpu_model() { host_gpu_name "$1" | sed 's/^NVIDIA GeForce //'; }
host_vram_gb() { case $1 in 0) echo 12 ;; 1 | 2) echo 8 ;; *) echo 12 ;; esac; }

host_count() {
  if [ -r "$LAB/hosts.count" ]; then cat "$LAB/hosts.count"; else echo 0; fi
}

# Resolve H (name, index, address or user) to an index among the recorded hosts.
resolve_host() {
  local want=$1 n i
  n=$(host_count)
  [ "$n" -gt 0 ] || die "the lab is not up (no $LAB/hosts.count); run: lab up"
  for ((i = 0; i < n; i++)); do
    if [ "$want" = "$i" ] || [ "$want" = "$(host_name $i)" ] || [ "$want" = "$(host_ip $i)" ] ||
      [ "$want" = "$(host_user $i)" ]; then
      echo "$i"; return 0
    fi
  done
  die "unknown host '$want' (lab hosts: $(for ((i = 0; i < n; i++)); do printf '%s ' "$(host_name $i)"; done))"
}

# ------------------------------------------------------------------ helpers
require_root() { [ "$(id -u)" -eq 0 ] || die "the lab needs root (namespaces, users, sshd)"; }

# Serialise verbs that change state: tests may fire fault verbs concurrently.
take_lock() { mkdir -p "$(dirname "$LOCK")"; exec 9>"$LOCK"; flock 9; }

# CI starts from a fresh machine: install what is missing (one apt-get update).
ensure_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing missing packages: ${missing[*]}"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${PACKAGES[@]}"
}

# Lab fix for a Debian packaging bug of torch 1.13 on Python 3.11: Std is an
# IntFlag, and since Python 3.11 iterating a Flag skips the zero member, so
# Std.from_str("0") returns None and every torchrun dies at start-up
# (AttributeError: 'NoneType' object has no attribute 'get'). Replace the
# lookup loop by Std(int(v)). Idempotent.
fix_torch_std() {
  /usr/bin/python3 - <<'EOF2' || die "torch fix failed: Std.from_str(\"0\") still returns None"
import importlib, sys
import torch.distributed.elastic.multiprocessing.api as a
path = a.__file__
src = open(path).read()
old = "for s in Std:\n                if s == v:\n                    return s"
new = "return Std(int(v))  # UGRO lab fix: Python 3.11 Flag iteration skips Std.NONE"
if "return Std(int(v))" not in src:
    if old not in src:
        sys.exit("torch fix: pattern not found in " + path + " (torch changed?)")
    open(path, "w").write(src.replace(old, new, 1))
    print("[lab] patched " + path + " (Std.from_str, Debian torch 1.13 on Python 3.11)", file=sys.stderr)
    importlib.reload(a)
sys.exit(0 if a.Std.from_str("0") is not None else 1)
EOF2
}

# Host users must be able to run .lab/hosts/<h>/bin/*: every directory on the
# way there needs o+x (and the lab's own directories o+rx).
open_path_to_lab() {
  local d=$LAB
  while [ "$d" != / ]; do
    d=$(dirname "$d")
    [ -x "$d" ] && [ -n "$(find "$d" -maxdepth 0 -perm -o+x)" ] || chmod o+x "$d"
  done
}

sshd_pid() { # prints the pid if this host's sshd (listener) is alive
  local pf
  pf="$(host_dir "$1")/sshd.pid"
  [ -r "$pf" ] || return 1
  local pid
  pid=$(cat "$pf" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q sshd || return 1
  echo "$pid"
}

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$1"; }

port_open() { timeout 1 bash -c "</dev/tcp/$1/$SSH_PORT" 2>/dev/null; }

wait_port() { # bounded wait (10 s) until host $1's port 22 accepts TCP
  local ip i
  ip=$(host_ip "$1")
  for ((i = 0; i < 50; i++)); do
    port_open "$ip" && return 0
    sleep 0.2
  done
  die "$(host_name "$1") ($ip): port $SSH_PORT does not accept connections after 10 s (log: $(host_dir "$1")/sshd.log)"
}

# Pin ARP entries (permanent) everywhere. Without this a `cut` host's address
# would fail ARP after ~3 s and connect() would get "No route to host" instead
# of a silent drop; with it, packets go to the dead port and the connect times
# out, which is what a pulled cable looks like from the other end.
pin_neighbors() {
  local n=$1 i j
  for ((i = 0; i < n; i++)); do
    ip neigh replace "$(host_ip $i)" lladdr "$(host_mac $i)" dev "$BRIDGE" nud permanent
  done
  for ((j = 0; j < n; j++)); do
    ip netns exec "$(host_name $j)" ip link show eth0 2>/dev/null | grep -q ',UP' || continue
    for ((i = 0; i < n; i++)); do
      [ "$i" -eq "$j" ] && continue
      ip netns exec "$(host_name $j)" ip neigh replace "$(host_ip $i)" lladdr "$(host_mac $i)" dev eth0 nud permanent
    done
  done
}

# ------------------------------------------------------------------ network
ensure_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add name "$BRIDGE" address "$BRIDGE_MAC" type bridge
  fi
  ip addr replace "$GATEWAY/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Where br_netfilter is loaded and FORWARD drops by default (Docker hosts,
  # CI runners), bridged traffic between namespaces would be filtered.
  if command -v iptables >/dev/null 2>&1; then
    iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null ||
      iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null || true
  fi
}

ensure_host_net() {
  local i=$1 h veth
  h=$(host_name "$i"); veth=$(host_veth "$i")
  ns_exists "$h" || ip netns add "$h"
  if ! ip netns exec "$h" ip link show eth0 >/dev/null 2>&1; then
    ip link del "$veth" 2>/dev/null || true
    # create the pair with the peer directly inside the namespace, then rename it
    ip link add "$veth" type veth peer name "ugp$i" netns "$h"
    ip netns exec "$h" ip link set "ugp$i" name eth0
    ip netns exec "$h" ip link set eth0 address "$(host_mac "$i")"
  fi
  ip link set "$veth" master "$BRIDGE" up
  ip netns exec "$h" ip link set lo up
  ip netns exec "$h" ip addr replace "$(host_ip "$i")/24" dev eth0
  ip netns exec "$h" ip link set eth0 up
  # a link going down drops the default route; always put it back
  ip netns exec "$h" ip route replace default via "$GATEWAY" dev eth0
  ip netns exec "$h" ip route flush type unreachable 2>/dev/null || true # `cut H --peers`
}

# `ip netns exec` bind-mounts /etc/netns/<h>/{hosts,resolv.conf} over /etc/,
# so torchrun's c10d rendezvous resolves host names to lab addresses (not the
# 127.0.1.1 of a stock Debian /etc/hosts). Written in place (same inode) so an
# already running sshd's bind mount sees updates.
write_netns_hosts() {
  local n=$1 i j f
  for ((j = 0; j < n; j++)); do
    mkdir -p "/etc/netns/$(host_name $j)"
    f="/etc/netns/$(host_name $j)/hosts"
    {
      echo "# Written by the UGRO lab (tests/lab/lab.sh): hosts of the lab cluster."
      echo "127.0.0.1 localhost"
      echo "::1 localhost ip6-localhost ip6-loopback"
      for ((i = 0; i < n; i++)); do echo "$(host_ip $i) $(host_name $i)"; done
    } >"$f.new"
    cat "$f.new" >"$f"
    rm -f "$f.new"
    chmod 644 "$f"
    # The hosts have no DNS (no route beyond the bridge). With the machine's
    # resolv.conf every lookup that misses /etc/hosts (e.g. the AAAA query of
    # `getent hosts gpu2`) would wait 2 x 5 s for an unreachable server; with
    # no nameserver glibc asks 127.0.0.1, which refuses at once.
    printf '# Written by the UGRO lab: lab hosts have no DNS, names are in /etc/hosts.\noptions timeout:1 attempts:1\n' \
      >"/etc/netns/$(host_name $j)/resolv.conf"
  done
}

# ------------------------------------------------------------ user and sshd
ensure_user() {
  local i=$1 u h home
  u=$(host_user "$i"); h=$(host_name "$i")
  id -u "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash -c "$LAB_GECOS" "$u"
  # useradd leaves the password field '!' (locked) and sshd refuses locked
  # accounts even for keys; '*' is "no password" but not locked.
  case $(getent shadow "$u" | cut -d: -f2) in '!'*) usermod -p '*' "$u" ;; esac
  home=$(getent passwd "$u" | cut -d: -f6)
  install -d -m 700 -o "$u" -g "$(id -gn "$u")" "$home/.ssh"
  install -m 600 -o "$u" -g "$(id -gn "$u")" "$LAB/id_ed25519.pub" "$home/.ssh/authorized_keys"
  # read by sshd because of PermitUserEnvironment: the stand-ins come first
  echo "PATH=$LAB/hosts/$h/bin:/usr/local/bin:/usr/bin:/bin" >"$home/.ssh/environment"
  chown "$u:$(id -gn "$u")" "$home/.ssh/environment"; chmod 600 "$home/.ssh/environment"
}

gpu_uuid() { printf 'GPU-5c1a7e2b-%04d-4000-8000-%012d\n' "$2" "$1"; } # host $1, GPU $2: distinct

# write_gpu_conf I [MODE [NAME|MIB...]]: `up` always brings the seed GPU back with mode=ok
# (nominal state); `gpus` passes the host's mode and its GPUs (GPU 0 first).
write_gpu_conf() {
  local i=$1 mode=${2:-ok} f j name mib
  shift $(($# < 2 ? $# : 2))
  [ $# -gt 0 ] || set -- "$(host_gpu_name "$i")|$(host_gpu_mib "$i")"
  f="$(host_dir "$i")/gpu.conf"
  {
    cat <<EOF
# Stand-in GPU(s) of lab host $(host_name "$i"), read by bin/nvidia-smi (a STAND-IN).
# mode: ok | old-driver | failing | absent | xid | pcie-degraded | throttled
#   (set with: lab gpu $(host_name "$i") MODE)
# GPUs: lab gpus $(host_name "$i") NAME:GB,... | default
mode=$mode
name="${1%|*}"
memory_total=${1##*|}
memory_used=312
utilization=0
temperature=34
driver=570.133.07
uuid=$(gpu_uuid "$i" 0)
gpu_count=$#
EOF
    for ((j = 1; j < $#; j++)); do
      name=${*:j+1:1}; mib=${name##*|}; name=${name%|*}
      printf 'name_%d="%s"\nmemory_total_%d=%s\nuuid_%d=%s\n' "$j" "$name" "$j" "$mib" "$j" "$(gpu_uuid "$i" "$j")"
    done
  } >"$f.new"
  chmod 644 "$f.new"
  mv -f "$f.new" "$f" # whole, never half-written, for an nvidia-smi reading it now
}

# The host's kernel log stand-in (read by stand-ins/journalctl -k): "EPOCH.USEC MESSAGE" lines.
# Nominal: the driver's load messages at boot; `gpu H xid` appends an XID 79 for GPU 0.
write_kern_log() {
  local i=$1 mode=${2:-ok} f boot now uuid
  f="$(host_dir "$i")/kern.log"
  boot=$(awk -v n="$(date +%s)" '{ printf "%d", n - $1 }' /proc/uptime)
  {
    printf '%s.000004 nvidia: loading out-of-tree module taints kernel.\n' $((boot + 4))
    printf '%s.000112 NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  570.133.07  Release Build\n' $((boot + 4))
    printf '%s.000420 nvidia-modeset: Loading NVIDIA Kernel Mode Setting Driver for UNIX platforms  570.133.07\n' $((boot + 5))
    if [ "$mode" = xid ]; then
      now=$(date +%s.%6N); uuid=$(gpu_uuid "$i" 0)
      printf '%s NVRM: GPU at PCI:0000:01:00: %s\n' "$now" "$uuid"
      printf "%s NVRM: Xid (PCI:0000:01:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n" "$now"
      printf '%s NVRM: GPU 0000:01:00.0: GPU has fallen off the bus.\n' "$now"
    fi
  } >"$f.new"
  chmod 644 "$f.new"
  mv -f "$f.new" "$f"
}

gpu_mode() { sed -n 's/^mode=//p' "$(host_dir "$1")/gpu.conf" 2>/dev/null || true; }

install_stand_ins() {
  local i=$1 d
  d="$(host_dir "$i")/bin"
  install -d -m 755 "$d"
  install -m 755 "$LAB_SH_DIR/stand-ins/pixi" "$d/pixi"
  rm -f "$d/nvidia-smi.absent"
  install -m 755 "$LAB_SH_DIR/stand-ins/nvidia-smi" "$d/nvidia-smi"
  install -m 755 "$LAB_SH_DIR/stand-ins/journalctl" "$d/journalctl"
}

# The host's stand-ins as in the repo, without `up` (a lab brought up by an older lab.sh): an
# absent nvidia-smi stays absent.
refresh_stand_ins() {
  local b f
  b="$(host_dir "$1")/bin"
  for f in "$b/nvidia-smi" "$b/nvidia-smi.absent"; do
    [ ! -e "$f" ] || cmp -s "$LAB_SH_DIR/stand-ins/nvidia-smi" "$f" || install -m 755 "$LAB_SH_DIR/stand-ins/nvidia-smi" "$f"
  done
  cmp -s "$LAB_SH_DIR/stand-ins/journalctl" "$b/journalctl" || install -m 755 "$LAB_SH_DIR/stand-ins/journalctl" "$b/journalctl"
}

write_sshd_config() {
  local i=$1 d
  d=$(host_dir "$i")
  [ -e "$d/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "$(host_name "$i")" -f "$d/ssh_host_ed25519_key"
  # A second key type, as on a stock Debian/Ubuntu host (which has three): clients must ask for
  # the pinned type, and `ugro hosts trust` sees more than one key.
  [ -e "$d/ssh_host_ecdsa_key" ] || ssh-keygen -q -t ecdsa -b 256 -N '' -C "$(host_name "$i")" -f "$d/ssh_host_ecdsa_key"
  cat >"$d/sshd_config" <<EOF
# sshd of lab host $(host_name "$i"), written by tests/lab/lab.sh
ListenAddress $(host_ip "$i")
Port $SSH_PORT
HostKey $d/ssh_host_ed25519_key
HostKey $d/ssh_host_ecdsa_key
PidFile $d/sshd.pid
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PermitRootLogin no
AllowUsers $(for ((j = 0; j < $(host_count); j++)); do printf '%s ' "$(host_user "$j")"; done)
PermitUserEnvironment yes
UseDNS no
# the controller multiplexes many channels over one connection
MaxSessions 100
MaxStartups 100:30:200
ClientAliveInterval 0
X11Forwarding no
PrintMotd no
Subsystem sftp internal-sftp
EOF
}

start_sshd() { # no-op when it is already running
  local i=$1 h d
  h=$(host_name "$i"); d=$(host_dir "$i")
  sshd_pid "$i" >/dev/null && return 0
  mkdir -p /run/sshd && chmod 755 /run/sshd # privilege separation directory
  /usr/sbin/sshd -t -f "$d/sshd_config" || die "$h: sshd_config rejected by sshd -t"
  # own UTS namespace: `hostname` inside the host says its lab name.
  ip netns exec "$h" unshare --uts sh -c \
    "hostname '$h' 2>/dev/null || echo '$h' >/proc/sys/kernel/hostname; exec /usr/sbin/sshd -f '$d/sshd_config' -E '$d/sshd.log'"
}

# Kill every process of the host: everything in its network namespace (sshd,
# session monitors, user jobs) and everything its user runs anywhere.
kill_host_processes() {
  local i=$1 h u pid pids
  h=$(host_name "$i"); u=$(host_user "$i")
  if pid=$(sshd_pid "$i"); then kill -KILL "$pid" 2>/dev/null || true; fi
  if ns_exists "$h"; then
    pids=$(ip netns pids "$h" 2>/dev/null || true)
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  fi
  id -u "$u" >/dev/null 2>&1 && pkill -KILL -u "$u" 2>/dev/null || true
  rm -f "$(host_dir "$i")/sshd.pid"
  # give the kernel a moment to reap, so the port is really closed on return
  local k
  for ((k = 0; k < 20; k++)); do
    [ -z "$(ip netns pids "$h" 2>/dev/null || true)" ] && break
    sleep 0.1
  done
}

# ------------------------------------------------------------ cluster files
write_known_hosts() {
  local n=$1 i
  for ((i = 0; i < n; i++)); do
    printf '%s,%s %s\n' "$(host_name $i)" "$(host_ip $i)" \
      "$(cut -d' ' -f1,2 "$(host_dir $i)/ssh_host_ed25519_key.pub")"
  done >"$LAB/known_hosts"
  chmod 644 "$LAB/known_hosts"
}

write_cluster_yaml() {
  local n=$1 i
  {
    cat <<EOF
# Written by \`npm run lab -- up\`: the lab cluster (network namespaces on this machine).
cluster:
  name: "ugro-lab"
  location: "this machine (network namespaces)"
  description: "Lab cluster: real sshd per host, stand-in nvidia-smi"
  master:
    hostname: "$(host_name 0)"
    ip: "$(host_ip 0)"
    port: $SSH_PORT
    user: "$(host_user 0)"
    hardware: { gpu_model: "$(host_gpu_model 0)", vram_gb: $(host_vram_gb 0) }
    paths: { home: "/home/$(host_user 0)", project: "/home/$(host_user 0)/ugro", scripts: "/home/$(host_user 0)/ugro/scripts" }
  communication:
    backend: "c10d"
    master_port: 29500
    timeout_seconds: 120
EOF
    if [ "$n" -gt 1 ]; then echo "workers:"; else echo "workers: []"; fi
    for ((i = 1; i < n; i++)); do
      local u
      u=$(host_user $i)
      cat <<EOF
  - name: "$(host_name $i)"
    hostname: "$(host_name $i)"
    ip: "$(host_ip $i)"
    user: "$u"
    ssh_port: $SSH_PORT
    rank: $i
    hardware: { gpu_model: "$(host_gpu_model $i)", vram_gb: $(host_vram_gb $i) }
    paths: { home: "/home/$u", project: "/home/$u/ugro", scripts: "/home/$u/ugro/scripts" }
EOF
    done
    cat <<EOF
paths:
  project_root: "$REPO"
  scripts: "$REPO/scripts"
environment:
  manager: system
  python: /usr/bin/python3
ssh:
  identity_file: "$LAB/id_ed25519"
  known_hosts: "$LAB/known_hosts"
  use_agent: false
  connect_timeout_seconds: 3
EOF
  } >"$LAB/cluster.yaml"
  chmod 644 "$LAB/cluster.yaml"
}

# -------------------------------------------------------------------- verbs
cmd_up() {
  local n=$DEFAULT_HOSTS t0 i
  while [ $# -gt 0 ]; do
    case $1 in
      --hosts) n=${2:?--hosts needs a number}; shift 2 ;;
      --hosts=*) n=${1#--hosts=}; shift ;;
      *) die "up: unknown argument '$1' (usage: up [--hosts N])" ;;
    esac
  done
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 64 ] || die "up: --hosts must be 1..64"
  t0=$(date +%s%N)
  require_root; take_lock
  ensure_packages
  fix_torch_std

  # fewer hosts than last time: remove the extra ones
  local old
  old=$(host_count)
  for ((i = n; i < old; i++)); do down_host "$i"; done

  install -d -m 755 "$LAB" "$LAB/hosts"
  open_path_to_lab
  [ -e "$LAB/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ugro-lab-controller -f "$LAB/id_ed25519"
  chmod 600 "$LAB/id_ed25519"; chmod 644 "$LAB/id_ed25519.pub"
  echo "$n" >"$LAB/hosts.count"
  # a copy of the smoke-test script the host users can read
  install -m 644 "$LAB_SH_DIR/smoke_dist.py" "$LAB/smoke_dist.py"

  ensure_bridge
  write_netns_hosts "$n"
  for ((i = 0; i < n; i++)); do
    install -d -m 755 "$(host_dir $i)"
    ensure_host_net "$i"
    ensure_user "$i"
    write_gpu_conf "$i"
    write_kern_log "$i"
    install_stand_ins "$i"
    knobs_nominal "$i" # no CPU or memory limit
    write_sshd_config "$i"
    start_sshd "$i"
  done
  pin_neighbors "$n"
  write_known_hosts "$n"
  write_cluster_yaml "$n"
  # Slurm up on the lab hosts: its `slurm:` section stays in the rewritten cluster file.
  bash "$LAB_SH_DIR/slurm.sh" section
  for ((i = 0; i < n; i++)); do wait_port "$i"; host_cgroup_view "$i"; done
  local ms=$((($(date +%s%N) - t0) / 1000000))
  log "up: $n host(s) ready in $((ms / 1000)).$(printf '%03d' $((ms % 1000))) s; cluster file: $LAB/cluster.yaml"
}

down_host() { # every piece is optional: works after a failed or partial up
  local i=$1 h u
  h=$(host_name "$i"); u=$(host_user "$i")
  kill_host_processes "$i"
  knobs_remove "$i"
  ip netns del "$h" 2>/dev/null || true
  ip link del "$(host_veth "$i")" 2>/dev/null || true
  ip neigh del "$(host_ip "$i")" dev "$BRIDGE" 2>/dev/null || true
  rm -rf "/etc/netns/$h"
  if [ "$(getent passwd "$u" | cut -d: -f5)" = "$LAB_GECOS" ]; then
    userdel -r -f "$u" 2>/dev/null || true
  fi
  rm -rf "$(host_dir "$i")"
}

cmd_down() {
  require_root; take_lock
  # Slurm on the lab hosts first (its daemons live in their namespaces).
  if [ -d "$LAB/slurm" ]; then bash "$LAB_SH_DIR/slurm.sh" down || true; fi
  # All hosts we may have made: recorded count, plus anything left behind.
  local max=$(($(host_count) - 1)) x
  for x in $(ip netns list 2>/dev/null | awk '{print $1}') $(ls /etc/netns 2>/dev/null); do
    [[ $x =~ ^gpu([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -gt "$max" ] && max=${BASH_REMATCH[1]}
  done
  for x in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    [[ $x =~ ^ugv([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -gt "$max" ] && max=${BASH_REMATCH[1]}
  done
  for x in $(getent passwd | awk -F: -v g="$LAB_GECOS" '$5 == g {print $1}'); do
    [[ $x =~ ^w([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -gt "$max" ] && max=${BASH_REMATCH[1]}
  done
  [ "$max" -ge $((DEFAULT_HOSTS - 1)) ] || max=$((DEFAULT_HOSTS - 1))
  local i
  for ((i = 0; i <= max; i++)); do down_host "$i"; done
  ip link del "$BRIDGE" 2>/dev/null || true
  if command -v iptables >/dev/null 2>&1; then
    iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null || true
  fi
  rmdir /etc/netns 2>/dev/null || true
  rm -rf "$LAB"
  log "down: lab removed"
}

link_state() { # "up" when both ends of the host's link are up and it reaches its peers
  local i=$1
  if [ -n "$(ip netns exec "$(host_name "$i")" ip route show type unreachable 2>/dev/null)" ]; then
    echo peers-cut
    return
  fi
  ip link show "$(host_veth "$i")" 2>/dev/null | grep -q ',UP' &&
    ip netns exec "$(host_name "$i")" ip link show eth0 2>/dev/null | grep -q ',UP' &&
    { echo up; return; }
  echo down
}

cmd_status() {
  local n i ok=0 h ns sshd link gpu
  n=$(host_count)
  if [ "$n" -eq 0 ]; then echo "lab is down (no $LAB/hosts.count)"; return 1; fi
  printf '%-11s %-7s %-13s %-6s %-8s %-5s %-13s %-11s %s\n' HOST USER ADDRESS NETNS SSHD LINK GPU SPEED MEM
  for ((i = 0; i < n; i++)); do
    h=$(host_name $i)
    if ns_exists "$h"; then ns=yes; else ns=no; ok=1; fi
    if sshd_pid $i >/dev/null; then sshd=running; else sshd=stopped; ok=1; fi
    link=$(link_state $i); [ "$link" = up ] || ok=1
    gpu=$(gpu_mode $i); gpu=${gpu:-?}
    printf '%-11s %-7s %-13s %-6s %-8s %-5s %-13s %-11s %s\n' "$h" "$(host_user $i)" "$(host_ip $i)" "$ns" "$sshd" \
      "$link" "$gpu" "$(knob_speed_text $i)" "$(knob_mem_text $i)"
  done
  return $ok
}

cmd_stop_host() {
  require_root; take_lock
  local i; i=$(resolve_host "${1:?stop-host needs a host}")
  kill_host_processes "$i"
  log "stop-host: $(host_name "$i") stopped (port $SSH_PORT refuses connections)"
}

cmd_start_host() {
  require_root; take_lock
  local i; i=$(resolve_host "${1:?start-host needs a host}")
  start_sshd "$i"
  knobs_reapply "$i" # a speed or mem knob holds for the new sshd too
  host_cgroup_view "$i"
  wait_port "$i"
  log "start-host: $(host_name "$i") accepting ssh"
}

cmd_cut() {
  require_root; take_lock
  local i j; i=$(resolve_host "${1:?cut needs a host}")
  if [ "${2:-}" = --peers ]; then
    # Replies from H to its peers are dropped too, so their connects to H time out as well.
    for ((j = 0; j < $(host_count); j++)); do
      [ "$j" = "$i" ] || ip netns exec "$(host_name "$i")" ip route replace unreachable "$(host_ip "$j")/32"
    done
    log "cut: $(host_name "$i") cut off its peers (the controller still reaches it)"
    return
  fi
  ip link set "$(host_veth "$i")" down
  ip netns exec "$(host_name "$i")" ip link set eth0 down
  log "cut: $(host_name "$i") unplugged (connects time out)"
}

cmd_heal() {
  require_root; take_lock
  local i; i=$(resolve_host "${1:?heal needs a host}")
  ensure_host_net "$i"         # links up, address, default route (lost on down)
  pin_neighbors "$(host_count)" # taking eth0 down flushed its ARP pins
  wait_port "$i"
  log "heal: $(host_name "$i") reachable again"
}

GPU_MODES="ok|absent|old-driver|failing|xid|pcie-degraded|throttled"
cmd_gpu() {
  require_root; take_lock
  local i mode d
  i=$(resolve_host "${1:?usage: gpu H $GPU_MODES}")
  mode=${2:?usage: gpu H $GPU_MODES}
  [[ "|$GPU_MODES|" == *"|$mode|"* ]] || die "gpu: unknown mode '$mode' (modes: $GPU_MODES)"
  d=$(host_dir "$i")
  refresh_stand_ins "$i"
  sed -i "s/^mode=.*/mode=$mode/" "$d/gpu.conf"
  # the kernel log stand-in: an XID in `xid` mode, only the driver's load messages otherwise
  write_kern_log "$i" "$mode"
  # absent: really gone from PATH, so the shell says "command not found"
  if [ "$mode" = absent ]; then
    [ ! -e "$d/bin/nvidia-smi" ] || mv -f "$d/bin/nvidia-smi" "$d/bin/nvidia-smi.absent"
  else
    [ ! -e "$d/bin/nvidia-smi.absent" ] || mv -f "$d/bin/nvidia-smi.absent" "$d/bin/nvidia-smi"
  fi
  log "gpu: $(host_name "$i") -> $mode"
}

# gpus H "RTX 5070 Ti:12,RTX 4070:8": H's stand-in GPUs, indices 0..n-1 in that order. A name
# without a vendor gets NVIDIA's (RTX/GTX + digits: "NVIDIA GeForce "); memory.total is GB*1024
# MiB less 0.5% (12 GB: 12227 MiB, 8 GB: 8152), as real cards report a little under their size.
cmd_gpus() {
  local usage='usage: gpus H NAME:GB[,NAME:GB...] | gpus H default'
  require_root; take_lock
  local i spec mode entry name gb gpus=() items=()
  i=$(resolve_host "${1:?$usage}")
  spec=${2:?$usage}
  mode=$(gpu_mode "$i"); mode=${mode:-ok}
  if [ "$spec" != default ]; then
    IFS=, read -r -a items <<<"$spec"
    for entry in "${items[@]}"; do
      name=${entry%:*}; gb=${entry##*:}
      name=$(echo "$name" | sed 's/^ *//; s/ *$//')
      [[ $entry == *:* && $gb =~ ^[1-9][0-9]*$ && $gb -ge 1 && $gb -le 1024 ]] ||
        die "gpus: '$entry' is not NAME:GB (GB a whole number 1..1024); $usage"
      [[ -n $name && $name =~ ^[A-Za-z0-9\ ._()+-]+$ ]] || die "gpus: bad GPU name '$name' (letters, digits, ' ._()+-')"
      case $name in NVIDIA* | Tesla*) ;; RTX\ [0-9]* | GTX\ [0-9]*) name="NVIDIA GeForce $name" ;; *) name="NVIDIA $name" ;; esac
      gpus+=("$name|$((gb * 1024 - gb * 1024 / 200))")
    done
    [ ${#gpus[@]} -ge 1 ] && [ ${#gpus[@]} -le 16 ] || die "gpus: 1 to 16 GPUs; $usage"
  fi
  write_gpu_conf "$i" "$mode" "${gpus[@]}"
  # the host's stand-ins as in the repo (one from an older `up` would answer for GPU 0 only)
  refresh_stand_ins "$i"
  log "gpus: $(host_name "$i") -> $(grep -c '^memory_total' "$(host_dir "$i")/gpu.conf") GPU(s): $(
    sed -n 's/^name\(_[0-9]*\)\{0,1\}="\(.*\)"$/\2/p' "$(host_dir "$i")/gpu.conf" | paste -sd, -)"
}

ssh_opts() { # plain OpenSSH client, lab key, pinned host keys, nothing from ~/.ssh/config
  printf '%s\n' -F /dev/null -i "$LAB/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o UserKnownHostsFile="$LAB/known_hosts" -o StrictHostKeyChecking=yes -o ConnectTimeout=3
}

lab_ssh() { # lab_ssh INDEX CMD   (no pty, like the controller's exec channels)
  local i=$1; shift
  local opts; mapfile -t opts < <(ssh_opts)
  ssh "${opts[@]}" -T "$(host_user "$i")@$(host_ip "$i")" "$*"
}

cmd_ssh() {
  local i opts; i=$(resolve_host "${1:?ssh needs a host}"); shift
  mapfile -t opts < <(ssh_opts)
  exec ssh "${opts[@]}" "$(host_user "$i")@$(host_ip "$i")" "$@"
}

# End-to-end: every host answers over ssh with its own hostname and stand-in
# GPU, resolves its peers, and an N-node torchrun (c10d rendezvous on
# gpu-master, gloo all_reduce over eth0) completes.
# Not 29500 (cluster.yaml's master_port): UGRO's own runs may be using the lab.
SMOKE_PORT=29477

cmd_smoke() {
  local n i pids=() rc=0 out t0
  n=$(host_count)
  [ "$n" -gt 0 ] || die "the lab is not up"
  for ((i = 0; i < n; i++)); do
    lab_ssh "$i" 'echo "$(hostname) $(nvidia-smi --query-gpu=index,name,memory.total,memory.used,utilization.gpu,driver_version --format=csv,noheader,nounits) | gpu-master=$(getent hosts gpu-master | cut -d" " -f1)"' ||
      { echo "smoke: ssh to $(host_name $i) failed" >&2; rc=1; }
  done
  [ $rc -eq 0 ] || return $rc
  out=$(mktemp -d)
  t0=$(date +%s)
  for ((i = 0; i < n; i++)); do
    local is_host=0
    [ "$i" -eq 0 ] && is_host=1
    lab_ssh "$i" "cd /tmp && GLOO_SOCKET_IFNAME=eth0 timeout 120 torchrun --nnodes=$n --nproc_per_node=1 \
      --node_rank=$i --rdzv_backend=c10d --rdzv_endpoint=$(host_ip 0):$SMOKE_PORT --rdzv_id=smoke$$ \
      --rdzv_conf=is_host=$is_host,join_timeout=60 $LAB/smoke_dist.py" >"$out/$i.log" 2>&1 &
    pids+=($!)
  done
  for ((i = 0; i < n; i++)); do wait "${pids[$i]}" || { rc=1; echo "smoke: torchrun on $(host_name $i) failed:" >&2; cat "$out/$i.log" >&2; }; done
  if [ $rc -eq 0 ]; then
    grep -h '^smoke:' "$out"/*.log
    echo "smoke: torchrun on $n hosts passed in $(($(date +%s) - t0)) s"
  fi
  rm -rf "$out"
  return $rc
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

verb=${1:-}
[ $# -gt 0 ] && shift
case $verb in
  up) cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  stop-host) cmd_stop_host "$@" ;;
  start-host) cmd_start_host "$@" ;;
  cut) cmd_cut "$@" ;;
  heal) cmd_heal "$@" ;;
  gpu) cmd_gpu "$@" ;;
  gpus) cmd_gpus "$@" ;;
  speed) cmd_speed "$@" ;;
  mem) cmd_mem "$@" ;;
  ssh) cmd_ssh "$@" ;;
  smoke) cmd_smoke ;;
  slurm) exec bash "$LAB_SH_DIR/slurm.sh" "$@" ;; # Slurm on the lab hosts: tests/lab/slurm.sh
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
