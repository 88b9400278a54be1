"""The feature recipe's scoring variants and the GAN weight, each against a plain
definition: the fusion and the graph's factors agree, poolings are what they say, the
weight choice follows the synthetic defects, the variant maps are what their names say
(the default variant is the exported graph's score), pixel samples and AUROC, and
benchmark.py's variant table with its leave-one-set-out check. CPU, seconds, nothing read
from outside the repository."""
import argparse
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark import SYN_PICK, variant_lines, variant_summary
from linesight_train.export import export_and_check
from linesight_train.feature_recipe import gan_weight_arg, normalise, synthetic_defects
from linesight_train.metrics import auroc
from linesight_train.variants import (MAP_KINDS, VARIANTS, all_scores, cell_norm, choose_weight, fuse, image_scores,
                                      max_stats, mix, normalise_sets, pixel_auroc_of, pixel_samples, raw_maps, report,
                                      residual_power, separation)
from test_feature_recipe import tiny_scorer


def test_fuse_is_the_bank_the_mean_or_the_gan_and_the_graph_factors_agree():
    r, k = torch.rand(2, 1, 3, 3), torch.rand(2, 1, 3, 3)
    assert torch.equal(fuse(r, k, 0.0), k)
    assert torch.allclose(fuse(r, k, 1.0), 0.5 * (r + k))
    assert torch.equal(fuse(r, k, math.inf), r)
    for w in (0.0, 0.125, 0.5, 2.0, math.inf):
        a, b = mix(w)
        assert torch.allclose(a * r + b * k, fuse(r, k, w), atol=1e-6)


def test_scorer_weight_gives_the_fused_map_and_the_default_is_the_mean():
    sc = tiny_scorer()
    r, k = torch.rand(2, 1, 4, 4) * 3, torch.rand(2, 1, 4, 4) + 5
    normalise(sc, r, k, torch.ones(2, 1, 4, 4))
    rn, kn = (r - sc.norm[0, 0]) / sc.norm[0, 1], (k - sc.norm[1, 0]) / sc.norm[1, 1]
    assert torch.allclose(sc.fuse(r, k), 0.5 * (rn + kn), atol=1e-5)  # unchanged default
    for w in (0.0, 0.25, 2.0):
        sc.set_weight(w)
        assert torch.allclose(sc.fuse(r, k), fuse(rn, kn, w), atol=1e-5)


def test_poolings():
    m = torch.zeros(2, 1, 5, 5)
    m[0, 0, 0, 0] = 9.0  # one stray cell
    m[1, 0, 1:4, 1:4] = 3.0  # a 3 x 3 defect
    assert image_scores(m, "max").tolist() == [9.0, 3.0]
    assert np.allclose(image_scores(m, "top8"), [9.0 / 8, 3.0])
    assert np.allclose(image_scores(m, "pool3"), [1.0, 3.0])
    with pytest.raises(ValueError):
        image_scores(m, "median")


def test_separation_is_shift_and_scale_free():
    rng = np.random.default_rng(0)
    neg, pos = rng.normal(0, 1, 200), rng.normal(3, 1, 50)
    s = separation(pos, neg)
    assert s > 1
    assert abs(separation(5 * pos + 2, 5 * neg + 2) - s) < 1e-9


def maps_with(n: int, defect: bool, g: torch.Generator, gan_sees: bool, bank_sees: bool):
    """Normalised (r, k) cell maps of n images: noise, plus a 2 x 2-cell bump where the map
    sees a defect."""
    r, k = torch.randn(n, 1, 8, 8, generator=g), torch.randn(n, 1, 8, 8, generator=g)
    if defect:
        if gan_sees:
            r[:, :, 2:4, 2:4] += 4.0
        if bank_sees:
            k[:, :, 2:4, 2:4] += 4.0
    return r, k


@pytest.mark.parametrize("gan_sees,bank_sees,lo,hi", [(True, False, 2.0, 2.0), (False, True, 0.0, 0.125)])
def test_choose_weight_follows_the_branch_that_sees_the_synthetic_defects(gan_sees, bank_sees, lo, hi):
    g = torch.Generator().manual_seed(0)
    rg, kg = maps_with(60, False, g, gan_sees, bank_sees)
    rs, ks = maps_with(60, True, g, gan_sees, bank_sees)
    w, table = choose_weight(rg, kg, rs, ks)
    # (a little of a blind map is a tie within 0.002 AUROC: it averages the noise down)
    assert lo <= w <= hi, table
    assert [t[0] for t in table] == [0.0, 0.125, 0.25, 0.5, 1.0, 2.0]


