"""Choosing the scoring graph after training: map variant, per-pixel normalisation and
pooling, by AUROC on held-back goods against the same goods with synthetic defects (the
real evaluation set is shown for information, never used to choose)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from .anomalies import corrupt_in_crops
from .data import MEAN, STD, standardize, to_model_input
from .fit import net_size
from .log import log
from .metrics import auroc
from .scoring import MAP_VARIANTS, SEG_VARIANTS, Ensemble, Scorer, pool_max


@torch.no_grad()
def run_components(G, D, size, u8, device, bs=64, disc_layers=2, Sg=None, need=(1, 1, 1, 1), std=False):
    """Raw map components (res, ssim, disc, seg) [N,1,S,S] on CPU (zeros where not `need`ed
    or without a head), plus GANomaly's latent distance, for the images u8 [N,C,S,S]
    (standardized first if `std`)."""
    sc = Scorer(G, D, size, weights=need, disc_layers=disc_layers, seg=Sg).to(device).eval()
    outs = [[], [], [], []]
    lat = []
    for i in range(0, len(u8), bs):
        x = to_model_input(u8[i:i + bs].to(device))
        if std:
            x = standardize(x)
        xh, z, z2 = G(x)
        comps = sc.components(x, xh.clamp(-1.0, 1.0))
        for j in range(4):
            if comps[j] is not None:
                outs[j].append(comps[j].float().cpu())
        lat.append(((z - z2) ** 2).flatten(1).mean(1).float().cpu())
    # a missing component is a zero view that takes no memory (all training goods are scored)
    zeros = torch.zeros(1, 1, u8.shape[-2], u8.shape[-1]).expand(len(u8), -1, -1, -1)
    return [torch.cat(o) if o else zeros for o in outs], torch.cat(lat)


@torch.no_grad()
def variant_scores(comps, weights, norms, size, pool, sigma, device, bs=256, pix_stats=None):
    sc = Scorer(None, None, size, weights=weights, norms=norms, pool=pool, sigma=sigma, pix_stats=pix_stats).to(device)
    scores, maps = [], []
    n = comps[0].shape[0]
    for i in range(0, n, bs):
        amap = None
        for w, c in zip(sc.w, comps):
            if w == 0:
                continue
            t = c[i:i + bs].to(device) * w
            amap = t if amap is None else amap + t
        s, m = sc.finish(amap)
        scores.append(s.cpu())
        maps.append(m.cpu())
    return torch.cat(scores).numpy().astype(np.float64), torch.cat(maps)


def pixel_stats(comps, weights, norms, size, sigma, device):
    """Per-pixel centre and spread of the smoothed map over good training images: their mean,
    and how far above it the top 1% of them reach at that place (the mean of the highest
    max(1, N/100) values). A defect is what goes beyond the worst that good parts show
    there, and that tail, not the standard deviation, measures it (docs/detection.md,
    round 18). The spread has a floor of a fifth of its mean, so that never-varying
    background pixels cannot turn noise into huge values."""
    _, maps = variant_scores(comps, weights, norms, size, 1, sigma, device)
    mu = maps.mean(0, keepdim=True)
    k = max(1, round(0.01 * len(maps)))
    sd = maps.topk(k, dim=0).values.mean(0, keepdim=True) - mu
    sd = sd.clamp_min(0.2 * float(sd.mean()))
    return mu, sd


@dataclass
class Choice:
    """The chosen scoring: map variant, pooling, smoothing and, per member, the component
    norms and (with per-pixel normalisation) the pixel statistics."""
    variant: str
    pool: int
    pixel_norm: bool
    sigma: float
    norms: list  # per member: each component's mean over the training goods
    pix_stats: list | None  # per member: (mu, sd), with pixel_norm


def candidate_variants(args, has_seg: bool) -> list[str]:
    # With a segmentation head only its own map competes (with or without per-pixel z and
    # pooling): restoration-only maps never came close, and where the synthetic defects
    # picked seg+res it cost 0.03 and 0.06 real AUROC (docs/detection.md).
    auto = ["seg"] if has_seg else [v for v in MAP_VARIANTS if v not in SEG_VARIANTS]
    variants = auto if args.map == "auto" else [args.map]
    if not has_seg and variants[0] in SEG_VARIANTS:
        raise SystemExit(f"error: --map {args.map} needs the segmentation head (--seg-width > 0)")
    return variants


def synthetic_defects(xval: torch.Tensor, cval: torch.Tensor, args, device) -> torch.Tensor:
    """The model-selection set: the held-back goods with synthetic defects (at least 64
    images, from a fixed seed), uint8 on the CPU."""
    synth = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(args.seed + 12345)
        xs = to_model_input(xval.to(device))
        for _ in range(max(1, math.ceil(64 / len(xs)))):
            xin, _ = corrupt_in_crops(xs, cval.to(device), net_size(args), 1.0, args.stroke_frac, args.shade_frac)
            synth.append(((xin.clamp(-1, 1) * STD + MEAN) * 255).round().clamp(0, 255).to(torch.uint8).cpu())
    return torch.cat(synth)


def member_components(members, sets: dict, S: int, device, need, std: bool):
    """Raw map components and latent distances of every member on every set, and each
    member's component norms (their means over the training goods)."""
    comps, lats, norms = [], [], []
    for G, D, Sg in members:
        c, lt = {}, {}
        for key, u8 in sets.items():
            c[key], lt[key] = run_components(G, D, S, u8, device, Sg=Sg, need=need, std=std)
        comps.append(c)
        lats.append(lt)
        norms.append([max(float(x.mean()), 1e-8) for x in c["tr"]])
    return comps, lats, norms


