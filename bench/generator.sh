#!/usr/bin/env bash
# Generator benchmark: fixture.Generate's audit_logs COPY vs a server-side
# INSERT ... SELECT generate_series of the same rows. Extra arguments go to
# the program, e.g. -database-url URL -audit-rows 2000000. Without a URL
# (flag or DATABASE_URL) it starts a throwaway cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./bench/generate "$@"
