#!/usr/bin/env bash
# HTTP ingest load test: `pipehost serve` on loopback, wrk POSTing
# 100-line forex bodies to /v1/feeds/forex/records with an API key.
# Prints sustained requests/s, lines/s and p99 latency against the target
# (>= 20k requests/s, p99 < 20 ms), and where the producer's time went.
# Run through `./x bench-web`.
#
#   tests/support/bench-web.sh [--quick] [--debug] [--duration 20s] [--connections 64]
set -euo pipefail
cd "$(dirname "$0")/../.."

duration=20s connections=64 threads=1 profile=release quick=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) quick=1; duration=3s; connections=16 ;;
        --debug) profile=debug ;;
        --duration) duration="$2"; shift ;;
        --connections) connections="$2"; shift ;;
        --threads) threads="$2"; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if ! command -v wrk >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "==> installing wrk (Debian)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
    else
        echo "wrk is not installed (apt-get install wrk)" >&2
        exit 1
    fi
fi

target_dir="${CARGO_TARGET_DIR:-target}"
bin="$target_dir/$profile/pipehost"
[[ -x "$bin" ]] || { echo "$bin is missing: build it first" >&2; exit 1; }
plugins="$(pwd)/$target_dir/wasm32-wasip2/release"

work=$(mktemp -d "${TMPDIR:-/tmp}/pipehost-bench-web.XXXXXX")
server_pid=""
cleanup() {
    [[ -n "$server_pid" ]] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/pipeline.toml" <<TOML
[pipeline]
name = "bench"

[plugins]
dir = "$plugins"

# Ingest only: no generator, so the load is the HTTP path alone.
[feeds.forex]
parser = { plugin = "forex_parser" }

[stream]
shards = 4

[local]
data_dir = "state"

[web]
listen = "127.0.0.1:0"
keys_env = "BENCH_API_KEYS"
TOML

# 100 forex quotes, one per line.
python3 - "$work/post.lua" <<'PY'
import json, sys
pairs = ["EUR/USD", "GBP/USD", "USD/JPY", "USD/CHF", "AUD/USD", "USD/CAD", "NZD/USD", "EUR/GBP"]
lines = []
for i in range(100):
    bid = 1.08 + i * 0.0001
    lines.append(json.dumps({"pair": pairs[i % 8], "bid": round(bid, 5), "ask": round(bid + 0.0002, 5),
                             "ts": "2026-11-23T08:00:%02d.%03dZ" % (i % 60, i), "venue": "EBS"},
                            separators=(",", ":")))
body = "\n".join(lines) + "\n"
with open(sys.argv[1], "w") as f:
    f.write('wrk.method = "POST"\n')
    f.write('wrk.headers["Authorization"] = "Bearer bench-key"\n')
    f.write('wrk.headers["Content-Type"] = "text/plain"\n')
    f.write("wrk.body = %s\n" % json.dumps(body))
print("body: 100 lines, %d bytes" % len(body.encode()))
PY

BENCH_API_KEYS=bench-key "$bin" serve "$work/pipeline.toml" 2>"$work/server.log" >"$work/server.out" &
server_pid=$!
addr=""
for _ in $(seq 1 600); do
    addr=$(sed -n 's|.*web server on http://||p' "$work/server.log" | head -1)
    [[ -n "$addr" ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n "$addr" ]] || { echo "the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
echo "==> pipehost serve ($profile) on $addr; wrk -t$threads -c$connections -d$duration, POST 100 lines"

# Warm-up, then the measured run.
wrk -t1 -c4 -d1s -s "$work/post.lua" "http://$addr/v1/feeds/forex/records" >/dev/null
wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$work/post.lua" \
    "http://$addr/v1/feeds/forex/records" | tee "$work/wrk.out"

rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.out")
p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out")
non2xx=$(awk '/Non-2xx/ {print $5}' "$work/wrk.out")
metrics=$(curl -s "http://$addr/metrics" 2>/dev/null || python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://$addr/metrics').read().decode())")
ingested=$(echo "$metrics" | awk '$1 == "pipehost_records_ingested_total" {print $2}')
records=$(echo "$metrics" | awk '$1 == "pipehost_ingest_commit_records_sum" {print $2}')
commits=$(echo "$metrics" | awk '$1 == "pipehost_ingest_commit_records_count" {print $2}')
commit_secs=$(echo "$metrics" | awk '$1 == "pipehost_ingest_commit_seconds_sum" {print $2}')
# Commits slower than 10 ms (the histogram's bucket counts, cumulative).
slow=$(echo "$metrics" | awk -v total="${commits:-0}" '$1 == "pipehost_ingest_commit_seconds_bucket{le=\"0.01\"}" {print total - $2}')
# The server's own view: p99 of the ingest route's latency (handler and
# layers, without the client or the kernel), from the histogram buckets.
server_p99=$(echo "$metrics" | python3 -c '
import re, sys
b = [(float(m.group(1)), float(m.group(2))) for m in (re.match(r"pipehost_http_request_seconds_bucket\{route=\"/v1/feeds/\{feed\}/records\",le=\"([0-9.e+-]+)\"\} ([0-9.]+)", l) for l in sys.stdin) if m]
total = max((n for _, n in b), default=0)
print(next((f"<= {le * 1000:g} ms" for le, n in sorted(b) if n >= 0.99 * total), "?") if total else "?")' || echo "?")
echo
echo "requests/s: $rps   lines/s: $(python3 -c "print(f'{float(\"$rps\") * 100:.0f}')")   p99: $p99   non-2xx: ${non2xx:-0}"
echo "server-side p99 (access layer, histogram bucket): $server_p99"
echo "lines stored: $ingested as $records stream records (aggregated, one per request) in $commits commits"
# Where the time goes: the one writer's share of the run spent in stream.put.
python3 -c "import sys; r, c, s, slow = map(float, sys.argv[1:5]); print(f'group commits: {r/c:.1f} records each, {s:.1f}s in stream.put ({r/s:.0f} records/s while committing), {slow:.0f} commits over 10 ms')" \
    "${records:-0}" "${commits:-1}" "${commit_secs:-1}" "${slow:-0}" || true
python3 - "$rps" "$p99" "${non2xx:-0}" "$quick" <<'PY'
import sys
rps, p99, bad, quick = float(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
num = p99.rstrip("usm")
ms = float(num) * unit[p99[len(num):]]
met = rps >= 20000 and ms < 20
print(f"target >= 20000 requests/s with p99 < 20 ms: {'met' if met else 'NOT met'} ({rps:.0f} requests/s, p99 {ms:.2f} ms)")
if bad:
    print(f"error: {bad} responses were not 202", file=sys.stderr)
    sys.exit(1)
if quick and rps <= 0:
    sys.exit(1)
PY
