"""A tiny scoring graph (random weights, seeded) exported to ONNX: onnxruntime on the CPU
computes the score and the anomaly map that torch does, under the names and shapes that
model.toml gives linesight."""
import hashlib
import tomllib

import numpy as np
import onnxruntime as ort
import pytest
import torch

from linesight_train.cli import parse_args
from linesight_train.data import to_model_input
from linesight_train.export import export_and_check
from linesight_train.manifest import quantile_method, write_manifest
from linesight_train.metrics import quantile_stats
from linesight_train.networks import Discriminator, Generator, SegHead
from linesight_train.scoring import Ensemble, Scorer

S = 32
# Relative to the largest |value| (the score's own, the map's largest): float32 arithmetic
# in two runtimes; train.py's own check allows 1e-4 on the score.
TOLERANCE = 1e-4


def tiny_scorer(C: int, seed: int, pool: int) -> Scorer:
    torch.manual_seed(seed)
    G = Generator(C, S, width=8, max_width=16, nz=8)
    D = Discriminator(C, S, width=8, max_width=16)
    Sg = SegHead(C, S, width=8, max_width=16)
    pix = (torch.rand(1, 1, S, S), 0.5 + torch.rand(1, 1, S, S))
    # every map component, per-pixel normalisation: all of the graph is exported
    return Scorer(G.eval(), D.eval(), S, weights=(1.0, 0.5, 0.5, 1.0), norms=(0.5, 0.2, 1.5, 0.3), pool=pool,
                  sigma=1.0, pix_stats=pix, seg=Sg.eval()).eval()


def manifest_for(out, C, sha):
    args = parse_args(["--out", str(out)])
    calib = quantile_stats(np.linspace(0.0, 1.0, 10))
    calib["threshold"] = 1.0
    prov = {"data": "-", "command": "-", "commit": "-", "trained_at": "-", "device": "cpu", "epochs": 0,
            "train_images": 0, "seconds": 0.0}
    write_manifest(out / "model.toml", name="tiny", sha=sha, C=C, S=S, channels="gray" if C == 1 else "rgb",
                   calib=calib, method_lines=quantile_method(args), args=args, prov=prov, evaluation=None, variant_desc="test")
    return tomllib.loads((out / "model.toml").read_text())


@pytest.mark.parametrize("C,members", [(1, 1), (3, 1), (1, 2)], ids=["gray", "rgb", "ensemble"])
def test_onnxruntime_agrees_with_torch(tmp_path, C, members):
    scorer = (tiny_scorer(C, 0, 4) if members == 1
              else Ensemble([tiny_scorer(C, j, 1) for j in range(members)], 4).eval())
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (3, C, S, S), dtype=torch.uint8, generator=g)
    sha, ok = export_and_check(scorer, C, S, tmp_path, images.numpy())
    assert ok
    onnx_path = tmp_path / "model.onnx"
    assert sha == hashlib.sha256(onnx_path.read_bytes()).hexdigest()

    doc = manifest_for(tmp_path, C, sha)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.name == doc["input"]["name"] and inp.shape == doc["input"]["shape"] and inp.type == "tensor(float)"
    names = [o.name for o in sess.get_outputs()]
    assert names == [doc["outputs"]["score"], doc["outputs"]["anomaly_map"]]

    for i in range(len(images)):
        x = to_model_input(images[i:i + 1])
        with torch.no_grad():
            t_score, t_map = scorer(x)
        o_score, o_map = sess.run(names, {inp.name: x.numpy()})
        assert o_score.shape == (1,) and o_score.dtype == np.float32
        assert o_map.shape == (1, 1, S, S) and o_map.dtype == np.float32
        assert abs(float(o_score[0]) - float(t_score[0])) <= TOLERANCE * abs(float(t_score[0]))
        assert np.abs(o_map - t_map.numpy()).max() <= TOLERANCE * float(t_map.abs().max())
        # the score is the graph's own pooling of its map: max of the 4x4 average-pooled map
        pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(o_map), 4, 1).max()
        assert float(o_score[0]) == pytest.approx(float(pooled), rel=TOLERANCE)
