"""The feature recipe (the default): a GAN that restores pretrained features of the part,
fused with a nearest-neighbour check against a memory bank of good features, all in one
exported graph.

    image -> frozen EfficientNet-Lite0 (stride 8 + 16) -> per-channel standardisation -> f
    restoration map  r = RMS over channels of (G(f) - f)        (the trained core)
    neighbour map    k = distance of each cell to its nearest bank feature
    map = (w r + k) / (1 + w), each normalised by the held-back goods' cell median and p99;
          w = 1 (their mean) unless --gan-weight says otherwise (auto: chosen on held-back
          goods against the same goods with synthetic defects)
    score = max over cells; the map goes back to the input's size for linesight

Everything that is learnt or chosen (G's weights, the normalisation, the threshold) comes
from good images: the training goods, and the held-back goods that are never trained on.
The real defects, where given, are scored for the log and the evaluation only."""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .anomalies import corrupt_in_crops
from .backbone import LOW_CHANNELS, STRIDE, Backbone
from .data import MEAN, STD, to_model_input
from .feature_gan import Generator, spearman, train_gan
from .log import log
from .metrics import auroc, quantile_stats
from .variants import cell_norm, choose_weight, mix as mix_factors, normalise_sets, raw_maps, residual_power


def cell_mask(content: np.ndarray) -> torch.Tensor:
    """Pixel content masks [N,1,S,S] (1 on the part) -> cell masks [N,1,S/8,S/8], a cell
    being on the part when most of its pixels are."""
    c = torch.from_numpy(content.astype(np.float32))
    return (F.avg_pool2d(c, STRIDE) > 0.5).float()


@torch.no_grad()
def extract(backbone: nn.Module, u8: np.ndarray, device, bs: int = 16) -> torch.Tensor:
    """Backbone features [N, F, S/8, S/8] (float32, on `device`) of the images u8 [N,C,S,S]."""
    backbone = backbone.to(device)
    out = [backbone(to_model_input(torch.from_numpy(u8[i:i + bs]).to(device))) for i in range(0, len(u8), bs)]
    return torch.cat(out) if out else torch.zeros(0)


