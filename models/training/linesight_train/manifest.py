"""model.toml: the manifest linesight reads (src/model/manifest.rs)."""
from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

from .data import MEAN, STD


def tf(v: float) -> str:
    """A TOML float (always with a '.' or an exponent)."""
    s = f"{float(v):.8g}"
    if not re.search(r"[.eEn]", s):
        s += ".0"
    return s


def tkey(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def git_commit(where: Path) -> str:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(where), capture_output=True, text=True, timeout=10)
        if r.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", r.stdout.strip()):
            return r.stdout.strip()
    except Exception:
        pass
    return "unknown"


def quantile_method(args) -> list[str]:
    """The [calibration] lines of the pixel recipe's threshold."""
    return ['method = "good_quantile"      # threshold = q + margin * (q - p50), q = quantile(quantile)',
            f"quantile = {tf(args.quantile)}", f"margin = {tf(args.margin)}"]


def gumbel_method(args, calib) -> list[str]:
    """The [calibration] lines of the feature recipe's threshold."""
    return ['method = "gumbel_fit"      # threshold exceeded by a fraction false_reject_budget of good parts, '
            'from a Gumbel fit to the held-back goods\' scores',
            f"false_reject_budget = {tf(args.frr_budget)}",
            f"gumbel_mu = {tf(calib['gumbel_mu'])}", f"gumbel_beta = {tf(calib['gumbel_beta'])}"]


def write_manifest(path: Path, *, name, sha, C, S, channels, calib, method_lines, args, prov, evaluation,
                   variant_desc):
    q = json.dumps
    L = []
    L.append("# linesight model manifest: written by models/training/train.py")
    L.append(f"name = {q(name)}")
    L.append("format_version = 1")
    L.append('onnx = "model.onnx"')
    L.append(f"sha256 = {q(sha)}")
    L.append("")
    L.append("[input]")
    L.append('name = "image"')
    L.append(f"shape = [1, {C}, {S}, {S}]     # N, C, H, W")
    L.append(f"channels = {q(channels)}")
    L.append(f"resize = {q(args.resize)}       # stretch | letterbox (aspect kept, padded with 0) | fit (letterbox, never enlarged)")
    L.append("value_range = [0.0, 1.0]    # pixel values scaled into this range before mean/std")
    L.append("mean = [" + ", ".join([tf(MEAN)] * C) + "]")
    L.append("std = [" + ", ".join([tf(STD)] * C) + "]")
    L.append("")
    L.append("[outputs]")
    L.append('score = "score"')
    L.append('anomaly_map = "anomaly_map"')
    L.append(f"# {variant_desc}")
    L.append("")
    L.append("[calibration]")
    L.append("# scores of held-back good images (never trained on)")
    L.append(f"n = {calib['n']}")
    for k in ("mean", "std", "min", "max", "p50", "p90", "p95", "p99", "p995", "threshold"):
        L.append(f"{k} = {tf(calib[k])}")
    L.extend(method_lines)
    L.append("")
    L.append("[provenance]")
    L.append(f"data = {q(prov['data'])}")
    L.append(f"training_command = {q(prov['command'])}")
    L.append(f"commit = {q(prov['commit'])}")
    L.append(f"trained_at = {q(prov['trained_at'])}")
    L.append(f"device = {q(prov['device'])}")
    L.append(f"epochs = {prov['epochs']}")
    L.append(f"train_images = {prov['train_images']}")
    L.append(f"seconds = {prov['seconds']:.1f}")
    if prov.get("gflops") is not None:
        L.append(f"gflops_per_part = {prov['gflops']:.2f}     # 2 per multiply-add, at the input size")
    if evaluation is not None:
        ev = evaluation
        L.append("")
        L.append("[evaluation]")
        L.append("# on the evaluation set named below")
        L.append(f"data = {q(ev['data'])}")
        L.append(f"good = {ev['good']}")
        L.append(f"defect = {ev['defect']}")
        for k in ("image_auroc", "pixel_auroc", "recall_at_threshold", "false_reject_rate_at_threshold",
                  "auroc_restoration_only", "auroc_neighbour_only", "selection_spearman"):
            v = ev.get(k)
            if v is not None and math.isfinite(v):
                L.append(f"{k} = {v:.4f}")
        if ev.get("per_kind"):
            L.append("[evaluation.per_kind]")
            for kind, d in sorted(ev["per_kind"].items()):
                parts = [f"n = {d['n']}"]
                if math.isfinite(d["auroc"]):
                    parts.append(f"auroc = {d['auroc']:.4f}")
                parts.append(f"recall_at_threshold = {d['recall']:.4f}")
                L.append(f"{tkey(kind)} = {{ " + ", ".join(parts) + " }")
    path.write_text("\n".join(L) + "\n")
