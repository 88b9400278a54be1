#!/usr/bin/env bash
# GPU figures for docs/gpu.md: the CUDA provider against the CPU provider on one machine.
#
#   ORT_DYLIB_PATH=/path/to/onnxruntime-gpu/libonnxruntime.so.1.31.1 \
#   LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib \
#   bash bench/gpu.sh [OUT_DIR]
#
# Per shipped model: `linesight bench` on cpu and cuda (batch-1 latency, throughput,
# memory; frames from the synthetic line whatever the model). For sim-flange: the full pipeline on the synthetic line (capture -> verdict latency), the
# score drift (`eval --compare-providers cpu,cuda`), and the TensorRT fallback messages
# under both policies (TensorRT's own libraries are absent here). Needs a built
# target/release/linesight, or LINESIGHT=path.
set -uo pipefail
cd "$(dirname "$0")/.."
ls=${LINESIGHT:-target/release/linesight}
out=${1:-bench/out}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A copy of the sim board's config with the providers set by `prov LIST [extra TOML]`.
prov() {
  local f="$work/cfg-$RANDOM.toml"
  sed -e "s|^intra_threads = .*|intra_threads = ${THREADS:-1}\nproviders = [$1]\n${2:-}|" \
      -e "s|^dir = .*|dir = \"$PWD/models/${MODEL:-sim-flange}\"|" \
      -e "s|^edge_log = .*|edge_log = \"$work/edges.jsonl\"|" \
      -e "s|^results = .*|results = \"$work/results.jsonl\"|" board/sim/linesight.toml > "$f"
  echo "$f"
}

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
nproc
echo "ONNX Runtime: ${ORT_DYLIB_PATH:-bundled}"

for MODEL in sim-flange magnetic-tile; do
  [ -f "models/$MODEL/model.onnx" ] || continue
  for p in cpu cuda; do
    runs=${RUNS:-1000}
    # magnetic-tile (two members) takes about 3 s a frame on one core: fewer runs on the CPU
    [ "$MODEL/$p" = magnetic-tile/cpu ] && runs=${MT_CPU_RUNS:-30}
    echo "== bench $MODEL on $p ($runs runs)"
    "$ls" bench --config "$(prov "\"$p\"")" --runs "$runs" --json "$out/bench-$MODEL-$p.json" 2>&1 | grep -v '^linesight: camera'
  done
done
MODEL=sim-flange
echo "== bench sim-flange on cuda, CUDA graph"
"$ls" bench --config "$(prov '"cuda"' '[runtime.cuda]\ncuda_graph = true')" --runs "${RUNS:-1000}" --json "$out/bench-cuda-graph.json" 2>&1 | tail -8

for p in cpu cuda; do
  echo "== pipeline: sim line, ${PARTS:-600} parts at 10 parts/s on $p"
  "$ls" run --config "$(prov "\"$p\"")" --max-parts "${PARTS:-600}" 2>&1 | grep -v '^parts ' > "$out/run-$p.txt"
  cat "$out/run-$p.txt"
done

echo "== drift: eval --compare-providers cpu,cuda on a fresh synthetic set"
"$ls" synth --out "$work/set" --count "${DRIFT_N:-600}" --seed 3 --defect-ratio 0.3 > /dev/null
"$ls" eval --model models/sim-flange --good "$work/set/good" --defect "$work/set/defect" \
  --compare-providers cpu,cuda --config "$(prov '"cuda"')" --out "$out/drift-sim" 2>&1 | grep -v '^scored'

echo "== TensorRT requested, require_accelerator = false"
"$ls" run --config "$(prov '"tensorrt", "cuda", "cpu"' 'require_accelerator = false')" --max-parts 20 2>&1 | grep -E 'WARN|execution provider|model warm|^provider' | tee "$out/fallback-false.txt"
echo "== TensorRT requested, require_accelerator = true"
"$ls" run --config "$(prov '"tensorrt", "cuda", "cpu"' 'require_accelerator = true')" --max-parts 20 > "$out/fallback-true.txt" 2>&1
echo "exit status $?" >> "$out/fallback-true.txt"
cat "$out/fallback-true.txt"