def coreset(cells: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """k rows of `cells` [M, F] chosen greedily so that every row is near one of them
    (PatchCore's coreset: each step takes the row farthest from those already taken)."""
    if len(cells) <= k:
        return cells.clone()
    g = torch.Generator().manual_seed(seed)
    first = int(torch.randint(0, len(cells), (1,), generator=g))
    chosen = [first]
    dmin = ((cells - cells[first]) ** 2).sum(1)
    for _ in range(k - 1):
        i = int(torch.argmax(dmin))
        chosen.append(i)
        dmin = torch.minimum(dmin, ((cells - cells[i]) ** 2).sum(1))
    return cells[torch.tensor(chosen, device=cells.device)].clone()


def build_bank(feats: torch.Tensor, size: int, max_cells: int, seed: int) -> torch.Tensor:
    """The memory bank: a coreset of `size` cells from at most `max_cells` cells drawn at
    random from the training maps (every place, the part's edges and any padding too, so
    that what the training images show is near the bank)."""
    n, c, h, w = feats.shape
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(n * h * w, generator=g)[:max_cells].to(feats.device)
    cells = feats[pick // (h * w), :, (pick // w) % h, pick % w]  # [M, F], gathered without a full copy
    return coreset(cells, size, seed)


def channel_stats(feats: torch.Tensor, content: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation over the part's cells (image by image, so
    that no copy of all cells is made)."""
    s = torch.zeros(feats.shape[1], dtype=torch.float64, device=feats.device)
    s2, n = torch.zeros_like(s), 0.0
    for f, m in zip(feats, content):
        on = m[0] > 0
        v = f[:, on].double()
        s += v.sum(1)
        s2 += (v * v).sum(1)
        n += float(on.sum())
    mu = s / max(n, 1.0)
    return mu.float(), (s2 / max(n, 1.0) - mu * mu).clamp_min(0).sqrt().float()


class FeatureScorer(nn.Module):
    """[N, C, S, S] model input -> (score [N], anomaly map [N, 1, S, S]): the exported graph."""

    def __init__(self, backbone: nn.Module, mu: torch.Tensor, sd: torch.Tensor, G: nn.Module, bank: torch.Tensor,
                 size: int):
        super().__init__()
        self.backbone, self.G, self.size = backbone, G, size
        self.register_buffer("mu", mu.reshape(1, -1, 1, 1).clone())
        self.register_buffer("inv_sd", 1.0 / sd.reshape(1, -1, 1, 1).clamp_min(1e-6))
        self.register_buffer("bank_t", bank.t().contiguous().clone())              # [F, K]
        self.register_buffer("bank_sq", (bank ** 2).sum(1).reshape(1, -1).clone())   # [1, K]
        # (median, p99 - median) of each map's cells on held-back goods: set by normalise()
        self.register_buffer("norm", torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
        # factors of the normalised restoration and neighbour maps in the fused map: set_weight()
        self.register_buffer("mix", torch.tensor([0.5, 0.5]))

    def set_weight(self, w: float) -> None:
        """The GAN map's weight w relative to the bank's: map = (w r + k) / (1 + w)."""
        self.mix.copy_(torch.tensor(mix_factors(w)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return (self.backbone(x) - self.mu) * self.inv_sd

    def restoration_map(self, f: torch.Tensor) -> torch.Tensor:
        return ((self.G(f) - f) ** 2).mean(1, keepdim=True).clamp_min(1e-12).sqrt()

    def neighbour_map(self, f: torch.Tensor) -> torch.Tensor:
        n, c, h, w = f.shape
        cells = f.permute(0, 2, 3, 1).reshape(n * h * w, c)
        d2 = (cells ** 2).sum(1, keepdim=True) - 2.0 * cells @ self.bank_t + self.bank_sq
        return d2.min(1).values.clamp_min(1e-12).sqrt().reshape(n, 1, h, w)

    def cell_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.restoration_map(f), self.neighbour_map(f)

    def fuse(self, r: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        nr, nk = self.norm[0], self.norm[1]
        return self.mix[0] * ((r - nr[0]) / nr[1]) + self.mix[1] * ((k - nk[0]) / nk[1])

    def forward(self, x: torch.Tensor):
        m = self.fuse(*self.cell_maps(x))
        score = m.flatten(1).max(1).values
        return score, F.interpolate(m, size=(self.size, self.size), mode="bilinear", align_corners=False)


@torch.no_grad()
def cell_maps(scorer: FeatureScorer, feats: torch.Tensor, bs: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """The restoration and neighbour maps of standardised features (in batches)."""
    rs, ks = [], []
    for i in range(0, len(feats), bs):
        f = feats[i:i + bs]
        rs.append(scorer.restoration_map(f))
        ks.append(scorer.neighbour_map(f))
    return torch.cat(rs), torch.cat(ks)


def normalise(scorer: FeatureScorer, r: torch.Tensor, k: torch.Tensor, content: torch.Tensor) -> None:
    """Sets each map's (median, p99 - median) from the held-back goods' cells on the part."""
    scorer.norm.copy_(torch.tensor([list(cell_norm(m, content)) for m in (r, k)]))


def gumbel_threshold(scores: np.ndarray, budget: float) -> dict:
    """The threshold that a fraction `budget` of good parts exceed, from a Gumbel fit (by
    moments) to the held-back goods' scores. A score is the max over thousands of cells, so
    its tail is Gumbel-like; the fit reaches a 1-2% budget that a few dozen held-back goods
    cannot give by counting (their quantile 0.99 is their worst one)."""
    s = np.asarray(scores, np.float64)
    beta = max(float(np.std(s, ddof=1)) * math.sqrt(6) / math.pi, 1e-9)
    mu = float(np.mean(s)) - 0.5772156649 * beta
    thr = mu - beta * math.log(-math.log(1.0 - budget))
    return {"threshold": thr, "gumbel_mu": mu, "gumbel_beta": beta}


def lat_ms(fn, x: torch.Tensor, reps: int) -> float:
    """Median wall time of fn(x) in ms (CUDA synchronised)."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    with torch.no_grad():
        for _ in range(3):
            fn(x)
        sync()
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            fn(x)
            sync()
            ts.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ts))


