"""Scoring variants of the feature recipe that need no retraining, and the GAN's weight in
the fusion.

At the end of a training the same networks score the held-back goods, the held-back goods
with synthetic defects and (for the log and the benchmark only) the test split in a small
grid of ways: the bank or the GAN map alone, their fusion at several GAN weights, the GAN
map from the stride-16 channels only or whitened per channel, the restoration measured
against the bank, the discriminator's map, each map normalised by the goods' image maxima,
and two other poolings of the cells. Every image's score under every variant goes to
OUT/eval-variants.json (with the labels), so that recipe decisions can be made offline over
all sets and seeds. Nothing here looks at the real defects to choose anything: the only
choice made inside the training, the GAN weight of `--gan-weight auto`, comes from the
held-back goods and the synthetic defects (choose_weight)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import content_mask, find_mask, load_mask
from .log import log
from .metrics import auroc

WEIGHTS = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0)  # candidate GAN weights, relative to the bank's 1
TOPK = 8  # cells averaged by the top-k pooling
CTX_M = 16  # bank cells nearest to the restoration that the context distance looks among
MAP_KINDS = ("res", "res16", "white", "bank", "ctx", "disc")


# --------------------------------------------------------------------------- pure parts


def fuse(r: torch.Tensor, k: torch.Tensor, w: float) -> torch.Tensor:
    """The fused cell map (w * r + k) / (1 + w) of normalised GAN map r and bank map k:
    w = 0 is the bank alone, w = 1 their mean (the graph's default), w = inf the GAN alone."""
    if w == 0:
        return k
    if math.isinf(w):
        return r
    return (w * r + k) / (1.0 + w)


def mix(w: float) -> tuple[float, float]:
    """The graph's (GAN, bank) factors for GAN weight w: fuse(r, k, w) = a * r + b * k."""
    return (1.0, 0.0) if math.isinf(w) else (w / (1.0 + w), 1.0 / (1.0 + w))


def image_scores(maps: torch.Tensor, pool: str = "max") -> np.ndarray:
    """Image scores of cell maps [N, 1, h, w]: max over the cells (the graph's score), the
    mean of the TOPK highest cells (`top8`: a defect spans several cells, a good part's
    stray cell does not), or the max of the 3 x 3-cell average-pooled map (`pool3`)."""
    m = maps.float()
    if pool == "max":
        s = m.flatten(1).amax(1)
    elif pool == "top8":
        flat = m.flatten(1)
        s = flat.topk(min(TOPK, flat.shape[1]), dim=1).values.mean(1)
    elif pool == "pool3":
        k = min(3, m.shape[-2], m.shape[-1])
        s = F.avg_pool2d(m, k, 1).flatten(1).amax(1)
    else:
        raise ValueError(f"unknown pooling {pool!r}")
    return s.cpu().numpy().astype(np.float64)


def cell_norm(m: torch.Tensor, content: torch.Tensor) -> tuple[float, float]:
    """(median, p99 - median) of a map's cells on the part (held-back goods): the cell-level
    normalisation of each map in the graph."""
    v = m[content.to(m.device) > 0].float()
    if v.numel() == 0:
        v = m.flatten().float()
    if v.numel() > 1_000_000:  # torch.quantile's limit; a strided sample is plenty
        v = v[:: v.numel() // 1_000_000 + 1]
    med, p99 = float(v.median()), float(torch.quantile(v, 0.99))
    return med, max(p99 - med, 1e-6)


def separation(pos: np.ndarray, neg: np.ndarray) -> float:
    """How far positives sit above negatives in units of the negatives' upper spread:
    (median pos - median neg) / (p90 neg - median neg). Shift- and scale-free like the
    AUROC, but it keeps growing where the AUROC is already 1."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if not len(pos) or not len(neg):
        return float("nan")
    med = float(np.median(neg))
    return (float(np.median(pos)) - med) / max(float(np.quantile(neg, 0.9)) - med, 1e-9)


def choose_weight(r_good: torch.Tensor, k_good: torch.Tensor, r_syn: torch.Tensor, k_syn: torch.Tensor,
                  weights=WEIGHTS, tol: float = 0.002) -> tuple[float, list[tuple[float, float, float]]]:
    """The GAN's weight in the fusion, from good parts and synthetic defects only: the
    weight whose fused image scores (max over cells) separate the synthetic defects from the
    goods best by AUROC; among those within `tol` of the best AUROC (synthetic defects are
    often all found), the one with the largest separation(). Maps are normalised cell maps
    [N, 1, h, w]. Returns the weight and the table (weight, AUROC, separation)."""
    table = []
    for w in weights:
        sg = image_scores(fuse(r_good, k_good, w))
        ss = image_scores(fuse(r_syn, k_syn, w))
        table.append((float(w), auroc(ss, sg), separation(ss, sg)))
    best = max(a for _, a, _ in table)
    near = [t for t in table if t[1] >= best - tol]
    return max(near, key=lambda t: t[2])[0], table


def max_stats(maps: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of the goods' image maxima of a cell map: the variant
    that normalises each map where the score is taken (the max over thousands of cells)
    rather than at its cells' p99."""
    mx = maps.flatten(1).amax(1).double()
    return float(mx.mean()), max(float(mx.std()) if len(mx) > 1 else 1.0, 1e-6)


# variant -> (what it is, map, pooling). Maps: normalised cell maps by kind (MAP_KINDS), the
# fusions of res and bank at a GAN weight ("w0.5"), "wauto" (the weight choose_weight gave)
# or "maxnorm" (each of res and bank normalised by the goods' image maxima, then w = 1).
VARIANTS = {
    "bank": ("memory-bank distance alone (GAN weight 0)", "bank", "max"),
    "gan": ("GAN restoration residual alone", "res", "max"),
    "disc": ("discriminator's per-cell map -D(f) alone", "disc", "max"),
    "w0.25": ("(w GAN + bank) / (1 + w), w = 0.25", "w0.25", "max"),
    "w0.5": ("fusion, w = 0.5", "w0.5", "max"),
    "w1": ("fusion, w = 1: the default graph", "w1", "max"),
    "wauto": ("fusion, w chosen in training on held-back goods + synthetic defects", "wauto", "max"),
    "w1-s16": ("w = 1, GAN residual over the stride-16 channels only", "s16", "max"),
    "w1-white": ("w = 1, GAN residual per channel in units of the goods' residual RMS", "white", "max"),
    "w1-maxnorm": ("w = 1, each map normalised by the goods' image maxima (mean, std)", "maxnorm", "max"),
    "ctx16": (f"distance to the nearest of the {CTX_M} bank cells closest to the GAN's restoration", "ctx", "max"),
    "bank-top8": (f"bank alone, mean of the {TOPK} highest cells", "bank", "top8"),
    "w1-top8": (f"w = 1, mean of the {TOPK} highest cells", "w1", "top8"),
    "w1-pool3": ("w = 1, max of the 3 x 3-cell average-pooled map", "w1", "pool3"),
}


def variant_map(nm: dict, recipe: str, w_auto: float, mx: dict) -> torch.Tensor:
    """The cell map of a variant recipe from one set's normalised maps `nm` (kind -> map)."""
    if recipe in MAP_KINDS:
        return nm[recipe]
    if recipe == "wauto":
        return fuse(nm["res"], nm["bank"], w_auto)
    if recipe.startswith("w"):
        return fuse(nm["res"], nm["bank"], float(recipe[1:]))
    if recipe == "s16":
        return fuse(nm["res16"], nm["bank"], 1.0)
    if recipe == "white":
        return fuse(nm["white"], nm["bank"], 1.0)
    if recipe == "maxnorm":
        return fuse((nm["res"] - mx["res"][0]) / mx["res"][1], (nm["bank"] - mx["bank"][0]) / mx["bank"][1], 1.0)
    raise ValueError(f"unknown variant map {recipe!r}")


def normalise_sets(raw: dict, content_val: torch.Tensor) -> tuple[dict, dict, dict]:
    """Every map kind of every set normalised by the held-back goods' cells (raw: set ->
    kind -> [N, 1, h, w], with a "val" set). Returns the normalised maps, the (median,
    spread) per kind and the goods' image-maximum statistics per kind."""
    norms = {kd: cell_norm(raw["val"][kd], content_val) for kd in raw["val"]}
    nm = {s: {kd: (m - norms[kd][0]) / norms[kd][1] for kd, m in maps.items()} for s, maps in raw.items()}
    mx = {kd: max_stats(nm["val"][kd]) for kd in nm["val"]}
    return nm, norms, mx


def all_scores(nm: dict, w_auto: float, mx: dict, variants: dict = VARIANTS) -> dict:
    """variant -> set -> image scores."""
    out = {}
    for name, (_, recipe, pool) in variants.items():
        out[name] = {s: image_scores(variant_map(maps, recipe, w_auto, mx), pool) for s, maps in nm.items()}
    return out


# --------------------------------------------------------------------------- maps of the networks


@torch.no_grad()
def residual_power(G, feats: torch.Tensor, content: torch.Tensor, bs: int = 8) -> torch.Tensor:
    """Per channel, the mean squared restoration residual over the part's cells of the
    held-back goods [F]: the whitened variant's unit."""
    acc, n = None, 0.0
    for i in range(0, len(feats), bs):
        f = feats[i:i + bs]
        on = content[i:i + bs].to(f.device) > 0
        e = (G(f) - f) ** 2
        s = (e * on).sum((0, 2, 3)).double()
        acc = s if acc is None else acc + s
        n += float(on.sum())
    return (acc / max(n, 1.0)).float().clamp_min(1e-8)


@torch.no_grad()
def raw_maps(scorer, D, feats: torch.Tensor, power: torch.Tensor, split: int, m: int = CTX_M,
             bs: int = 8) -> dict:
    """Raw cell maps [N, 1, h, w] (on the CPU) of standardised features, by kind:
      res    RMS over channels of G(f) - f (the graph's GAN map)
      res16  the same over the channels from `split` on (the backbone's stride-16 ones)
      white  RMS over channels of (G(f) - f) / sqrt(power) (each channel in units of the goods' residual)
      bank   distance to the nearest bank cell (the graph's bank map)
      ctx    distance to the nearest of the m bank cells closest to G(f): the bank looked up
             where the restoration says what belongs there (never below `bank`)
      disc   -D(f), the discriminator's "not real" per cell (zeros without D)."""
    out = {kd: [] for kd in MAP_KINDS}
    bank_t, bank_sq = scorer.bank_t, scorer.bank_sq
    inv = power.reshape(1, -1, 1, 1).rsqrt()
    hi = slice(split, None) if feats.shape[1] > split else slice(None)
    for i in range(0, len(feats), bs):
        f = feats[i:i + bs]
        n, c, h, w = f.shape
        g = scorer.G(f)
        e = g - f
        out["res"].append((e ** 2).mean(1, keepdim=True).clamp_min(1e-12).sqrt())
        out["res16"].append((e[:, hi] ** 2).mean(1, keepdim=True).clamp_min(1e-12).sqrt())
        out["white"].append(((e * inv) ** 2).mean(1, keepdim=True).clamp_min(1e-12).sqrt())
        cf = f.permute(0, 2, 3, 1).reshape(n * h * w, c)
        cg = g.permute(0, 2, 3, 1).reshape(n * h * w, c)
        d2f = (cf ** 2).sum(1, keepdim=True) - 2.0 * cf @ bank_t + bank_sq
        out["bank"].append(d2f.min(1).values.clamp_min(1e-12).sqrt().reshape(n, 1, h, w))
        d2g = (cg ** 2).sum(1, keepdim=True) - 2.0 * cg @ bank_t + bank_sq
        near = d2g.topk(min(m, d2g.shape[1]), dim=1, largest=False).indices
        out["ctx"].append(d2f.gather(1, near).min(1).values.clamp_min(1e-12).sqrt().reshape(n, 1, h, w))
        out["disc"].append(-D(f) if D is not None else torch.zeros(n, 1, h, w, device=f.device))
    return {kd: torch.cat(v).float().cpu() for kd, v in out.items()}


# --------------------------------------------------------------------------- pixel AUROC


def pixel_samples(eval_good, eval_defect, S: int, resize: str, seed: int, cap: int = 2_000_000):
    """Per evaluation image (goods, then defects), the flat pixel indices whose map values
    the pixel AUROC of every variant compares: all defect pixels (mask on the part; at most
    `cap`, a random share beyond), and a random share of the part's other pixels, one
    probability for every image so that pixels count alike (about `cap` in all at most).
    Returns ([(pos, neg)] per image, the number of defect images with masks); None where
    no defect image has a mask."""
    masks = [find_mask(p) for p in eval_defect]
    have = sum(mp is not None for mp in masks)
    if not have:
        return None, 0
    rng = np.random.RandomState(seed)
    p_neg = min(1.0, cap / max(1, (len(eval_good) + have) * S * S))
    out = []
    for i, pth in enumerate(list(eval_good) + list(eval_defect)):
        inside = content_mask(pth, S, resize).ravel()
        j = i - len(eval_good)
        mk = load_mask(masks[j], S, resize).ravel() if j >= 0 and masks[j] is not None else None
        if j >= 0 and mk is None:  # a defect image without a mask: no pixel of it counts
            out.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
            continue
        neg = inside & ~mk if mk is not None else inside
        neg = np.flatnonzero(neg & (rng.random_sample(S * S) < p_neg))
        pos = np.flatnonzero(mk & inside) if mk is not None else np.zeros(0, np.int64)
        out.append((pos, neg))
    n_pos = sum(len(p) for p, _ in out)
    if n_pos > cap:  # keep a random `cap` of them
        keep = cap / n_pos
        out = [(p[rng.random_sample(len(p)) < keep], n) for p, n in out]
    return out, have


def pixel_auroc_of(maps: torch.Tensor, samples, S: int, device, bs: int = 32) -> float:
    """Pixel AUROC of cell maps [N, 1, h, w] (goods then defects, as `samples`) brought to
    the input's size as the graph does (bilinear)."""
    pos, neg = [], []
    for i in range(0, len(maps), bs):
        up = F.interpolate(maps[i:i + bs].to(device), size=(S, S), mode="bilinear", align_corners=False)
        up = up.flatten(1).cpu().numpy()
        for j in range(up.shape[0]):
            p, n = samples[i + j]
            pos.append(up[j, p])
            neg.append(up[j, n])
    return auroc(np.concatenate(pos), np.concatenate(neg))


# --------------------------------------------------------------------------- the report


def rel(p: Path, base: Path | None) -> str:
    try:
        return str(p.resolve().relative_to(base.resolve())) if base is not None else str(p)
    except ValueError:
        return str(p)


def report(ctx: dict, sets, args, out: Path, device) -> dict:
    """Scores every variant on the held-back goods, the synthetic defects and the test split,
    logs the table (image AUROC on the test split for information, never used to choose)
    and writes OUT/eval-variants.json. Returns variant -> image AUROC."""
    nm, w_auto, mx = ctx["normalised"], ctx["w_auto"], ctx["max_stats"]
    scores = all_scores(nm, w_auto, mx)
    samples, have = (None, 0)
    if ctx.get("pixels", True):
        samples, have = pixel_samples(sets.eval_good, sets.eval_defect, args.size, args.resize, args.seed)
    res = {}
    log("")
    log("scoring variants (the same networks; test split for information only, nothing chosen on it; "
        "synthetic: held-back goods vs the same with synthetic defects):")
    log(f"  {'variant':<11} {'image AUROC':>11} {'pixel AUROC':>11} {'synthetic':>9}  what")
    for name, (desc, recipe, pool) in VARIANTS.items():
        sc = scores[name]
        d = {"desc": desc, "image_auroc": auroc(sc["ed"], sc["eg"]), "synthetic_auroc": auroc(sc["syn"], sc["val"]),
             "scores": {k: [round(float(v), 5) for v in sc[s]] for k, s in
                        (("good", "eg"), ("defect", "ed"), ("held_back", "val"), ("synthetic", "syn"))}}
        if samples is not None and pool == "max":  # the pooled variants share their map with another
            maps = torch.cat([variant_map(nm["eg"], recipe, w_auto, mx), variant_map(nm["ed"], recipe, w_auto, mx)])
            d["pixel_auroc"] = pixel_auroc_of(maps, samples, args.size, device)
        res[name] = d
        px = d.get("pixel_auroc")
        log(f"  {name:<11} {d['image_auroc']:11.4f} {'-' if px is None else f'{px:.4f}':>11} "
            f"{d['synthetic_auroc']:9.4f}  {desc}")
    base = getattr(args, "data", None)
    doc = {
        "set": args.name or out.resolve().name, "seed": args.seed,
        "gan_weight": ctx["w_graph"], "gan_weight_chosen": w_auto,
        "weight_choice": [{"weight": w, "synthetic_auroc": a, "separation": s} for w, a, s in ctx["weight_table"]],
        "synthetic_images": int(len(nm["syn"]["res"])), "masks": have,
        "good": [rel(p, base) for p in sets.eval_good], "defect": [rel(p, base) for p in sets.eval_defect],
        "variants": res,
    }
    (out / "eval-variants.json").write_text(json.dumps(doc))
    log(f"  per-image scores of every variant: {out / 'eval-variants.json'}")
    return {k: v["image_auroc"] for k, v in res.items()}
