#!/usr/bin/env bash
# Training smoke test: a few CPU steps of each recipe on a tiny synthetic set must
# export an ONNX model that linesight loads, scores and calibrates. CI runs it (.ci/run) in a
# virtual environment with `pip install -r models/training/requirements.txt`, and then
# the package's own tests: `$PYTHON -m pytest -q models/training/tests`.
#
#   bash models/training/smoke-test.sh            # uses python3
#   PYTHON=/path/to/venv/bin/python bash models/training/smoke-test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
ls=target/release/linesight
$ls synth --out "$work/data" --count 120 --seed 21 --defect-ratio 0.3
# the default (feature) recipe, then the pixel recipe
$PYTHON models/training/train.py --data "$work/data" --out "$work/model" --name smoke \
  --size 64 --passes 3 --checks 2 --bank 128 --device cpu --ckpt-dir "$work"
$PYTHON models/training/train.py --recipe pixels --data "$work/data" --out "$work/pixels" --name smoke-pixels \
  --size 64 --crop 32 --steps 30 --device cpu --max-minutes 2 --ckpt-dir "$work"
for m in model pixels; do
  $ls eval --model "$work/$m" --good "$work/data/good" --defect "$work/data/defect" --out "$work/report-$m"
  test -s "$work/report-$m/report.json"
done
$ls calibrate --model "$work/model" --good "$work/data/good" --quantile 0.95
echo "smoke test passed: trained, exported, calibrated and scored by linesight"
