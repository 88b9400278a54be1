#!/usr/bin/env bash
# The line's capture → verdict latency on the sim board without and with the plant side's
# load: the web page on ([http] on a free loopback port) and a client polling /api/state
# 20 times a second, plus /api/parts for what is new, as the page does. Prints, per run,
# the p50/p99/max of the results' latency.total_ms (capture → verdict), the fail-safe
# rejects (parts without a score: deadline missed, overload, ...) and the polls answered.
#
#   bench/plant-load.sh [PARTS] [ROUNDS]     default 600 parts (60 s a run), 1 round
#
# Rounds alternate (baseline, loaded, baseline, loaded, ...) so that a shared machine's
# noise falls on both. Needs python3 (standard library only) and the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
parts=${1:-600}
rounds=${2:-1}

cargo build --release -q
bin=$PWD/target/release/linesight
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# config NAME [http]: the sim board's config in $work/NAME/, the web page on if asked
config() {
  mkdir -p "$work/$1"
  sed -e "s#\.\./\.\./models/sim-flange#$PWD/models/sim-flange#" \
      -e 's/^progress_s = .*/progress_s = 0/' board/sim/linesight.toml > "$work/$1/linesight.toml"
  if [ "${2:-}" = http ]; then
    printf '\n[http]\nlisten = "127.0.0.1:0"\n' >> "$work/$1/linesight.toml"
  fi
}

# poll ADDR: GET /api/state 20 times a second until linesight stops answering; prints the count
poll() {
  python3 - "$1" <<'EOF'
import json, sys, time, urllib.request
addr, answered, since, misses = sys.argv[1], 0, 0, 0
for _ in range(20 * 3600):          # bounded: an hour at most
    t = time.monotonic()
    try:
        st = json.load(urllib.request.urlopen(f"http://{addr}/api/state", timeout=5))
        answered += 1
        misses = 0
        if st["last_seq"] > since:
            urllib.request.urlopen(f"http://{addr}/api/parts?since={since}", timeout=5).read()
            since = st["last_seq"]
    except Exception:
        misses += 1
        if misses >= 10:             # half a second without an answer: the run is over
            break
    time.sleep(max(0.0, 0.05 - (time.monotonic() - t)))
print(answered)
EOF
}

# stats RESULTS POLLS NAME: one line of figures
stats() {
  python3 - "$1" "$2" "$3" <<'EOF'
import json, math, sys
path, polls, name = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [json.loads(l) for l in open(path)]
lat = sorted(r["latency"]["total_ms"] for r in rows)
def q(p):  # nearest rank, as the run summary's histogram reads it
    return lat[max(0, math.ceil(p * len(lat)) - 1)]
failsafe = sum(1 for r in rows if r["score"] is None)
print(f"{name:<12} {len(rows):>6} {q(0.5):>8.2f} {q(0.99):>8.2f} {lat[-1]:>8.2f} {failsafe:>10} {polls:>7}")
EOF
}

echo "capture → verdict (results' latency.total_ms), $parts parts a run, sim board, release build"
printf '%-12s %6s %8s %8s %8s %10s %7s\n' run parts "p50 ms" "p99 ms" "max ms" fail-safe polls
for round in $(seq 1 "$rounds"); do
  name=baseline-$round
  config "$name"
  "$bin" run --config "$work/$name/linesight.toml" --max-parts "$parts" >/dev/null 2>"$work/$name/log"
  stats "$work/$name/results.jsonl" - baseline

  name=loaded-$round
  config "$name" http
  "$bin" run --config "$work/$name/linesight.toml" --max-parts "$parts" >/dev/null 2>"$work/$name/log" &
  pid=$!
  addr=
  for _ in $(seq 1 600); do   # up to 60 s for the model to warm and the page to listen
    addr=$(grep -ao 'web page on http://[^/]*' "$work/$name/log" | sed 's#.*http://##' || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$work/$name/log"; echo "no web page address in the log"; exit 1; }
  polls=$(poll "$addr")
  wait "$pid"
  pid=
  stats "$work/$name/results.jsonl" "$polls" "page+20/s"
done
