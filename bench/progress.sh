#!/usr/bin/env bash
# Does drawing progress cost anything? Backs up the same database with the
# live display at a pseudo-terminal (script(1)) and with --progress never
# and no terminal, alternating, and prints each run's wall time.
#   DATABASE_URL=postgres://... bench/progress.sh [runs] [ip2a-ops binary]
set -euo pipefail
runs=${1:-3}
bin=${2:-./ip2a-ops}
: "${DATABASE_URL:?set DATABASE_URL to the database to back up}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$bin" migrate >/dev/null
for i in $(seq "$runs"); do
  rm -rf "$dir/a"; mkdir "$dir/a"
  s=$(date +%s.%N)
  script -qfec "$bin backup --storage file://$dir/a" /dev/null >/dev/null
  e=$(date +%s.%N)
  printf 'run %d  display at a pty  %6.2f s\n' "$i" "$(echo "$e - $s" | bc)"
  rm -rf "$dir/a"; mkdir "$dir/a"
  s=$(date +%s.%N)
  "$bin" backup --storage "file://$dir/a" --progress never >/dev/null 2>&1
  e=$(date +%s.%N)
  printf 'run %d  no display        %6.2f s\n' "$i" "$(echo "$e - $s" | bc)"
done
