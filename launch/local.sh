#!/usr/bin/env bash
# Start N JAX processes on this machine, wired together with gloo CPU collectives.
#
#   launch/local.sh N [-- ARGS for atm.main]
#   e.g. ATM_LOCAL_DEVICES=4 launch/local.sh 2 -- --config=configs/tiny_mlm.py --workdir=/tmp/mp
#
# ATM_LOCAL_DEVICES: fake CPU devices per process (default 1). ATM_PORT: coordinator port.
# Output lines are prefixed with the process id. When a process fails, the launcher names it and
# stops the others (SIGTERM, then SIGKILL after ATM_STOP_GRACE seconds, default 20): a run whose
# peer is gone cannot take another step, and JAX alone would only notice at its heartbeat timeout.
# Exits with the first failing process's code (0 when all succeed). SIGTERM/SIGINT to the launcher
# are passed to every process (each saves a checkpoint at its current step; see atm/preemption.py).
set -euo pipefail
n=${1:?usage: launch/local.sh N -- ARGS}
shift
[ "${1:-}" = "--" ] && shift
port=${ATM_PORT:-$((20000 + RANDOM % 20000))}
devices=${ATM_LOCAL_DEVICES:-1}
python=${PYTHON:-python}
grace=${ATM_STOP_GRACE:-20}
declare -A rank_of=()
pids=()
for ((i = 0; i < n; i++)); do
  ATM_COORDINATOR="127.0.0.1:${port}" ATM_NUM_PROCESSES="$n" ATM_PROCESS_ID="$i" ATM_CPU_COLLECTIVES=gloo \
  JAX_PLATFORMS=cpu XLA_FLAGS="--xla_force_host_platform_device_count=${devices}" \
    "$python" -m atm.main "$@" > >(sed -u "s/^/[p$i] /") 2> >(sed -u "s/^/[p$i] /" >&2) &
  pids+=($!)
  rank_of[$!]=$i
done
forward() { kill -s "$1" "${pids[@]}" 2>/dev/null || true; }
trap 'forward TERM' TERM
trap 'forward INT' INT

describe() {  # exit code → words
  if (($1 > 128)); then echo "code $1 (signal $(kill -l $(($1 - 128)) 2>/dev/null || echo $(($1 - 128))))"; else echo "code $1"; fi
}

status=0
running=("${pids[@]}")
while ((${#running[@]} > 0)); do
  code=0
  unset done_pid
  wait -n -p done_pid "${running[@]}" || code=$?
  [ -z "${done_pid:-}" ] && continue  # a trapped signal interrupted the wait
  left=()
  for pid in "${running[@]}"; do [ "$pid" != "$done_pid" ] && left+=("$pid"); done
  running=("${left[@]+"${left[@]}"}")
  if ((code != 0 && status == 0)); then
    status=$code
    echo "launch/local.sh: process ${rank_of[$done_pid]} of $n exited with $(describe "$code"); stopping the" \
         "other processes" >&2
    if ((${#running[@]} > 0)); then
      kill -TERM "${running[@]}" 2>/dev/null || true
      ( sleep "$grace"; kill -KILL "${running[@]}" 2>/dev/null || true ) &
    fi
  fi
done
exit "$status"
