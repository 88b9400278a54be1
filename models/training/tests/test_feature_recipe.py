"""The feature recipe's parts, each against a plain definition: the Gumbel threshold keeps
its false-reject budget, the coreset covers every cluster, the channel statistics are
those of the part's cells, the neighbour map is the distance to the nearest bank row, the
maps are normalised on held-back goods, crops stay on the part, and the whole graph (with
a small stand-in backbone: the real one needs the EfficientNet wheel) exports to ONNX with
onnxruntime computing what torch does."""
import math
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn as nn

from linesight_train.export import export_and_check
from linesight_train.feature_gan import Generator, crops, restoration_error, spearman, train_gan
from linesight_train.feature_recipe import (FeatureScorer, build_bank, cell_mask, channel_stats, coreset,
                                            gumbel_threshold, normalise)


def test_gumbel_threshold_keeps_the_budget_on_gumbel_scores():
    rng = np.random.default_rng(0)
    for budget in (0.01, 0.02, 0.05):
        scores = rng.gumbel(3.0, 0.4, 200_000)
        thr = gumbel_threshold(scores, budget)["threshold"]
        assert abs(float(np.mean(scores > thr)) - budget) < 0.002, (budget, float(np.mean(scores > thr)))
        # the closed form for the true parameters
        assert abs(thr - (3.0 - 0.4 * math.log(-math.log(1 - budget)))) < 0.01


def test_gumbel_threshold_reaches_past_the_worst_of_few_goods():
    # 40 held-back goods: their worst is quantile ~0.975; a 1% budget must lie beyond it
    scores = np.random.default_rng(1).gumbel(1.0, 0.2, 40)
    assert gumbel_threshold(scores, 0.01)["threshold"] > scores.max() - 0.05


def test_coreset_takes_one_row_from_each_far_cluster():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0], [50.0, 200.0]])
    cells = torch.cat([c + torch.randn(50, 2, generator=g) for c in centres])
    chosen = coreset(cells, 5, seed=3)
    nearest = torch.cdist(chosen, centres).argmin(1)
    assert sorted(nearest.tolist()) == [0, 1, 2, 3, 4]
    assert len(coreset(cells[:4], 10, seed=0)) == 4  # fewer rows than asked: all of them


def test_bank_rows_are_cells_of_the_maps():
    feats = torch.randn(3, 6, 4, 5)
    bank = build_bank(feats, 7, 40, seed=2)
    cells = feats.permute(0, 2, 3, 1).reshape(-1, 6)
    assert bank.shape == (7, 6)
    assert ((bank[:, None] - cells[None]).abs().sum(-1).min(1).values == 0).all()


def test_channel_stats_are_over_the_part_cells_only():
    feats = torch.randn(2, 3, 4, 4)
    content = torch.zeros(2, 1, 4, 4)
    content[0, 0, :2] = 1
    content[1, 0, :, 1] = 1
    mu, sd = channel_stats(feats, content)
    on = torch.cat([feats[0][:, :2].reshape(3, -1), feats[1][:, :, 1].reshape(3, -1)], 1)
    assert torch.allclose(mu, on.mean(1), atol=1e-5)
    assert torch.allclose(sd, on.std(1, unbiased=False), atol=1e-5)


def test_cell_mask_is_majority_of_pixels():
    content = np.zeros((1, 1, 16, 16), bool)
    content[0, 0, :, :5] = True  # cell column 0: 5 of 8 pixel columns on the part
    content[0, 0, :, 8:11] = True  # cell column 1: 3 of 8
    m = cell_mask(content)
    assert m.shape == (1, 1, 2, 2)
    assert m[0, 0, :, 0].tolist() == [1.0, 1.0] and m[0, 0, :, 1].tolist() == [0.0, 0.0]


class StandIn(nn.Module):
    """A stride-8 convolution in place of EfficientNet (same interface: [-1, 1] in, [N, F, S/8, S/8] out)."""

    def __init__(self, C: int, F: int):
        super().__init__()
        self.conv = nn.Conv2d(C, F, 8, 8)

    def forward(self, x):
        return self.conv(x)


def tiny_scorer(C=1, F=6, S=64, K=9, seed=0) -> FeatureScorer:
    torch.manual_seed(seed)
    bb = StandIn(C, F).eval()
    return FeatureScorer(bb, torch.randn(F) * 0.1, 0.5 + torch.rand(F), Generator(F, 16).eval(), torch.randn(K, F),
                         S).eval()


def test_neighbour_map_is_the_distance_to_the_nearest_bank_row():
    sc = tiny_scorer()
    f = torch.randn(2, 6, 4, 4)
    k = sc.neighbour_map(f)
    cells = f.permute(0, 2, 3, 1).reshape(-1, 6)
    want = torch.cdist(cells, sc.bank_t.t()).min(1).values.reshape(2, 1, 4, 4)
    assert torch.allclose(k, want, atol=1e-4)


def test_normalise_maps_held_back_median_to_0_and_p99_to_1():
    sc = tiny_scorer()
    r, k = torch.rand(4, 1, 8, 8) * 3, torch.rand(4, 1, 8, 8) + 5
    normalise(sc, r, k, torch.ones(4, 1, 8, 8))
    fused_r = (r - sc.norm[0, 0]) / sc.norm[0, 1]
    assert abs(float(fused_r.median())) < 1e-5
    assert abs(float(torch.quantile(fused_r.flatten(), 0.99)) - 1.0) < 1e-4


def test_crops_stay_on_the_part():
    g = torch.Generator().manual_seed(0)
    f = torch.arange(1 * 1 * 20 * 20, dtype=torch.float32).reshape(1, 1, 20, 20)
    content = torch.zeros(1, 1, 20, 20)
    content[0, 0, 12:18, 12:18] = 1  # the part: a 6 x 6 patch in one corner
    for _ in range(20):
        c = crops(f, content, 4, g)
        assert c.shape == (1, 1, 4, 4)
        centre = c[0, 0, 2, 2]
        row, col = int(centre) // 20, int(centre) % 20
        assert content[0, 0, row, col] == 1, (row, col)


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0


def test_gan_training_lowers_the_held_back_restoration_error():
    torch.manual_seed(0)
    # goods: smooth features with structure the generator can learn to restore
    base = torch.randn(1, 6, 1, 1)
    feats = base + 0.1 * torch.randn(24, 6, 12, 12)
    held = base + 0.1 * torch.randn(6, 6, 12, 12)
    args = SimpleNamespace(passes=30, checks=3, gen_width=16, crop_cells=8, w_adv=0.05, lr=2e-3, batch_size=8)
    torch.manual_seed(0)
    untrained = restoration_error(Generator(6, 16), held)
    G, hist = train_gan(feats, torch.ones(24, 1, 12, 12), held, args, torch.device("cpu"), 0, None)
    assert hist["steps"] == 90 and len(hist["history"]) == 3
    # the kept weights are the checks' best, and far better than untrained ones
    assert abs(restoration_error(G, held) - min(e["held_err"] for e in hist["history"])) < 1e-6
    assert restoration_error(G, held) < 0.5 * untrained
    # the discriminator of the kept check comes back too, for its per-cell map
    assert hist["D"](held[:1]).shape == (1, 1, 12, 12)


def test_feature_graph_exports_and_onnxruntime_agrees(tmp_path):
    sc = tiny_scorer(C=3, S=64)
    samples = np.random.default_rng(0).integers(0, 256, (3, 3, 64, 64), dtype=np.uint8)
    sha, ok = export_and_check(sc, 3, 64, tmp_path, samples)
    assert ok and len(sha) == 64 and (tmp_path / "model.onnx").is_file()
