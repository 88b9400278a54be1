#!/usr/bin/env python3
"""The Python peer of linesight: what a Python user writes today for the same job.

For each image of a folder (searched recursively and sorted as linesight's folder camera
sorts them): Pillow decode, numpy preprocessing exactly as the model's manifest
(model.toml) says, onnxruntime, the manifest's calibrated threshold -> pass/reject.
The preprocessing reproduces linesight's src/preprocess.rs bit for bit (the `image`
crate's Triangle resize in float32 with its rounding, PIL's luma, letterbox/fit
placement, range/mean/std in float32, NCHW), so the scores are linesight's scores: PNG
and BMP frames decode identically; JPEG decoders may differ by a grey level here and there.

Two measurements (CPU or CUDA provider, the given intra-op threads, otherwise ONNX
Runtime's default session options, as linesight sets them):

  peer loop  per frame: read + decode + preprocess + run + threshold, back to back;
             throughput (frames/s) and per-frame latency p50/p99 (with a breakdown)
  --bare     ONNX Runtime's run on one prepared input, back to back: bare inference
             throughput and p50/p99 (the reference the issue's goals are ratios of)

Run it (bench/compare.sh makes the venv: numpy, pillow, onnxruntime==1.31.1, or
onnxruntime-gpu==1.31.1 for --provider cuda):

  target/bench-venv/bin/python bench/peer.py --model models/sim-flange \\
      --frames /tmp/frames --threads 1 --runs 300 --json peer.json
  target/bench-venv/bin/python bench/peer.py --model models/sim-flange \\
      --frames /tmp/frames --threads 1 --bare --runs 1000 --json bare.json
  target/bench-venv/bin/python bench/peer.py --model models/sim-flange \\
      --frames /tmp/frames --threads 1 --scores scores.jsonl   # one pass, per-image scores

--runs defaults to one pass over the frames (the peer loop) or 1000 (--bare); the peer
loop cycles the frames when --runs is larger. --scores writes one JSON line per distinct
image processed: {"path", "score", "verdict"}. Checked against `linesight eval`'s scores.csv
and a folder line's results.jsonl (grey, RGB, RGBA, palette, 16-bit, BMP; stretch,
letterbox and fit; both shipped models): the same float32 scores. Python 3.11 or newer.
"""

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
from PIL import Image

import onnxruntime as ort

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp"}
F32 = np.float32


def list_images(root):
    """Images under root, recursively, sorted by path components (linesight's list_images)."""
    out, dirs = [], [Path(root)]
    while dirs:
        d = dirs.pop()
        for entry in os.scandir(d):
            p = Path(entry.path)
            if p.is_dir():
                dirs.append(p)
            elif p.suffix.lower() in EXTENSIONS:
                out.append(p)
    out.sort(key=lambda p: p.parts)
    return out


def load_manifest(model_dir):
    model_dir = Path(model_dir)
    with open(model_dir / "model.toml", "rb") as f:
        m = tomllib.load(f)
    i = m["input"]
    n, c, h, w = i["shape"]
    channels = i["channels"]
    if n != 1 or c != (1 if channels == "gray" else 3):
        sys.exit(f"peer.py: {model_dir}/model.toml: input.shape {i['shape']} does not fit {channels}")
    return {
        "name": m["name"],
        "onnx": model_dir / m["onnx"],
        "input": i["name"],
        "score": m["outputs"]["score"],
        "channels": channels,
        "c": c,
        "h": h,
        "w": w,
        "resize": i["resize"],
        "range": [F32(v) for v in i["value_range"]],
        "mean": [F32(v) for v in i["mean"]],
        "std": [F32(v) for v in i["std"]],
        "threshold": F32(m["calibration"]["threshold"]),
    }


# ---- decode: Pillow, reduced to 8-bit grey or RGB as linesight's Pixels::from_dynamic does


