#!/usr/bin/env bash
# linesight against bare ONNX Runtime and the Python peer, side by side (issue 18).
#
#   bash bench/compare.sh [MODEL_DIR] [THREADS] [PROVIDER]
#   bash bench/compare.sh models/sim-flange 1 cpu          # the defaults
#   bash bench/compare.sh models/magnetic-tile 1 cuda      # on the GPU machine
#
# On one model, one folder of frames, one provider and one intra-op thread count, it runs
#   1. bare ONNX Runtime: bench/peer.py --bare (one prepared input, run back to back)
#   2. the Python peer:   bench/peer.py (Pillow decode, numpy preprocessing, onnxruntime,
#                         threshold, per frame, back to back)
#   3. linesight bench --json (preprocess + inference back to back, in process)
#   4. linesight bench --line --json (the highest rate the whole pipeline holds with zero
#      fail-safe rejects; "not available" while this linesight has no --line)
# and prints one markdown table: throughput, p50 and p99, and the ratio to bare.
#
# Environment (all optional):
#   FRAMES=DIR      frames to use (default: `linesight synth` writes COUNT parts, SIZE px)
#   COUNT=300 SIZE=256 SEED=2
#   RUNS=1000       timed runs of bare, the peer (frames cycled) and bench
#   OUT=DIR         output folder (default target/bench/compare-<model>-<provider>-<threads>t-<time>)
#   DEADLINE_MS     decision.deadline_ms of the line (default 150, the sim board's, raised
#                   to 3x bare inference p99 where that is longer); reject.delay_ms = 2x it
#   LINE_ARGS       further arguments for `bench --line`
#   LINESIGHT=PATH  the binary (default target/release/linesight, built if missing)
#   VENV=DIR        the Python venv (default target/bench-venv; target/bench-venv-gpu for
#                   cuda), made on first use: numpy, pillow, onnxruntime==1.31.1 (or
#                   onnxruntime-gpu[cuda,cudnn]==1.31.1, which brings CUDA 13 and cuDNN)
#   PYTHON=PATH     a Python that already has numpy, pillow and onnxruntime(-gpu): no venv
#                   (a machine without a package index)
# Unless ORT_DYLIB_PATH is set, linesight loads the libonnxruntime of the venv's wheel, so
# both sides run the same ONNX Runtime library. Each step's JSON, the config, the frames
# (if made here) and table.md are left in the output folder.
set -euo pipefail
cd "$(dirname "$0")/.."