def test_choose_weight_breaks_auroc_ties_by_separation():
    # both maps find every defect (AUROC 1 at every weight), the sum of both stands out most
    g = torch.Generator().manual_seed(1)
    rg, kg = maps_with(40, False, g, True, True)
    rs, ks = maps_with(40, True, g, True, True)
    rs[:, :, 2:4, 2:4] += 6.0
    ks[:, :, 2:4, 2:4] += 6.0
    w, table = choose_weight(rg, kg, rs, ks)
    assert all(a == 1.0 for _, a, _ in table)
    assert w == max(table, key=lambda t: t[2])[0]
    assert w >= 0.5  # equal evidence: both branches, not the bank alone


def test_normalised_sets_put_the_goods_median_at_0_and_p99_at_1():
    g = torch.Generator().manual_seed(0)
    raw = {s: {kd: torch.rand(5, 1, 6, 6, generator=g) * (i + 1) for i, kd in enumerate(MAP_KINDS)}
           for s in ("val", "syn", "eg", "ed")}
    content = torch.ones(5, 1, 6, 6)
    nm, norms, mx = normalise_sets(raw, content)
    for kd in MAP_KINDS:
        v = nm["val"][kd].flatten()
        assert abs(float(v.median())) < 1e-5
        assert abs(float(torch.quantile(v, 0.99)) - 1.0) < 1e-4
        assert norms[kd] == cell_norm(raw["val"][kd], content)
        mean, sd = mx[kd]
        assert abs(mean - float(nm["val"][kd].flatten(1).amax(1).mean())) < 1e-5
    assert max_stats(torch.ones(3, 1, 2, 2))[1] == 1e-6  # no spread: a floor, not a division by 0


def test_raw_maps_are_what_their_names_say():
    sc = tiny_scorer(F=6, K=12)
    torch.manual_seed(1)
    f = torch.randn(3, 6, 5, 5)
    ones = torch.ones(6)
    maps = raw_maps(sc, None, f, ones, split=2, m=4, bs=2)
    assert set(maps) == set(MAP_KINDS)
    with torch.no_grad():
        assert torch.allclose(maps["res"], sc.restoration_map(f), atol=1e-5)
        assert torch.allclose(maps["bank"], sc.neighbour_map(f), atol=1e-4)
        e = sc.G(f) - f
        assert torch.allclose(maps["res16"], (e[:, 2:] ** 2).mean(1, keepdim=True).sqrt(), atol=1e-5)
    assert torch.allclose(maps["white"], maps["res"], atol=1e-5)  # unit power: the plain residual
    assert (maps["ctx"] >= maps["bank"] - 1e-4).all()  # a restricted nearest neighbour
    assert torch.equal(maps["disc"], torch.zeros(3, 1, 5, 5))  # no discriminator given
    whole = raw_maps(sc, None, f, ones, split=2, m=12)  # looking among every bank cell: the bank's distance
    assert torch.allclose(whole["ctx"], whole["bank"], atol=1e-4)
    # whitening: a channel with twice the goods' residual counts a quarter as much
    power = torch.tensor([4.0, 1, 1, 1, 1, 1])
    w = raw_maps(sc, None, f, power, split=2)["white"]
    want = ((e * torch.tensor([0.5, 1, 1, 1, 1, 1]).reshape(1, -1, 1, 1)) ** 2).mean(1, keepdim=True).sqrt()
    assert torch.allclose(w, want, atol=1e-5)


def test_residual_power_is_the_mean_square_over_part_cells():
    sc = tiny_scorer(F=6)
    f = torch.randn(2, 6, 4, 4)
    content = torch.zeros(2, 1, 4, 4)
    content[:, :, :2] = 1
    with torch.no_grad():
        e = (sc.G(f) - f) ** 2
    want = e[:, :, :2].permute(1, 0, 2, 3).reshape(6, -1).mean(1)
    assert torch.allclose(residual_power(sc.G, f, content, bs=1), want, atol=1e-5)


