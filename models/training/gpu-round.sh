#!/usr/bin/env bash
# One training per GPU, in parallel, on the lent multi-GPU machine (how rounds 4-9 of
# docs/detection.md ran). Each run's folder (model, log, per-image eval scores) is packed
# into $OUT/NAME.tgz as soon as it ends (about 24 MB each with two members: split it to bring it back).
#
#   bash models/training/gpu-round.sh DATA "a:--seed 0" "b:--seed 1 --overexpose 0" ...
#
# DATA is the magnetic-tile folder (with splits/); every run gets its splits, the
# evaluation sets and --name magnetic-tile, then its own options (these win).
set -u
data=$1; shift
out=${OUT:-/tmp/o/out}
mkdir -p /tmp/o "$out"
common=(--data "$data" --train-list splits/train_good.txt --eval-good splits/test_good.txt
        --eval-defect splits/test_defect.txt --name magnetic-tile)
gpu=0
for spec in "$@"; do
  n=${spec%%:*}
  read -r -a extra <<< "${spec#*:}"
  (
    # a share of the CPU cores each: four runs of 64 threads each crawl on small CPU tensors
    CUDA_VISIBLE_DEVICES=$gpu OMP_NUM_THREADS=$(( $(nproc) / $# > 0 ? $(nproc) / $# : 1 )) PYTHONUNBUFFERED=1 python3 models/training/train.py "${common[@]}" "${extra[@]}" \
      --out /tmp/o/$n --ckpt-dir /tmp/o/ck$n > /tmp/o/$n.log 2>&1
    cp /tmp/o/ck$n/*eval-scores.json /tmp/o/$n.log /tmp/o/$n/ 2>/dev/null
    # packed under another name first: a reply that copies $OUT/*.tgz must not take a half-written one
    tar czf "$out/$n.tgz.partial" -C /tmp/o $n && mv "$out/$n.tgz.partial" "$out/$n.tgz"
  ) &
  gpu=$((gpu + 1))
done
wait
for spec in "$@"; do
  n=${spec%%:*}
  echo "== $n"
  grep -E "^chosen|image_auroc|pixel_auroc|kind |rror|Traceback|^wrote" /tmp/o/$n.log
done
