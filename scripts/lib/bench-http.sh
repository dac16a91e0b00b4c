# Shared by the HTTP benchmarks (sourced, not run): the measurements of one
# path to a model server, named by a key of the arrays below.
#
#   URL[k], KEYS[k], PID[k]  the base URL, the API key ("" for none) and the
#                            proxy's pid ("" for none) of path k
#   bench_http_init          writes the wrk script (call once, after WORK is set)
#   run_wrk k                requests/s (wrk -c$CONNS) and the proxy's CPU per
#                            request into RPS_L[k] and CPU_L[k], and p50/p99 at
#                            one connection into P50_L[k], P99_L[k] (appended,
#                            one value per call, for medians over rounds)
#   ttfb k                   median time to the first streamed chunk of
#                            /api/generate into TTFB[k]
# Needs WORK, CONNS, SECS and PADDOCK_TEST_PYTHON.

bench_http_init() {
cat >"$WORK/show.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"gemma3:270m"}'
wrk.headers["Content-Type"] = "application/json"
if os.getenv("BENCH_KEY") ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %.1f %.3f %.3f\n", summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -gA URL KEYS PID RPS_L P50_L P99_L CPU_L TTFB
HZ=$(getconf CLK_TCK)
run_wrk() { # path
  local url=${URL[$1]} key=${KEYS[$1]} pid=${PID[$1]} line n rps p50 p99 c0 c1
  BENCH_KEY="$key" wrk -t1 -c"$CONNS" -d2s -s "$WORK/show.lua" "$url/api/show" >/dev/null
  # Throughput: $CONNS connections keep every path saturated.
  [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
  line=$(BENCH_KEY="$key" wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$WORK/show.lua" "$url/api/show" | grep '^RESULT')
  [ -n "$pid" ] && c1=$(cpu_ticks "$pid")
  read -r _ n rps _ _ <<<"$line"
  RPS_L[$1]+="$rps "
  [ -n "$pid" ] && CPU_L[$1]+="$(python3 -c "print(($c1 - $c0) / $HZ * 1e6 / $n)") "
  # Latency: one connection, so the percentiles show each request's own
  # cost rather than queueing on two shared cores.
  line=$(BENCH_KEY="$key" wrk -t1 -c1 -d"${SECS}s" -s "$WORK/show.lua" "$url/api/show" | grep '^RESULT')
  read -r _ _ _ p50 p99 <<<"$line"
  P50_L[$1]+="$p50 "; P99_L[$1]+="$p99 "
}
ttfb() { # path
  TTFB[$1]=$("$PADDOCK_TEST_PYTHON" - "${URL[$1]}" "${KEYS[$1]}" <<'PY'
import json, sys, time, statistics, httpx
url, key = sys.argv[1], sys.argv[2]
headers = {"Authorization": "Bearer " + key} if key else {}
body = {"model": "gemma3:270m", "prompt": "Hello", "options": {"num_predict": 4, "temperature": 0}}
samples = []
with httpx.Client(timeout=30) as c:
    for i in range(25):
        t = time.perf_counter()
        with c.stream("POST", url + "/api/generate", json=body, headers=headers) as r:
            first = True
            for _ in r.iter_raw():
                if first:
                    samples.append((time.perf_counter() - t) * 1000)
                    first = False
samples = samples[5:]
print("%.2f" % statistics.median(samples))
PY
)
}
