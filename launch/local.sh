#!/usr/bin/env bash
# Start N JAX processes on this machine, wired together with gloo CPU collectives.
#
#   launch/local.sh N [-- ARGS for atm.main]
#   e.g. ATM_LOCAL_DEVICES=4 launch/local.sh 2 -- --config=configs/tiny_mlm.py --workdir=/tmp/mp
#
# ATM_LOCAL_DEVICES: fake CPU devices per process (default 1). ATM_PORT: coordinator port.
# Exits non-zero if any process fails; output lines are prefixed with the process id.
set -euo pipefail
n=${1:?usage: launch/local.sh N -- ARGS}
shift
[ "${1:-}" = "--" ] && shift
port=${ATM_PORT:-$((20000 + RANDOM % 20000))}
devices=${ATM_LOCAL_DEVICES:-1}
python=${PYTHON:-python}
pids=()
for ((i = 0; i < n; i++)); do
  ATM_COORDINATOR="127.0.0.1:${port}" ATM_NUM_PROCESSES="$n" ATM_PROCESS_ID="$i" ATM_CPU_COLLECTIVES=gloo \
  JAX_PLATFORMS=cpu XLA_FLAGS="--xla_force_host_platform_device_count=${devices}" \
    "$python" -m atm.main "$@" > >(sed -u "s/^/[p$i] /") 2> >(sed -u "s/^/[p$i] /" >&2) &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
exit "$status"
