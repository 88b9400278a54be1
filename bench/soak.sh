#!/usr/bin/env bash
# A soak of the sim line: PARTS parts at RATE parts/s with the metrics file and saving of
# rejects on (the oldest images removed beyond 64 MiB, so that the disk holds), the
# process's resident memory sampled every 10 s. Prints the memory at the first sample
# after warm-up and at the end, its growth, the fail-safe rejects (parts without a score:
# deadline missed, overload, ...), and what the record reported (record_errors, backlog).
#
#   bench/soak.sh [PARTS] [RATE] [OUT]     default 200000 parts at 10 parts/s, OUT a temp folder
#
# The goal (issue 21): resident memory growth under 5 MB over 200,000 parts and a record
# that keeps up (no record_errors, no fail-safe reject for the record's sake). Pick the
# highest RATE the machine holds (`linesight bench` says the model's throughput). Needs
# python3 (standard library only) and the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
parts=${1:-200000}
rate=${2:-10}
out=${3:-$(mktemp -d)}
mkdir -p "$out"

cargo build --release -q
bin=$PWD/target/release/linesight
sed -e "s#\.\./\.\./models/sim-flange#$PWD/models/sim-flange#" \
    -e 's/^progress_s = .*/progress_s = 0/' \
    -e "s/^parts_per_second = .*/parts_per_second = $rate/" board/sim/linesight.toml > "$out/linesight.toml"
cat >> "$out/linesight.toml" <<EOF
metrics_file = "linesight.prom"
save = "rejects"
save_dir = "images"
keep_mb = 64
EOF
rm -f "$out"/results*.jsonl "$out/linesight.seq" "$out/linesight.journal"

echo "soak: $parts parts at $rate parts/s ($(awk -v n="$parts" -v r="$rate" 'BEGIN { printf "%.0f", n / r / 60 }') min), folder $out"
"$bin" run --config "$out/linesight.toml" --max-parts "$parts" > "$out/summary.txt" 2> "$out/log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
echo "seconds,rss_kib,parts" > "$out/rss.csv"
start=$(date +%s)
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
  done_parts=$( (cat "$out"/results*.jsonl 2>/dev/null || true) | wc -l)
  [ -n "$rss" ] && echo "$(( $(date +%s) - start )),$rss,$done_parts" >> "$out/rss.csv"
  sleep 10
done
wait "$pid" || { tail "$out/log"; echo "soak: linesight exited with an error"; exit 1; }
trap - EXIT

python3 - "$out" "$parts" <<'EOF'
import csv, glob, json, sys
out, parts = sys.argv[1], int(sys.argv[2])
rows = list(csv.DictReader(open(f"{out}/rss.csv")))
# The first sample with parts recorded: the model is warm and the line running.
warm = next((r for r in rows if int(r["parts"]) > 0), rows[0])
end = rows[-1]
results = [json.loads(l) for f in sorted(glob.glob(f"{out}/results*.jsonl")) for l in open(f)]
failsafe = sum(1 for r in results if r["score"] is None)
by_reason = {}
for r in results:
    by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
summary = open(f"{out}/summary.txt").read()
print(f"parts recorded      {len(results)} of {parts}")
print(f"reasons             {by_reason}")
print(f"fail-safe rejects   {failsafe}")
print(f"resident memory     {int(warm['rss_kib']) / 1024:.1f} MiB at {warm['seconds']} s ({warm['parts']} parts), "
      f"{int(end['rss_kib']) / 1024:.1f} MiB at {end['seconds']} s ({end['parts']} parts), "
      f"max {max(int(r['rss_kib']) for r in rows) / 1024:.1f} MiB")
print(f"growth              {(int(end['rss_kib']) - int(warm['rss_kib'])) / 1024:+.1f} MiB")
print("record              " + next((l for l in summary.splitlines() if l.startswith("record_errors")),
                                   "no record_errors, nothing waiting for storage"))
EOF