def mean_map(comps, norms, pix_stats, variant: str, key: str, S: int, sigma: float, device) -> torch.Tensor:
    """The candidate map of every image of a set, averaged over the members."""
    acc = None
    for j in range(len(comps)):
        _, m_ = variant_scores(comps[j][key], MAP_VARIANTS[variant], norms[j], S, 1, sigma, device,
                               pix_stats=None if pix_stats is None else pix_stats[j])
        acc = m_ if acc is None else acc + m_
    return acc / len(comps)


def set_scores(maps: torch.Tensor, k: int, device) -> np.ndarray:
    return torch.cat([pool_max(maps[i:i + 256].to(device), k).cpu() for i in range(0, len(maps), 256)]
                     ).numpy().astype(np.float64)


def choose_scoring(args, members, S: int, xtrain: torch.Tensor, xval: torch.Tensor, cval: torch.Tensor,
                   xeval, device) -> Choice:
    """Compares the candidate maps, with and without per-pixel normalisation, at each
    pooling, on the held-back goods xval against the same with synthetic defects, and picks
    the best synthetic AUROC (the default wins ties within 0.002). xeval: (good, defect) u8
    evaluation images or None, shown and never used to choose."""
    Sn = net_size(args)
    K = len(members)
    # smoothing and pooling in pixels of the scale the networks were trained at
    sigma = max(1.0, Sn / 64.0)
    pools = [args.pool] if args.pool > 0 else sorted({max(1, Sn // d) for d in (64, 32, 16, 8)})
    variants = candidate_variants(args, members[0][2] is not None)
    # only the components that some candidate map uses are computed
    need = tuple(float(any(MAP_VARIANTS[v][i] > 0 for v in variants)) for i in range(4))
    sets = {"tr": xtrain, "val": xval, "syn": synthetic_defects(xval, cval, args, device)}
    if xeval is not None:
        sets["eg"], sets["ed"] = xeval
    with_eval = xeval is not None
    t_c = time.time()
    comps, lats, norms = member_components(members, sets, S, device, need, args.standardize == "on")
    log(f"map components of {K} member(s) on {sum(len(u) for u in sets.values())} images in {time.time() - t_c:.1f}s")

    default_variant, default_pool = "res+ssim", max(1, Sn // 16)
    table = []
    log("")
    log("scoring variants (selection: held-back goods vs the same with synthetic defects; "
        "the real evaluation set is shown for information, never used to choose):")
    log(f"  {'map':<15} {'pool':>4}  {'synthetic AUROC':>15}  {'eval AUROC':>10}")
    if with_eval:
        log(f"  {'ganomaly-latent':<15} {'-':>4}  {auroc(lats[0]['syn'].numpy(), lats[0]['val'].numpy()):15.4f}  "
            f"{auroc(lats[0]['ed'].numpy(), lats[0]['eg'].numpy()):10.4f}   (plain GANomaly score, for reference)")
    pix_choices = [False, True] if args.pixel_norm == "auto" else [args.pixel_norm == "on"]
    pix_cache = {}  # variant -> per-member pixel statistics
    for v in variants:
        for pn in pix_choices:
            if pn and v not in pix_cache:
                pix_cache[v] = [pixel_stats(comps[j]["tr"], MAP_VARIANTS[v], norms[j], S, sigma, device)
                                for j in range(K)]
            pix = pix_cache[v] if pn else None
            maps = {key: mean_map(comps, norms, pix, v, key, S, sigma, device) for key in sets if key != "tr"}
            for k in pools:
                a_syn = auroc(set_scores(maps["syn"], k, device), set_scores(maps["val"], k, device))
                a_ev = (auroc(set_scores(maps["ed"], k, device), set_scores(maps["eg"], k, device))
                        if with_eval else float("nan"))
                table.append((v + ("+pix" if pn else ""), k, a_syn, a_ev))
                log(f"  {v + ('+pix' if pn else ''):<15} {k:>4}  {a_syn:15.4f}  {a_ev:10.4f}")
            del maps
    if len(table) == 1:
        chosen = table[0]
    else:
        # best synthetic AUROC; the default wins ties within 0.002
        best = max(t_[2] for t_ in table)
        dflt = [t_ for t_ in table if t_[0] == default_variant and t_[1] == default_pool]
        chosen = dflt[0] if dflt and dflt[0][2] >= best - 0.002 else max(table, key=lambda t_: t_[2])
    name, pool_k = chosen[0], chosen[1]
    use_pix = name.endswith("+pix")
    variant = name.removesuffix("+pix")
    log(f"chosen: map {name}, pool {pool_k}, Gaussian sigma {sigma:g}" + (f", mean of {K} members" if K > 1 else "")
        + f" (components and comparison {time.time() - t_c:.1f}s)")
    return Choice(variant=variant, pool=pool_k, pixel_norm=use_pix, sigma=sigma, norms=norms,
                  pix_stats=pix_cache[variant] if use_pix else None)


def member_scorer(members, j: int, choice: Choice, S: int, std: bool, pool: int) -> Scorer:
    G, D, Sg = members[j]
    return Scorer(G, D, S, weights=MAP_VARIANTS[choice.variant], norms=choice.norms[j], pool=pool,
                  sigma=choice.sigma, pix_stats=choice.pix_stats[j] if choice.pixel_norm else None, seg=Sg,
                  standardize=std).eval()


def build_scorer(members, choice: Choice, S: int, std: bool):
    """The exported graph: one member's Scorer, or the Ensemble of all (each member's map
    unpooled, the mean map pooled)."""
    if len(members) == 1:
        return member_scorer(members, 0, choice, S, std, choice.pool)
    return Ensemble([member_scorer(members, j, choice, S, std, 1) for j in range(len(members))], choice.pool).eval()


def describe(choice: Choice, members: int) -> str:
    """The manifest's comment on what the outputs are."""
    pix = " per-pixel (map - mean) / (top-1% tail - mean) of good training images" if choice.pixel_norm else ""
    return ((f"mean of {members} members' maps; " if members > 1 else "") + f"anomaly_map: {choice.variant}{pix} "
            f"(Gaussian sigma {choice.sigma:g} px); score: max of the {choice.pool}x{choice.pool} "
            f"average-pooled map")
