#!/usr/bin/env bash
# Measures end-to-end throughput of the local stack: starts it (without its
# gentle publisher) on a fresh data dir, runs the publisher for DURATION
# seconds with the given batch sizes, then waits until the reporter counts
# every event the gateway accepted. Prints events/s from the first POST to
# the last event stored.
#
#   hack/throughput.sh                          # the real publisher's defaults: 1,000..50,000 per POST, one POST/s
#   MIN_BATCH=50000 MAX_BATCH=50000 hack/throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-60}
MIN_BATCH=${MIN_BATCH:-1000}
MAX_BATCH=${MAX_BATCH:-50000}
data=$(mktemp -d /tmp/eventpipe-throughput-XXXXXX)
chmod 755 "$data"
trap 'kill -INT $stack 2>/dev/null; wait $stack 2>/dev/null; rm -rf "$data"' EXIT

make -s build
DATA_DIR=$data PUBLISH=false .bin/devstack >"$data/devstack.out" 2>&1 &
stack=$!
for _ in $(seq 120); do
  grep -q "Press Ctrl-C" "$data/devstack.out" 2>/dev/null && break
  kill -0 $stack 2>/dev/null || { cat "$data/devstack.out"; exit 1; }
  sleep 1
done

total() { curl -sf localhost:3003/reports/events | grep -o '"total":[0-9]*' | cut -d: -f2; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; publisher ${MIN_BATCH}..${MAX_BATCH} events per POST, one POST per second, ${DURATION}s"
start=$(date +%s.%N)
summary=$(timeout -s INT "$DURATION" env MIN_BATCH=$MIN_BATCH MAX_BATCH=$MAX_BATCH LOG_LEVEL=warn .bin/publisher || true)
echo "$summary"
accepted=$(echo "$summary" | awk '/^accepted/{print $2}')
# Events of requests cut off at the end may be stored too (at most once),
# so stored can end above accepted; give up after ten quiet minutes.
for _ in $(seq 3000); do [ "$(total)" -ge "$accepted" ] && break; sleep 0.2; done
end=$(date +%s.%N)
stored=$(total)
awk -v n="$stored" -v s="$start" -v e="$end" 'BEGIN { printf "stored %d events in %.1f s: %.0f events/s end to end\n", n, e - s, n / (e - s) }'