def test_the_default_variant_is_the_exported_graphs_score():
    sc = tiny_scorer(C=1, F=6, S=64, K=9)
    x = torch.rand(7, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        f = sc.features(x)
    maps = raw_maps(sc, None, f, torch.ones(6), split=2)
    raw = {"val": maps, "eg": maps}
    normalise(sc, maps["res"], maps["bank"], torch.ones(7, 1, 8, 8))
    nm, _, mx = normalise_sets(raw, torch.ones(7, 1, 8, 8))
    scores = all_scores(nm, 0.25, mx)
    assert set(scores) == set(VARIANTS)
    with torch.no_grad():
        assert np.allclose(scores["w1"]["eg"], sc(x)[0].numpy(), atol=1e-5)
        sc.set_weight(0.25)
        assert np.allclose(scores["wauto"]["eg"], sc(x)[0].numpy(), atol=1e-5)
        sc.set_weight(0.0)
        assert np.allclose(scores["bank"]["eg"], sc(x)[0].numpy(), atol=1e-5)


def test_weighted_feature_graph_exports_and_onnxruntime_agrees(tmp_path):
    sc = tiny_scorer(C=3, S=64)
    sc.set_weight(0.25)
    samples = np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8)
    sha, ok = export_and_check(sc, 3, 64, tmp_path, samples)
    assert ok


def small_set(tmp_path, S=32):
    """Two goods and two defects (one with a mask in masks/, one without) of S x S px."""
    for d in ("good", "defect", "masks"):
        (tmp_path / d).mkdir()
    img = Image.fromarray(np.full((S, S), 128, np.uint8))
    goods = [tmp_path / "good" / f"g{i}.png" for i in range(2)]
    defects = [tmp_path / "defect" / f"d{i}.png" for i in range(2)]
    for p in goods + defects:
        img.save(p)
    mask = np.zeros((S, S), np.uint8)
    mask[8:16, 8:16] = 255
    Image.fromarray(mask).save(tmp_path / "masks" / "d0.png")
    return goods, defects


def test_pixel_samples_and_auroc(tmp_path):
    S = 32
    goods, defects = small_set(tmp_path, S)
    samples, have = pixel_samples(goods, defects, S, "fit", seed=0, cap=10_000_000)
    assert have == 1 and len(samples) == 4
    pos, neg = samples[2]
    assert len(pos) == 64 and len(set(pos.tolist()) & set(neg.tolist())) == 0
    assert len(samples[3][0]) == 0 and len(samples[3][1]) == 0  # no mask: no pixel of it counts
    assert len(samples[0][1]) == S * S  # every good pixel (cap not reached)
    # cell maps (stride 8) high exactly under the mask: the pixel AUROC is high, inverted low
    maps = torch.zeros(4, 1, 4, 4)
    maps[2, 0, 1, 1] = 1.0
    a = pixel_auroc_of(maps, samples, S, torch.device("cpu"))
    assert a > 0.9
    assert pixel_auroc_of(-maps, samples, S, torch.device("cpu")) < 0.1
    samples_few, _ = pixel_samples(goods, defects, S, "fit", seed=0, cap=40)
    assert sum(len(n) for _, n in samples_few) < 200 and sum(len(p) for p, _ in samples_few) <= 64