model=${1:-models/sim-flange}
threads=${2:-1}
provider=${3:-cpu}
[ -d "$model" ] || { [ -d "models/$model" ] && model=models/$model; }
[ -f "$model/model.toml" ] || { echo "compare.sh: $model has no model.toml" >&2; exit 2; }
model=$(cd "$model" && pwd)
case $provider in cpu|cuda) ;; *) echo "compare.sh: PROVIDER must be cpu or cuda, found $provider" >&2; exit 2 ;; esac
case $threads in ''|*[!0-9]*) echo "compare.sh: THREADS must be a number, found $threads" >&2; exit 2 ;; esac
name=$(basename "$model")
runs=${RUNS:-1000}
out=${OUT:-target/bench/compare-$name-$provider-${threads}t-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# ---- the binary and the venv
bin=${LINESIGHT:-target/release/linesight}
if [ ! -x "$bin" ]; then
  echo "== $bin is missing: cargo build --release"
  cargo build --release
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

if [ "$provider" = cuda ]; then
  venv=${VENV:-target/bench-venv-gpu}
  wheel="onnxruntime-gpu[cuda,cudnn]==1.31.1"
else
  venv=${VENV:-target/bench-venv}
  wheel=onnxruntime==1.31.1
fi
if [ -n "${PYTHON:-}" ]; then
  py=$(command -v "$PYTHON")
else
  py=$venv/bin/python
  if ! "$py" -c 'import numpy, PIL, onnxruntime' 2>/dev/null; then
    echo "== making the venv $venv ($wheel, numpy, pillow)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q "$wheel" numpy pillow
  fi
  py=$(cd "$venv/bin" && pwd)/python
fi
ortdir=$("$py" -c 'import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))')
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  lib=$(ls "$ortdir"/capi/libonnxruntime.so.* 2>/dev/null | head -1 || true)
  [ -n "$lib" ] && export ORT_DYLIB_PATH=$lib
fi
if [ "$provider" = cuda ]; then
  # CUDA and cuDNN from pip's nvidia-* packages, when the wheel brought them.
  for d in "$ortdir"/../nvidia/*/lib; do
    [ -d "$d" ] && LD_LIBRARY_PATH=$(cd "$d" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  done
  export LD_LIBRARY_PATH
fi

# ---- the frames
if [ -n "${FRAMES:-}" ]; then
  frames=$(cd "$FRAMES" && pwd)
else
  frames=$out/frames
  if [ ! -d "$frames" ]; then
    "$bin" synth --out "$frames" --count "${COUNT:-300}" --seed "${SEED:-2}" --size "${SIZE:-256}" > "$out/synth.txt"
    rm -rf "$frames/masks"  # the folder camera searches recursively: masks are not parts
  fi
fi
nframes=$(find "$frames" -type f \( -iname '*.png' -o -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.bmp' \) | wc -l)

{
  echo "# compare.sh $name, $provider, $threads intra-op thread(s), $(date -u +%FT%TZ)"
  echo "# $(uname -srm); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //')"
  [ "$provider" = cuda ] && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/# GPU: /' || true
  echo "# ONNX Runtime for linesight: ${ORT_DYLIB_PATH:-as linesight finds it}; Python: $("$py" -c 'import onnxruntime as o; print(o.__version__, o.__file__)')"
  echo "# frames: $frames ($nframes images); runs: $runs"
} | tee "$out/machine.txt"

peer=(--model "$model" --frames "$frames" --threads "$threads" --provider "$provider")

echo "== 1/4 bare ONNX Runtime"
"$py" bench/peer.py "${peer[@]}" --bare --runs "$runs" --json "$out/bare.json"

echo "== 2/4 Python peer"
"$py" bench/peer.py "${peer[@]}" --runs "$runs" --json "$out/peer.json"

# The line's config: the folder as a looping camera, the model, provider and threads.
deadline=${DEADLINE_MS:-$("$py" -c '
import json, math, sys
print(max(150, math.ceil(3 * json.load(open(sys.argv[1]))["inference_ms"]["p99"])))' "$out/bare.json")}
cat > "$out/linesight.toml" <<EOF
# made by bench/compare.sh
[camera]
kind = "folder"
path = "$frames"
parts_per_second = 10.0
loop = true

[model]
dir = "$model"

[runtime]
intra_threads = $threads
providers = ["$provider"]

[decision]
deadline_ms = $deadline
queue_depth = 4

[reject]
delay_ms = $((2 * deadline))
pulse_ms = 40

[reject.output]
kind = "simulated"
edge_log = "$out/reject-edges.jsonl"

[record]
results = "$out/results.jsonl"
progress_s = 0
EOF

echo "== 3/4 linesight bench"
rm -f "$out/bench.json"
"$bin" bench --config "$out/linesight.toml" --runs "$runs" --json "$out/bench.json" > "$out/bench.txt" 2>&1 \
  || echo "(linesight bench failed)" >> "$out/bench.txt"
cat "$out/bench.txt"

echo "== 4/4 linesight bench --line"
rm -f "$out/line.json"
# shellcheck disable=SC2086
if "$bin" bench --config "$out/linesight.toml" --runs "$runs" --line ${LINE_ARGS:-} --json "$out/line.json" > "$out/line.txt" 2>&1; then
  cat "$out/line.txt"
else
  echo "(bench --line failed or is not available: $(tail -n 3 "$out/line.txt" | tr '\n' ' '))"
fi

# ---- the table
"$py" - "$out" "$name" "$provider" "$threads" <<'EOF' | tee "$out/table.md"
import json, os, sys
out, name, provider, threads = sys.argv[1:5]
def load(f):
    try:
        with open(os.path.join(out, f)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
bare, peer, bench, line = (load(f + ".json") for f in ("bare", "peer", "bench", "line"))
base = bare["throughput_fps"]
rows = []
def row(tool, rate, unit, p50, p99, what):
    rows.append((tool, f"{rate:.1f} {unit}", f"{p50:.2f}", f"{p99:.2f}", f"{rate / base:.2f}", what))
row("ONNX Runtime, bare (peer.py --bare)", base, "fps", bare["inference_ms"]["p50"], bare["inference_ms"]["p99"],
    "run() on one prepared input")
row("Python peer (peer.py)", peer["throughput_fps"], "fps", peer["latency_ms"]["p50"], peer["latency_ms"]["p99"],
    "per frame: decode + preprocess + run + threshold")
if bench:
    if bench.get("bare_fps"):
        b = bench["bare_inference_ms"]
        row("ONNX Runtime, bare in linesight (bench)", bench["bare_fps"], "fps", b["p50"], b["p99"],
            "run() on one prepared input, in process")
    row("linesight bench", bench["throughput_fps"], "fps", bench["inference_ms"]["p50"], bench["inference_ms"]["p99"],
        f"fps: preprocess + inference; ms: inference (preprocess p50 {bench['preprocess_ms']['p50']:.2f})")
else:
    rows.append(("linesight bench", "failed", "", "", "", "see bench.txt"))
l = (line or {}).get("line")
if l and l.get("rate_parts_per_s"):
    row("linesight bench --line", l["rate_parts_per_s"], "parts/s", l["p50_total_ms"], l["p99_total_ms"],
        f"highest rate held, capture -> verdict (its own bare {l['bare_fps']:.1f} fps, ratio {l['ratio']:.2f})")
elif l:
    rows.append(("linesight bench --line", "no rate held", "", "", "", "see line.json's trials"))
else:
    rows.append(("linesight bench --line", "not available", "", "", "", "see line.txt"))
print(f"{name}, {provider}, {threads} intra-op thread(s)\n")
print("| tool | throughput | p50 ms | p99 ms | ratio to bare | measures |")
print("| --- | ---: | ---: | ---: | ---: | --- |")
for r in rows:
    print("| " + " | ".join(r) + " |")
if l and l.get("rate_parts_per_s") and l.get("inference_p99_ms"):
    rate, p99, inf99 = l["rate_parts_per_s"], l["p99_total_ms"], l["inference_p99_ms"]
    print(f"\ngoals: rate >= 0.95 x bare: {rate / base:.2f} x ({'met' if rate >= 0.95 * base else 'not met'}); "
          f"capture -> verdict p99 <= 1.5 x inference p99: {p99:.2f} ms against {inf99:.2f} ms, "
          f"{p99 / inf99:.2f} x ({'met' if p99 <= 1.5 * inf99 else 'not met'})")
EOF
echo
echo "compare.sh: JSON of each step, the config and table.md in $out"
