#!/usr/bin/env bash
# Training smoke test: a few CPU steps on a tiny synthetic set must export an ONNX
# model that linesight loads, calibrates and scores (trained on 32 px crops of 64 px
# inputs, as the default recipe trains on 256 px crops). CI runs it (.ci/run) in a
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
$PYTHON models/training/train.py --data "$work/data" --out "$work/model" --name smoke \
  --size 64 --crop 32 --steps 30 --device cpu --max-minutes 2 --ckpt-dir "$work"
$ls calibrate --model "$work/model" --good "$work/data/good" --quantile 0.95
$ls eval --model "$work/model" --good "$work/data/good" --defect "$work/data/defect" --out "$work/report"
test -s "$work/report/report.json"
echo "smoke test passed: trained, exported, calibrated and scored by linesight"
