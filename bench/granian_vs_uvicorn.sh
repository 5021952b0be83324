#!/usr/bin/env bash
# `modelyard serve` with uvicorn, then with granian (`--http-server granian`), each driven by wrk
# POSTing the same V2 JSON body (bench/models.py: logreg, one row of 20 floats) over N keep-alive
# connections; prints req/s, p50 and p99 for both.
#
#   bench/granian_vs_uvicorn.sh                      # 10 s per server after a 2 s warm-up, 64 conns
#   DURATION=2 WARMUP=0 bench/granian_vs_uvicorn.sh  # smoke run
#
# Env: DURATION, WARMUP (seconds), CONNECTIONS, MODEL (logreg | forest), PYTHON (default .venv/bin/python),
# CONNECTION_CLOSE=1 (a new connection per request: wrk sends "Connection: close"),
# SERVER_CPUS / CLIENT_CPUS (taskset lists, default 0 and 1 as bench/run.py; set both empty to
# not pin). Needs wrk (apt-get install wrk), skl2onnx (dev extra) and granian (granian extra).
# Run it on an otherwise idle machine: the numbers are only comparable within one run.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
MODEL="${MODEL:-logreg}"  # or forest (bench/models.py): ~10x the CPU per request
SERVER_CPUS="${SERVER_CPUS-0}"
CLIENT_CPUS="${CLIENT_CPUS-1}"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
pin() {  # pin CPUS: the command prefix that runs on CPUS (none without taskset or a list)
    if [[ -n "$1" ]] && command -v taskset >/dev/null; then echo "taskset -c $1"; fi
}
read -r -a SERVER_PIN <<<"$(pin "$SERVER_CPUS")"
read -r -a CLIENT_PIN <<<"$(pin "$CLIENT_CPUS")"
CLOSE_ARGS=()
if [[ "${CONNECTION_CLOSE:-0}" == 1 ]]; then CLOSE_ARGS=(-H "Connection: close"); fi

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# The model and the body, exactly as bench/run.py builds them.
"$PYTHON" "$ROOT/bench/models.py" --onnx "$WORK" --models "$MODEL" >/dev/null
"$PYTHON" -m modelyard push "$WORK/$MODEL.onnx" --name "$MODEL" --alias production \
    --registry "$WORK/registry" >/dev/null
"$PYTHON" - "$WORK/post.lua" <<'PY'
import sys

import orjson

sys.path.insert(0, "bench")
from models import v2_request  # noqa: E402

from modelyard.bench.wrk import lua_script  # noqa: E402

open(sys.argv[1], "w").write(lua_script(orjson.dumps(v2_request())))
PY

run_one() {  # run_one SERVER: start it, warm up, measure, stop; prints one result row
    local server="$1" log="$WORK/$1.log" port="" deadline=$((SECONDS + 120))
    # taskset execs the server, so $! is the server's own pid (SIGTERM goes to it)
    "${SERVER_PIN[@]}" "$PYTHON" -m modelyard serve --registry "$WORK/registry" --http-port 0 \
        --grpc-port -1 --preload "$MODEL" --http-server "$server" >"$log" 2>&1 &
    SERVER_PID=$!
    until grep -qs "modelyard ready" "$log"; do  # poll the log, with a deadline
        if ! kill -0 "$SERVER_PID" 2>/dev/null || ((SECONDS > deadline)); then
            echo "$server did not become ready:" >&2; cat "$log" >&2; exit 1
        fi
        sleep 0.1
    done
    port="$(grep -oE 'modelyard listening http=[0-9]+' "$log" | grep -oE '[0-9]+$')"
    local url="http://127.0.0.1:$port/v2/models/$MODEL/infer"
    if ((WARMUP > 0)); then
        "${CLIENT_PIN[@]}" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "${CLOSE_ARGS[@]}" -s "$WORK/post.lua" "$url" >/dev/null
    fi
    "${CLIENT_PIN[@]}" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "${CLOSE_ARGS[@]}" -s "$WORK/post.lua" "$url" \
        >"$WORK/$server.wrk"
    kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || { echo "$server exited with $?" >&2; exit 1; }
    SERVER_PID=""
    "$PYTHON" - "$server" "$WORK/$server.wrk" <<'PY'
import sys

from modelyard.bench.wrk import parse_wrk_output

s = parse_wrk_output(open(sys.argv[2]).read())
ms = 1000.0
print(f"{sys.argv[1]:<8} {s.rps:>10.0f} {s.p50_s * ms:>9.2f} {s.p99_s * ms:>9.2f} {s.errors:>7d}")
PY
}

echo "wrk -t1 -c$CONNECTIONS, ${DURATION} s after ${WARMUP} s warm-up; server cpus '$SERVER_CPUS'," \
    "client cpus '$CLIENT_CPUS'; $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %10s %9s %9s %7s\n' server "req/s" "p50 ms" "p99 ms" errors
for server in uvicorn granian; do
    run_one "$server"
done