def test_report_writes_every_variants_scores_and_labels(tmp_path):
    S = 32
    goods, defects = small_set(tmp_path, S)
    g = torch.Generator().manual_seed(0)
    def kinds(n, bump=0.0):
        d = {kd: torch.rand(n, 1, 4, 4, generator=g) for kd in MAP_KINDS}
        d["bank"][:, :, 1, 1] += bump
        return d
    raw = {"val": kinds(3), "syn": kinds(4, 2.0), "eg": kinds(2), "ed": kinds(2, 2.0)}
    nm, _, mx = normalise_sets(raw, torch.ones(3, 1, 4, 4))
    ctx = {"normalised": nm, "w_auto": 0.5, "w_graph": 1.0, "max_stats": mx,
           "weight_table": [(0.0, 1.0, 2.0), (0.5, 0.9, 1.0)]}
    sets = SimpleNamespace(eval_good=goods, eval_defect=defects)
    args = SimpleNamespace(size=S, resize="fit", seed=0, name="tiny", data=tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    res = report(ctx, sets, args, out, torch.device("cpu"))
    doc = json.loads((out / "eval-variants.json").read_text())
    assert set(res) == set(VARIANTS) == set(doc["variants"])
    assert res["bank"] == 1.0 and doc["good"] == ["good/g0.png", "good/g1.png"]
    v = doc["variants"]["w1"]
    assert len(v["scores"]["good"]) == 2 and len(v["scores"]["synthetic"]) == 4 and len(v["scores"]["held_back"]) == 3
    assert abs(auroc(v["scores"]["defect"], v["scores"]["good"]) - v["image_auroc"]) < 1e-9
    assert "pixel_auroc" in v and "pixel_auroc" not in doc["variants"]["w1-top8"]
    assert doc["gan_weight_chosen"] == 0.5 and doc["weight_choice"][0]["weight"] == 0.0


def test_synthetic_defects_are_visible_changes_of_the_held_back_goods():
    rng = np.random.default_rng(0)
    xval = rng.integers(60, 200, (5, 1, 64, 64), dtype=np.uint8)
    cval = np.ones((5, 1, 64, 64), bool)
    args = SimpleNamespace(crop=256, size=64, seed=0, stroke_frac=0.25, shade_frac=0.0)
    syn = synthetic_defects(xval, cval, args, torch.device("cpu"), n_min=12)
    assert syn.dtype == np.uint8 and syn.shape[1:] == (1, 64, 64) and 0 < len(syn) <= 15
    again = synthetic_defects(xval, cval, args, torch.device("cpu"), n_min=12)
    assert np.array_equal(syn, again)  # a fixed seed
    # each differs from every good somewhere (a defect was drawn in)
    assert all(min(np.abs(s.astype(int) - x.astype(int)).max() for x in xval) > 0 for s in syn)


def test_gan_weight_arg():
    assert gan_weight_arg("auto") == "auto" and gan_weight_arg("0.25") == "0.25" and gan_weight_arg("0") == "0"
    for bad in ("-1", "x", "inf", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            gan_weight_arg(bad)


def run(set_, seed, aurocs, syn=None, w=1.0):
    return {"set": set_, "seed": seed, "gan_weight_chosen": w,
            "variants": {v: {"image_auroc": a, "pixel_auroc": None,
                             "synthetic_auroc": None if syn is None else syn[v]} for v, a in aurocs.items()}}


def test_variant_summary_means_minimum_and_leave_one_set_out():
    runs = [run("a", 0, {"x": 0.9, "y": 0.8}, {"x": 0.7, "y": 0.9}),
            run("a", 1, {"x": 0.7, "y": 0.8}, {"x": 0.9, "y": 0.8}),
            run("b", 0, {"x": 0.6, "y": 0.9}, {"x": 0.5, "y": 0.6}),
            run("c", 0, {"x": 0.95, "y": 0.5}, {"x": 0.5, "y": 0.6})]
    vs = variant_summary(runs)
    x, y = vs["variants"]["x"], vs["variants"]["y"]
    assert x["per_set"] == pytest.approx({"a": 0.8, "b": 0.6, "c": 0.95})
    assert x["mean"] == pytest.approx((0.8 + 0.6 + 0.95) / 3) and x["min"] == pytest.approx(0.6)
    assert y["min"] == pytest.approx(0.5)
    # left out a: y (mean 0.7 on b, c) vs x (0.775) -> x; left out c: x (0.7) vs y (0.85) -> y
    lo = vs["leave_one_set_out"]
    assert lo["a"]["variant"] == "x" and lo["c"] == {"variant": "y", "image_auroc": pytest.approx(0.5)}
    # the rule a training could apply: per run, the variant its synthetic defects rank first
    assert vs["variants"][SYN_PICK]["per_set"] == pytest.approx({"a": (0.8 + 0.7) / 2, "b": 0.9, "c": 0.5})
    assert vs["gan_weight_chosen"] == {"a": [1.0, 1.0], "b": [1.0], "c": [1.0]}
    text = "\n".join(variant_lines(vs))
    assert "| x | 0.8000 | 0.6000 | 0.9500 | 0.7833 | 0.6000 |" in text and "Leave one set out" in text


def test_variant_summary_of_nothing_is_empty():
    vs = variant_summary([])
    assert vs["variants"] == {} and variant_lines(vs) == []
