#!/usr/bin/env bash
# Export of a ledger's feed into PostgreSQL against the yardstick of a plain COPY of as many NDJSON lines
# into a one-column table, on the same throwaway server (127.0.0.1, fsync off), in one session.
#
#   Benchmarks/scripts/export-vs-copy.sh EVENTS.ndjson [RUNS]
#
# Builds the release tools, imports the file into a fresh ledger (noSync), then runs RUNS pairs (default 3):
# COPY of the file into a fresh table, and `usage-ledger-export --no-hourly` into fresh tables. Prints each
# pair and the median of the ratios. Run as root (the cluster runs as the postgres user).
set -euo pipefail
file=$(realpath "$1")
runs=${2:-3}
cd "$(dirname "$0")/../.."
swift build -c release --product usage-ledger >/dev/null
swift build -c release --product usage-ledger-export >/dev/null
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d /tmp/export-bench-XXXXXX)
stop() { runuser -u postgres -- "$bin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true; }
trap 'stop; rm -rf "$work"' EXIT
chown postgres "$work"
runuser -u postgres -- "$bin/initdb" -D "$work/data" -U postgres -A trust >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
runuser -u postgres -- "$bin/pg_ctl" -D "$work/data" -l "$work/log" -w \
    -o "-p $port -k $work -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
sql() { psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -qAt -c "$1"; }
.build/release/usage-ledger append "$file" --db "$work/ledger" --durability noSync >/dev/null || true
lines=$(wc -l < "$file")
events=$(.build/release/usage-ledger stats --db "$work/ledger" --format json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["events_stored"])')
echo "file: $lines lines; ledger: $events events"
ratios=()
for run in $(seq 1 "$runs"); do
    sql "DROP TABLE IF EXISTS lines; CREATE TABLE lines (line text)"
    start=$(date +%s.%N)
    # CSV with quote and delimiter characters that JSON text never holds: each line lands whole.
    sql "\\copy lines FROM '$file' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
    copy=$(echo "$(date +%s.%N) - $start" | bc)
    sql "DROP TABLE IF EXISTS usage_events, usage_cursors, usage_hourly, usage_gaps, usage_export_state"
    start=$(date +%s.%N)
    .build/release/usage-ledger-export --db "$work/ledger" --to "postgresql://postgres@127.0.0.1:$port/postgres" \
        --cell bench --no-hourly --format json >/dev/null 2>&1
    export=$(echo "$(date +%s.%N) - $start" | bc)
    ratio=$(echo "scale=2; $export / $copy" | bc)
    ratios+=("$ratio")
    echo "pair $run: COPY ${copy} s, export ${export} s, ratio ${ratio}"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print "median ratio (export / COPY): " a[int((NR+1)/2)]}'
