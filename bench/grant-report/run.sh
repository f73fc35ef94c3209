#!/usr/bin/env bash
# grant-report benchmark: ip2a-ops grant-report vs openpyxl write-only on a
# grant with 100K enrollments and 200K expenses. Needs /usr/bin/time and
# Debian's python3-openpyxl and python3-psycopg2:
#   apt-get install -y time python3-openpyxl python3-psycopg2
# Extra arguments go to the program, e.g. -database-url URL -runs 3.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec go run ./bench/grant-report "$@"
