#!/bin/bash
# ab.sh: the sleep job through runner and ledger, several ip2a-ops binaries
# (or wrappers that set their environment) alternately, on the same
# database server: queued-run throughput and the machine's CPU per task.
# Prints each binary's rates and their median.
#
#   bench/tasks/ab.sh [-n RUNS] [-p PROCESSES] [-t TASKS] BIN...
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres bench/tasks/ab.sh -n 4 -p 2 /tmp/old /tmp/new
#
# It creates and drops a database named ab_tasks on DATABASE_URL's server.
set -euo pipefail
runs=3 procs=2 tasks=20000
while getopts n:p:t: o; do
	case $o in
	n) runs=$OPTARG ;; p) procs=$OPTARG ;; t) tasks=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-n RUNS] [-p PROCESSES] [-t TASKS] BIN..." >&2; exit 2; }
admin=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db=${admin%/*}/ab_tasks
sql() { psql -qtAX "$@"; }
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }

one() { # one BIN: prints "tasks/s cpu-us-per-task"
	sql "$admin" -c "DROP DATABASE IF EXISTS ab_tasks" -c "CREATE DATABASE ab_tasks" >/dev/null 2>&1
	"$1" --database-url "$db" migrate >/dev/null
	sql "$db" -c "INSERT INTO ip2a_ops.river_job (args, kind, max_attempts, priority, queue, state)
		SELECT json_build_object('v', 1, 'for', 0, 'job_name', 'ab-' || i), 'sleep', 5, 1, 'default', 'available'
		FROM generate_series(1, $tasks) i"
	local b0 pids=() b1
	b0=$(busy)
	for _ in $(seq "$procs"); do "$1" --database-url "$db" --log-level warn worker --concurrency 100 & pids+=($!); done
	until [ "$(sql "$db" -c "SELECT count(*) FROM ip2a_ops.river_job WHERE state = 'completed'")" = "$tasks" ]; do sleep 0.2; done
	b1=$(busy)
	kill -TERM "${pids[@]}"; wait "${pids[@]}" || true
	echo "$(sql "$db" -c "SELECT round($tasks / extract(epoch FROM max(finalized_at) - min(attempted_at))) FROM ip2a_ops.river_job") $(( (b1 - b0) * 10000 / tasks ))"
}

declare -A rate cpu
for _ in $(seq "$runs"); do
	for b in "$@"; do
		read -r r c < <(one "$b")
		rate[$b]+="$r " cpu[$b]+="$c "
	done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for b in "$@"; do
	echo "$b: tasks/s ${rate[$b]}(median $(echo "${rate[$b]}" | median)); machine CPU per task, µs: ${cpu[$b]}(median $(echo "${cpu[$b]}" | median))"
done
sql "$admin" -c "DROP DATABASE IF EXISTS ab_tasks" >/dev/null 2>&1
