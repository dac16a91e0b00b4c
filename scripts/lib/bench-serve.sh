# Shared by the benchmarks (sourced, not run): builds the release binary
# and runs `paddock serve` with a RUNNING gemma3:270m instance.
#
# bench_build       builds paddock as the quick start does (release,
#                   target-cpu=native, no AMX) into
#                   $CACHE/target-paddock and sets PADDOCK and STORE
# bench_serve PORT [DATA]
#                   runs `$PADDOCK serve` on 127.0.0.1:PORT with its data in
#                   DATA (default $WORK/data; extra environment from the
#                   caller), deploys gemma3:270m (2 vCPU, 4 GiB) and waits
#                   for it; sets P, SERVE_PID, TOKEN, KEY and ID
# Needs CACHE, WORK, PIDS (an array) and log() from the caller.

bench_build() {
  # Its own target dir: building the whole `paddock` package unifies
  # dependency features differently from bench-runtime's build, and sharing
  # one dir would rebuild llama.cpp at every switch.
  # The quick start's flags (scripts/lib/native-build.sh).
  log "building paddock (release, target-cpu=native, no AMX: the quick start's build)"
  . scripts/lib/native-build.sh
  native_build_clean "$CACHE/target-paddock"
  (native_build_flags && CARGO_TARGET_DIR="$CACHE/target-paddock" cargo build -q --release -p paddock)
  PADDOCK="$CACHE/target-paddock/release/paddock"
  STORE="$(dirname "$PADDOCK_TEST_MODEL")/store"
  "$PADDOCK" models list --data-dir "$STORE" | grep -q '^gemma3:270m ' ||
    "$PADDOCK" models import "$PADDOCK_TEST_MODEL" --name gemma3:270m --data-dir "$STORE" >&2
}

bench_json() { # field: reads JSON on stdin, prints one top-level field
  python3 -c 'import json,sys;print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

bench_serve() {
  local port=$1 data=${2:-$WORK/data} st=""
  P="http://127.0.0.1:$port"
  # The sectioned names, and the flat ones for a baseline build from before
  # the configuration had sections (the current build warns and uses them).
  PADDOCK_IDENTITY__ADMIN_EMAIL=bench@example.com PADDOCK_IDENTITY__ADMIN_PASSWORD='Bench-pass1!' \
    PADDOCK_ADMIN_EMAIL=bench@example.com PADDOCK_ADMIN_PASSWORD='Bench-pass1!' PADDOCK_LOG=warn \
    PADDOCK_DRIVER__MODELS_DIR="$STORE" PADDOCK_MODELS_DIR="$STORE" "$PADDOCK" serve --listen "127.0.0.1:$port" --data-dir "$data" \
    >"$data.log" 2>&1 &
  PIDS+=($!)
  SERVE_PID=$!
  for _ in $(seq 1 100); do curl -sf "$P/healthz" >/dev/null && break; sleep 0.1; done
  TOKEN=$(curl -sf "$P/api/auth/login" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"Bench-pass1!"}' | bench_json access_token)
  KEY=$(curl -sf "$P/api/keys" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"name":"bench"}' | bench_json secret)
  ID=$(curl -sf "$P/api/models/deploy" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"model_name":"gemma3:270m","fargate_resources":{"cpu":2048,"memory":4096},"idle_timeout_minutes":0}' |
    bench_json instance_id)
  for _ in $(seq 1 600); do
    st=$(curl -sf "$P/api/instances/$ID" -H "Authorization: Bearer $TOKEN" | bench_json status)
    [ "$st" = RUNNING ] && break
    sleep 0.2
  done
  [ "$st" = RUNNING ] || { log "instance did not start"; cat "$data.log" >&2; exit 1; }
}

# Stops what the benchmark started: its processes, and the instance's
# runtime (in its own process group, found by its driver root).
bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  pkill -f "PADDOCK_DRIVER_ROOT=$WORK" 2>/dev/null || true
  for pid in $(grep -l "PADDOCK_DRIVER_ROOT=$WORK" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); do
    kill "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
