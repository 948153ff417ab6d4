#!/usr/bin/env bash
# Multi-node DeepSpeed launch of one training stage, two ways:
#   ssh (bare metal): HOSTFILE=infra/deepspeed/hostfile infra/deepspeed/launch.sh vocab --data M ... --out DIR
#   Kubernetes (an Indexed Job, one pod per node, no ssh between pods):
#     NNODES=2 MASTER_ADDR=trainer-0.trainer NODE_RANK=$JOB_COMPLETION_INDEX infra/deepspeed/launch.sh integrate ...
# The launcher runs `python -m training train STAGE ...` on every rank and appends --local_rank=N.
set -euo pipefail
STAGE=${1:?usage: launch.sh vocab|integrate TRAINING_OPTIONS...}
shift
GPUS=${GPUS:-8}
NNODES=${NNODES:-1}
MASTER_PORT=${MASTER_PORT:-29500}
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false HF_HUB_OFFLINE=1

args=(--num_gpus "$GPUS" --master_port "$MASTER_PORT")
if [ -n "${NODE_RANK:-}" ]; then
  # One launcher per pod: no ssh, the pod's rank and the rendezvous address come from the Job.
  args+=(--no_ssh --num_nodes "$NNODES" --node_rank "$NODE_RANK" --master_addr "${MASTER_ADDR:?set MASTER_ADDR}")
elif [ -n "${HOSTFILE:-}" ]; then
  args+=(--hostfile "$HOSTFILE" --num_nodes "$NNODES")
  [ -n "${MASTER_ADDR:-}" ] && args+=(--master_addr "$MASTER_ADDR")
fi
exec deepspeed "${args[@]}" --module training train "$STAGE" --deepspeed zero2 "$@"