def decode(path):
    """Grey (H, W) or RGB (H, W, 3) uint8, as linesight's decode_image gives them."""
    with Image.open(path) as im:
        im.load()
        mode = im.mode
        if mode == "L":
            return np.asarray(im)
        if mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: round(v * 255 / 65535)
            a = np.asarray(im).astype(np.uint32)
            return ((a + 128) // 257).astype(np.uint8)
        if mode in ("LA", "La"):
            return np.asarray(im)[:, :, 0]
        if mode == "1":
            return np.asarray(im.convert("L"))
        if mode == "RGB":
            return np.asarray(im)
        return np.asarray(im.convert("RGB"))  # RGBA (alpha dropped), P, CMYK, ...


def luma(rgb):
    """ITU-R 601 luma with PIL's fixed-point rounding (linesight's preprocess::luma)."""
    r, g, b = (rgb[:, :, k].astype(np.uint32) for k in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


# ---- resize: the `image` crate's imageops::resize with FilterType::Triangle, in float32


_TAPS = {}


def taps(src, dst):
    """(index, weight) arrays (dst, taps) of one axis, computed as image's sample.rs does."""
    key = (src, dst)
    if key in _TAPS:
        return _TAPS[key]
    ratio = F32(src) / F32(dst)
    sratio = ratio if ratio >= F32(1) else F32(1)
    support = F32(1) * sratio
    rows = []
    for o in range(dst):
        x = (F32(o) + F32(0.5)) * ratio
        left = min(max(int(math.floor(x - support)), 0), src - 1)
        right = min(max(int(math.ceil(x + support)), left + 1), src)
        x = x - F32(0.5)
        ws, total = [], F32(0)
        for i in range(left, right):
            t = abs((F32(i) - x) / sratio)
            wt = F32(1) - t if t < F32(1) else F32(0)
            ws.append(wt)
            total = total + wt
        rows.append((left, [wt / total for wt in ws]))
    k = max(len(ws) for _, ws in rows)
    idx = np.zeros((dst, k), np.intp)
    wgt = np.zeros((dst, k), F32)
    for o, (left, ws) in enumerate(rows):
        idx[o, :] = left  # padding taps: weight 0 on a valid pixel, adds an exact 0
        idx[o, : len(ws)] = np.arange(left, left + len(ws))
        wgt[o, : len(ws)] = ws
    _TAPS[key] = (idx, wgt)
    return idx, wgt


def resize(img, w, h):
    """uint8 (H, W[, 3]) -> uint8 (h, w[, 3]): vertical pass in float32, then horizontal,
    each sum accumulated tap by tap in order, clamped and rounded half away from zero."""
    H, W = img.shape[:2]
    if (W, H) == (w, h):
        return img
    iy, wy = taps(H, h)
    ix, wx = taps(W, w)
    per_row = (slice(None),) + (None,) * (img.ndim - 1)
    t = np.zeros((h,) + img.shape[1:], F32)
    buf = np.empty_like(t)
    for k in range(iy.shape[1]):
        np.multiply(img[iy[:, k]], wy[:, k][per_row], out=buf, dtype=F32)
        t += buf
    # The horizontal pass on the transposed intermediate, whose rows are contiguous.
    tt = np.ascontiguousarray(np.moveaxis(t, 1, 0))
    u = np.zeros((w, h) + img.shape[2:], F32)
    buf = np.empty_like(u)
    for k in range(ix.shape[1]):
        np.multiply(tt[ix[:, k]], wx[:, k][per_row], out=buf)
        u += buf
    np.clip(u, F32(0), F32(255), out=u)
    fl = np.floor(u)  # f32::round: half away from zero (u - fl is exact)
    return np.moveaxis((fl + (u - fl >= F32(0.5))).astype(np.uint8), 0, 1)


def placement(resize_kind, w, h, tw, th):
    """(x0, y0, width, height) of the image inside the input (preprocess::placement)."""
    if resize_kind == "stretch":
        return 0, 0, tw, th
    num, den = (tw, w) if w * th >= h * tw else (th, h)
    if resize_kind == "fit" and num >= den:
        num, den = 1, 1
    nw = min(max((2 * w * num + den) // (2 * den), 1), tw)
    nh = min(max((2 * h * num + den) // (2 * den), 1), th)
    return (tw - nw) // 2, (th - nh) // 2, nw, nh


class Preprocess:
    """Fills one (1, C, H, W) float32 input as linesight's preprocess::to_tensor does."""

    def __init__(self, m):
        self.m = m
        lo, hi = m["range"]
        self.lo, self.scale = lo, (hi - lo) / F32(255)
        # value -> normalised input, per channel: (lo + v * scale - mean) / std in float32
        v = np.arange(256, dtype=F32)
        self.lut = [((self.lo + v * self.scale) - m["mean"][c]) / m["std"][c] for c in range(m["c"])]
        self.tensor = np.empty((1, m["c"], m["h"], m["w"]), F32)

    def __call__(self, px):
        m, out = self.m, self.tensor
        gray = m["channels"] == "gray"
        if gray and px.ndim == 3:
            px = luma(px)
        elif not gray and px.ndim == 2:
            px = np.repeat(px[:, :, None], 3, axis=2)
        h, w = px.shape[:2]
        x0, y0, nw, nh = placement(m["resize"], w, h, m["w"], m["h"])
        if (nw, nh) != (m["w"], m["h"]):
            for c in range(m["c"]):
                out[0, c].fill(self.lut[c][0])
        img = resize(px, nw, nh)
        for c in range(m["c"]):
            plane = img if gray else img[:, :, c]
            out[0, c, y0 : y0 + nh, x0 : x0 + nw] = self.lut[c][plane]
        return out


# ---- ONNX Runtime


def session(m, provider, threads):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        so.intra_op_num_threads = threads
    if provider == "cuda":
        if hasattr(ort, "preload_dlls"):  # CUDA and cuDNN from pip's nvidia-* packages, if any
            try:
                ort.preload_dlls()
            except Exception as e:  # the system's libraries may serve instead
                print(f"peer.py: onnxruntime.preload_dlls(): {e}", file=sys.stderr)
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            sys.exit(
                "peer.py: --provider cuda: this onnxruntime has no CUDAExecutionProvider "
                f"(it has {ort.get_available_providers()}); install onnxruntime-gpu==1.31.1 "
                "instead of onnxruntime, with the CUDA and cuDNN libraries it needs"
            )
        # linesight's defaults: device 0, cuDNN search exhaustive, no CUDA graph.
        providers = [
            ("CUDAExecutionProvider", {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE"}),
            "CPUExecutionProvider",
        ]
    else:
        providers = ["CPUExecutionProvider"]
    s = ort.InferenceSession(str(m["onnx"]), sess_options=so, providers=providers)
    if provider == "cuda" and s.get_providers()[0] != "CUDAExecutionProvider":
        sys.exit(f"peer.py: --provider cuda: the session fell back to {s.get_providers()} (see the ONNX Runtime warnings above)")
    return s


def percentiles(ms):
    """p50, p99, max of the timed runs, ms: numpy's linear quantiles, linesight's definition."""
    a = np.asarray(ms, dtype=np.float64)
    p50, p99 = np.quantile(a, [0.5, 0.99])
    return {"p50": float(p50), "p99": float(p99), "max": float(a.max()), "mean": float(a.mean())}


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model folder with model.toml and model.onnx")
    ap.add_argument("--frames", required=True, help="folder of images (searched recursively)")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: ONNX Runtime's default)")
    ap.add_argument("--provider", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--runs", type=int, help="timed frames (default: one pass over the frames; --bare: 1000)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs first (linesight's runtime.warmup_runs)")
    ap.add_argument("--bare", action="store_true", help="only ONNX Runtime's run on one prepared input")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--scores", help="write per-image scores here (JSON lines, peer loop only)")
    a = ap.parse_args()

    if not (Path(a.model) / "model.toml").is_file():
        sys.exit(f"peer.py: --model {a.model}: no model.toml there")
    if not Path(a.frames).is_dir():
        sys.exit(f"peer.py: --frames {a.frames}: not a folder")
    m = load_manifest(a.model)
    files = list_images(a.frames)
    if not files:
        sys.exit(f"peer.py: no images ({', '.join(sorted(EXTENSIONS))}) in {a.frames}")
    sess = session(m, a.provider, a.threads)
    pre = Preprocess(m)
    feed_name, score_name, threshold = m["input"], m["score"], m["threshold"]

    # Warm-up on the first frame (cuDNN's search and lazy allocations happen here).
    x = pre(decode(files[0]))
    t = time.perf_counter()
    for _ in range(max(a.warmup, 1)):
        sess.run([score_name], {feed_name: x})
    warm_up_ms = (time.perf_counter() - t) * 1e3

    report = {
        "tool": "onnxruntime (bare)" if a.bare else "python peer",
        "model": m["name"],
        "provider": sess.get_providers()[0],
        "threads": a.threads,
        "onnxruntime": ort.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "frames": len(files),
        "warm_up_ms": warm_up_ms,
    }
    if a.bare:
        runs = max(a.runs or 1000, 1)
        feed = {feed_name: x.copy()}
        lat = []
        start = time.perf_counter()
        for _ in range(runs):
            t0 = time.perf_counter()
            sess.run([score_name], feed)
            lat.append((time.perf_counter() - t0) * 1e3)
        total = time.perf_counter() - start
        report.update(runs=runs, inference_ms=percentiles(lat), throughput_fps=runs / total)
    else:
        runs = max(a.runs or len(files), 1)
        dec, prep, inf, lat = [], [], [], []
        scores = {}
        rejects = 0
        start = time.perf_counter()
        for i in range(runs):
            path = files[i % len(files)]
            t0 = time.perf_counter()
            px = decode(path)
            t1 = time.perf_counter()
            x = pre(px)
            t2 = time.perf_counter()
            score = F32(sess.run([score_name], {feed_name: x})[0].reshape(-1)[0])
            reject = not (np.isfinite(score) and score <= threshold)
            t3 = time.perf_counter()
            rejects += reject
            if a.scores and i < len(files):
                scores[str(path)] = (float(score), "reject" if reject else "pass")
            dec.append((t1 - t0) * 1e3)
            prep.append((t2 - t1) * 1e3)
            inf.append((t3 - t2) * 1e3)
            lat.append((t3 - t0) * 1e3)
        total = time.perf_counter() - start
        report.update(
            runs=runs,
            threshold=float(threshold),
            rejects=rejects,
            throughput_fps=runs / total,
            latency_ms=percentiles(lat),
            decode_ms=percentiles(dec),
            preprocess_ms=percentiles(prep),
            inference_ms=percentiles(inf),
        )
        if a.scores:
            with open(a.scores, "w") as f:
                for path, (score, verdict) in scores.items():
                    f.write(json.dumps({"path": path, "score": score, "verdict": verdict}) + "\n")
    report["peak_rss_mib"] = peak_rss_mib()

    inf = report["inference_ms"]
    if a.bare:
        print(
            f"{report['tool']}: {m['name']} on {report['provider']}, {a.threads} thread(s), {runs} runs: "
            f"{report['throughput_fps']:.1f} fps, p50 {inf['p50']:.2f} ms, p99 {inf['p99']:.2f} ms"
        )
    else:
        lat = report["latency_ms"]
        print(
            f"{report['tool']}: {m['name']} on {report['provider']}, {a.threads} thread(s), {runs} frames "
            f"({len(files)} images, {rejects} rejected): {report['throughput_fps']:.1f} fps, "
            f"per frame p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms "
            f"(decode p50 {report['decode_ms']['p50']:.2f}, preprocess {report['preprocess_ms']['p50']:.2f}, "
            f"inference {inf['p50']:.2f})"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
