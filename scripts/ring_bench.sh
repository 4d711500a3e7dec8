#!/usr/bin/env bash
# Runs `flashattn bench --impl ring` under mpirun on this machine only (shared memory and
# loopback), with one thread per rank: ./scripts/ring_bench.sh RANKS [bench flags...]
# e.g. ./scripts/ring_bench.sh 2 --seqlen 4096,8192 --causal --model --json bench-report/ring.jsonl
set -euo pipefail
ranks=${1:?usage: scripts/ring_bench.sh RANKS [flashattn bench flags]}
shift
build=${BUILD_DIR:-build}
if [ "$(id -u)" -eq 0 ]; then  # Open MPI refuses root unless told twice
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
exec mpirun -np "$ranks" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 \
  --mca btl self,vader --mca oob_tcp_if_include lo \
  "$build/flashattn" bench --impl ring --threads 1 "$@"
