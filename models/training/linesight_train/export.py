"""ONNX export of the scoring graph, and the check that onnxruntime computes what torch does."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .data import to_model_input
from .log import log
from .networks import Discriminator

SCORE_TOLERANCE = 1e-4  # relative: onnxruntime's score against torch's


def export_onnx(scorer: nn.Module, C: int, S: int, path: Path) -> str:
    import onnx

    scorer = scorer.cpu().eval()
    for m_ in scorer.modules():
        if isinstance(m_, Discriminator):
            m_.bake()
    dummy = torch.zeros(1, C, S, S)
    how = "torchscript (dynamo=False)"
    try:
        torch.onnx.export(scorer, (dummy,), str(path), input_names=["image"], output_names=["score", "anomaly_map"],
                          opset_version=17, dynamo=False, do_constant_folding=True)
    except Exception as e:  # pragma: no cover - fallback path
        log(f"  legacy ONNX exporter failed ({type(e).__name__}: {e}); trying the dynamo exporter")
        how = "dynamo"
        prog = torch.onnx.export(scorer, (dummy,), None, input_names=["image"],
                                 output_names=["score", "anomaly_map"], opset_version=17, dynamo=True,
                                 external_data=False)
        prog.save(str(path))
    m = onnx.load(str(path))
    if m.ir_version > 9:
        m.ir_version = 9
    onnx.checker.check_model(m)
    ops = [o for o in m.opset_import if o.domain in ("", "ai.onnx")]
    if ops and ops[0].version != 17:
        raise SystemExit(f"error: exported opset {ops[0].version}, wanted 17")
    onnx.save(m, str(path))
    return how


def verify_onnx(path: Path, scorer: nn.Module, samples: torch.Tensor) -> tuple[float, float]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ins = sess.get_inputs()
    outs = sess.get_outputs()
    assert [i.name for i in ins] == ["image"], ins
    assert [o.name for o in outs] == ["score", "anomaly_map"], outs
    scorer = scorer.cpu().eval()
    worst_rel, worst_map = 0.0, 0.0
    with torch.no_grad():
        for i in range(samples.shape[0]):
            x = to_model_input(samples[i:i + 1])
            ts, tm = scorer(x)
            os_, om = sess.run(None, {"image": x.numpy().astype(np.float32)})
            assert os_.shape == (1,) and os_.dtype == np.float32, (os_.shape, os_.dtype)
            assert om.shape == tuple(tm.shape) and om.dtype == np.float32, (om.shape, om.dtype)
            rel = abs(float(os_[0]) - float(ts[0])) / max(abs(float(ts[0])), 1e-12)
            md = float(np.abs(om - tm.numpy()).max()) / max(float(tm.abs().max()), 1e-12)
            log(f"  onnx check {i}: torch {float(ts[0]):.6f}  onnxruntime {float(os_[0]):.6f}  rel diff {rel:.2e}  "
                f"map max rel diff {md:.2e}")
            worst_rel, worst_map = max(worst_rel, rel), max(worst_map, md)
    return worst_rel, worst_map


def export_and_check(scorer: nn.Module, C: int, S: int, out: Path, samples: np.ndarray) -> tuple[str, bool]:
    """OUT/model.onnx, checked against torch on the u8 images `samples`. Returns its sha256
    and whether onnxruntime agreed within the tolerance."""
    onnx_path = out / "model.onnx"
    log("")
    how = export_onnx(scorer, C, S, onnx_path)
    size_mb = onnx_path.stat().st_size / 1e6
    log(f"exported {onnx_path} ({size_mb:.2f} MB, opset 17, IR <= 9, {how})")
    worst_rel, worst_map = verify_onnx(onnx_path, scorer, torch.from_numpy(samples))
    ok = worst_rel <= SCORE_TOLERANCE
    log(f"onnx check: worst score rel diff {worst_rel:.2e}, worst map rel diff {worst_map:.2e} -> "
        f"{'OK' if ok else 'MISMATCH'} (tolerance 1e-4)")
    return hashlib.sha256(onnx_path.read_bytes()).hexdigest(), ok