def gflops(scorer: nn.Module, C: int, S: int) -> float:
    """Floating-point operations of one part through the graph (2 per multiply-add of
    convolutions and matrix products, torch's FLOP counter), in G."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, C, S, S)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        scorer.cpu()(x)
    return fc.get_total_flops() / 1e9


def synthetic_defects(xval: np.ndarray, cval: np.ndarray, args, device, n_min: int = 64) -> np.ndarray:
    """The held-back goods with pixel-space synthetic defects (anomalies.py: blobs, strokes,
    cut-paste, smoothing; one in a --crop window on the part, as the pixel recipe's model
    selection), repeated to at least n_min images, from a fixed seed; only those whose
    defect is visible. uint8 [M, C, S, S]. They are never trained on: they judge the
    finished networks the way real defects would, which the feature-space corruptions the
    GAN learnt to restore cannot do fairly."""
    c = args.crop if 0 < args.crop < args.size else args.size
    out = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(args.seed + 12345)
        for _ in range(max(1, math.ceil(n_min / max(1, len(xval))))):
            for i in range(0, len(xval), 32):
                xs = to_model_input(torch.from_numpy(xval[i:i + 32]).to(device))
                cs = torch.from_numpy(cval[i:i + 32]).to(device)
                xin, m = corrupt_in_crops(xs, cs, c, 1.0, args.stroke_frac, args.shade_frac)
                u8 = ((xin.clamp(-1, 1) * STD + MEAN) * 255).round().clamp(0, 255).to(torch.uint8).cpu()
                out.append(u8[m.flatten(1).amax(1).cpu() > 0])
    syn = torch.cat(out)
    return syn.numpy() if len(syn) else np.zeros((0,) + xval.shape[1:], np.uint8)


def gan_weight_arg(text: str) -> str:
    """--gan-weight: "auto" or a number >= 0."""
    if text != "auto":
        try:
            ok = float(text) >= 0 and math.isfinite(float(text))
        except ValueError:
            ok = False
        if not ok:
            import argparse
            raise argparse.ArgumentTypeError(f"expected auto or a weight >= 0, found {text!r}")
    return text


def train_feature_model(args, x: dict, C: int, device) -> tuple[FeatureScorer, dict, dict, dict | None]:
    """Trains and assembles the graph from the decoded sets `x` (cli.decode_sets). Returns
    the scorer, the calibration (manifest fields), figures for the log and benchmark, and
    the normalised cell maps of every scoring variant on the held-back goods, the synthetic
    defects and the test split (variants.report; None without a test split)."""
    t0 = time.time()
    backbone = Backbone().to(device)
    ftrain = extract(backbone, x["train"], device)
    fval = extract(backbone, x["val"], device)
    ctrain, cval = cell_mask(x["ctrain"]).to(device), cell_mask(x["cval"]).to(device)
    # per-channel standardisation over the part's training cells
    mu, sd = channel_stats(ftrain, ctrain)
    std = lambda f: (f - mu.reshape(1, -1, 1, 1)) / sd.clamp_min(1e-6).reshape(1, -1, 1, 1)
    ftrain, fval = std(ftrain), std(fval)
    log(f"features: {tuple(ftrain.shape)} training, {tuple(fval.shape)} held back, in {time.time() - t0:.1f}s")

    t_bank = time.time()
    bank = build_bank(ftrain, args.bank, args.bank_cells, args.seed)
    log(f"memory bank: {len(bank)} cells (greedy coreset of at most {args.bank_cells} random training cells) "
        f"in {time.time() - t_bank:.1f}s")
    # real defects, for the log only: how well the held-back signal tracks what matters
    feval = None
    if x.get("eg") is not None and x.get("ed") is not None:
        feval = (std(extract(backbone, x["eg"], device)), std(extract(backbone, x["ed"], device)))
    scorer = FeatureScorer(backbone, mu, sd, Generator(ftrain.shape[1], args.gen_width), bank, args.size).to(device)
    k_val = cell_maps(scorer, fval)[1]
    k_eval = None if feval is None else (cell_maps(scorer, feval[0])[1], cell_maps(scorer, feval[1])[1])

    def real_auroc(G) -> float:
        """Fused-map image AUROC (GAN weight 1) on the evaluation sets with G's current weights (log only)."""
        G.eval()
        scorer.G = G
        r_val, _ = cell_maps(scorer, fval)
        normalise(scorer, r_val, k_val, cval)
        sc = [scorer.fuse(cell_maps(scorer, fe)[0], ke).flatten(1).max(1).values.cpu().numpy()
              for fe, ke in zip(feval, k_eval)]
        G.train()
        return auroc(sc[1], sc[0])

    G, hist = train_gan(ftrain, ctrain, fval, args, device, args.seed, real_auroc if feval is not None else None)
    D = hist.pop("D", None)
    scorer.G = G
    del ftrain

    # every map kind on the held-back goods, the same with synthetic defects and the test split
    t_var = time.time()
    xsyn = synthetic_defects(x["val"], x["cval"], args, device)
    power = residual_power(G, fval, cval)
    raw = {"val": raw_maps(scorer, D, fval, power, LOW_CHANNELS)}
    if len(xsyn):
        raw["syn"] = raw_maps(scorer, D, std(extract(backbone, xsyn, device)), power, LOW_CHANNELS)
    if feval is not None:
        raw["eg"] = raw_maps(scorer, D, feval[0], power, LOW_CHANNELS)
        raw["ed"] = raw_maps(scorer, D, feval[1], power, LOW_CHANNELS)
    normalise(scorer, raw["val"]["res"], raw["val"]["bank"], cval)
    nm, _, mx = normalise_sets(raw, cval.cpu())
    if "syn" in nm:
        w_auto, table = choose_weight(nm["val"]["res"], nm["val"]["bank"], nm["syn"]["res"], nm["syn"]["bank"])
    else:  # no visible synthetic defect at all: nothing to choose on
        w_auto, table = 1.0, []
    w_graph = w_auto if args.gan_weight == "auto" else float(args.gan_weight)
    scorer.set_weight(w_graph)
    scorer.eval()
    log(f"GAN weight in the fusion, on {len(x['val'])} held-back goods against {len(xsyn)} of them with synthetic "
        f"defects (weight: synthetic AUROC, separation): "
        + ", ".join(f"{w:g}: {a:.4f}, {s_:.2f}" for w, a, s_ in table)
        + f" -> {w_auto:g}; the graph uses {w_graph:g}"
        + (" (--gan-weight auto)" if args.gan_weight == "auto" else f" (--gan-weight {args.gan_weight})")
        + f" ({time.time() - t_var:.1f}s)")
    info = {"train_seconds": time.time() - t0, "steps": hist["steps"], "history": hist["history"],
            "gan_weight": w_graph, "gan_weight_chosen": w_auto,
            "weight_choice": [{"weight": w, "synthetic_auroc": a, "separation": s_} for w, a, s_ in table]}
    ctx = None
    if feval is not None:
        h = hist["history"]
        info["selection_spearman"] = spearman([-e["held_err"] for e in h], [e["real_auroc"] for e in h])
        for name, kind in (("restoration", "res"), ("neighbour", "bank")):  # each map alone, as raw maxima
            info[f"auroc_{name}_only"] = auroc(raw["ed"][kind].flatten(1).amax(1).numpy(),
                                               raw["eg"][kind].flatten(1).amax(1).numpy())
        log(f"selection: rank correlation of -held-back restoration error with real-defect AUROC over "
            f"{len(h)} checks: {info['selection_spearman']:.3f}; AUROC of each map alone: restoration "
            f"{info['auroc_restoration_only']:.4f}, neighbour {info['auroc_neighbour_only']:.4f}")
        if "syn" in nm:
            ctx = {"normalised": nm, "w_auto": w_auto, "w_graph": w_graph, "max_stats": mx, "weight_table": table}
    del feval, raw

    # threshold from the held-back goods' scores, through the whole graph as exported
    with torch.no_grad():
        s_val = np.concatenate([scorer(to_model_input(torch.from_numpy(x["val"][i:i + 16]).to(device)))[0].cpu().numpy()
                                for i in range(0, len(x["val"]), 16)]).astype(np.float64)
    calib = quantile_stats(s_val)
    calib.update(gumbel_threshold(s_val, args.frr_budget))
    log(f"calibration on {calib['n']} held-back goods: p50 {calib['p50']:.4f} max {calib['max']:.4f}; Gumbel fit "
        f"mu {calib['gumbel_mu']:.4f} beta {calib['gumbel_beta']:.4f} -> threshold {calib['threshold']:.4f} for a "
        f"{args.frr_budget:.1%} false-reject budget")
    if device.type == "cuda":
        xb = torch.zeros(1, C, args.size, args.size, device=device)
        info["cuda_ms_torch"] = lat_ms(scorer, xb, 50)
        log(f"latency (torch, CUDA, batch 1): {info['cuda_ms_torch']:.2f} ms")
    return scorer, calib, info, ctx
