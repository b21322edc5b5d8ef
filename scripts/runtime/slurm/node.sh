# UGRO: one node's part of a Slurm run. srun starts it once per node (the batch script writes it
# into the run directory, which every node sees).
# Usage (written into the run dir as slurm-node.sh): slurm-node.sh RDZV_ADDR PORT PYTHON NPROC JOIN_TIMEOUT [NAME=VALUE…] -- TRAINING_COMMAND…
#   the NAME=VALUE words are the job's own variables: exported last, right before torchrun
addr=$1 port=$2 py=$3 nproc=$4 join=$5
shift 5
node=${SLURM_NODEID:?not started by srun}
is_host=0
[ "$node" = 0 ] && is_host=1
# gloo/NCCL pick an interface from the hostname, wrong on multi-NIC hosts: the one that routes
# to the rendezvous address (on the first node itself, the one that owns it), as launch.sh does.
dev= prev=
for w in $(ip -o route get "$addr" 2>/dev/null); do
  [ "$prev" = dev ] && { dev=$w; break; }
  prev=$w
done
if [ -z "$dev" ] || [ "$dev" = lo ]; then
  dev=$(ip -o addr show to "$addr" 2>/dev/null | awk '{ print $2; exit }')
fi
if [ -n "$dev" ] && [ "$dev" != lo ]; then
  export GLOO_SOCKET_IFNAME="$dev" NCCL_SOCKET_IFNAME="$dev"
fi
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  export "$1"
  shift
done
[ $# -gt 0 ] && shift
exec "$py" -m torch.distributed.run --nnodes="$SLURM_JOB_NUM_NODES" --nproc_per_node="$nproc" --node_rank="$node" \
  --rdzv_backend=c10d --rdzv_endpoint="$addr:$port" --rdzv_id="$UGRO_RUN_ID" \
  --rdzv_conf="is_host=$is_host,join_timeout=$join" --max_restarts=0 --monitor_interval=0.5 \
  --no_python "$UGRO_RUN_DIR/rank.sh" "$@" >"$UGRO_RUN_DIR/torchrun-$node.log" 2>&1
