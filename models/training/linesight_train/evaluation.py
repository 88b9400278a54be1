"""Calibration on the held-back goods and evaluation on the evaluation sets, through the
graph that is exported."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .data import content_mask, defect_kind, find_mask, load_mask, to_model_input
from .log import fmt_s, log
from .metrics import auroc, quantile_stats


def score_images(scorer, u8: np.ndarray, device, bs=64) -> tuple[np.ndarray, torch.Tensor]:
    """Scores and anomaly maps of the images u8 [N,C,S,S]."""
    sc = scorer.to(device)
    res, maps = [], []
    with torch.no_grad():
        for i in range(0, len(u8), bs):
            s, m_ = sc(to_model_input(torch.from_numpy(u8[i:i + bs]).to(device)))
            res.append(s.float().cpu())
            maps.append(m_.float().cpu())
    return torch.cat(res).numpy().astype(np.float64), torch.cat(maps)


def calibrate(scorer, xval: np.ndarray, args, device) -> dict:
    """Score statistics of the held-back goods and the threshold q + margin * (q - p50)."""
    t_cal = time.time()
    s_val, _ = score_images(scorer, xval, device)
    calib = quantile_stats(s_val)
    qv = float(np.quantile(s_val, args.quantile))
    calib["threshold"] = qv + args.margin * (qv - calib["p50"])
    log("")
    log(f"calibration on {calib['n']} held-back goods: mean {calib['mean']:.5f} std {calib['std']:.5f} "
        f"p50 {calib['p50']:.5f} p99 {calib['p99']:.5f} max {calib['max']:.5f} -> threshold {calib['threshold']:.5f} "
        f"({time.time() - t_cal:.1f}s)")
    return calib


def per_kind(paths: list[Path], s_ed: np.ndarray, s_eg: np.ndarray, thr: float) -> dict:
    """AUROC against all goods and recall at the threshold, per defect kind."""
    kinds = [defect_kind(p) or "defect" for p in paths]
    per = {}
    for kd in sorted(set(kinds)):
        sel = np.array([k_ == kd for k_ in kinds])
        per[kd] = {"n": int(sel.sum()), "auroc": auroc(s_ed[sel], s_eg) if len(s_eg) else float("nan"),
                   "recall": float(np.mean(s_ed[sel] > thr))}
    return per


def pixel_auroc(eval_defect, masks, m_ed, eval_good, m_eg, S: int, resize: str, seed: int) -> float:
    """Over the part's pixels (letterbox padding is neither defect nor good) of the defect
    images with masks and of every good image, at most 2 million of each."""
    pos_px, neg_px = [], []
    # (numpy: torch's threaded indexing of small arrays crawled with four runs on one host)
    for i, mp in enumerate(masks):
        if mp is None:
            continue
        mk = load_mask(mp, S, resize)
        inside = content_mask(eval_defect[i], S, resize)
        mv = m_ed[i, 0].numpy()
        pos_px.append(mv[mk & inside])
        neg_px.append(mv[~mk & inside])
    for i, pth in enumerate(eval_good):
        neg_px.append(m_eg[i, 0].numpy()[content_mask(pth, S, resize)])
    pos_px, neg_px = np.concatenate(pos_px), np.concatenate(neg_px)
    r = np.random.RandomState(seed)
    cap = 2_000_000
    if len(pos_px) > cap:
        pos_px = pos_px[r.choice(len(pos_px), cap, replace=False)]
    if len(neg_px) > cap:
        neg_px = neg_px[r.choice(len(neg_px), cap, replace=False)]
    return auroc(pos_px, neg_px)


def evaluate(scorer, sets, xeg, xed, threshold: float, args, name: str, device, t_start, t_cal) -> dict:
    """Image AUROC, recall and false rejects at the threshold, per-kind figures and the
    pixel AUROC where masks exist (sets: data.Sets; xeg, xed: their decoded images, either
    may be None). Writes every image's score beside the checkpoint. t_start, t_cal: when
    the run and its calibration began, for the log."""
    eval_good, eval_defect = sets.eval_good, sets.eval_defect
    S, R = args.size, args.resize
    ev = {"data": sets.eval_desc, "good": 0 if xeg is None else len(xeg), "defect": 0 if xed is None else len(xed)}
    s_eg, m_eg = score_images(scorer, xeg, device) if xeg is not None else (np.zeros(0), None)
    s_ed, m_ed = score_images(scorer, xed, device) if xed is not None else (np.zeros(0), None)
    log(f"  evaluation scores and maps in {time.time() - t_cal:.1f}s since calibration began")
    ev["image_auroc"] = auroc(s_ed, s_eg) if len(s_ed) and len(s_eg) else None
    ev["recall_at_threshold"] = float(np.mean(s_ed > threshold)) if len(s_ed) else None
    ev["false_reject_rate_at_threshold"] = float(np.mean(s_eg > threshold)) if len(s_eg) else None
    if xed is not None:
        ev["per_kind"] = per_kind(eval_defect, s_ed, s_eg, threshold)
        masks = [find_mask(p) for p in eval_defect]
        have = sum(mp is not None for mp in masks)
        if have and m_eg is not None:
            t_px = time.time()
            ev["pixel_auroc"] = pixel_auroc(eval_defect, masks, m_ed, eval_good, m_eg, S, R, args.seed)
            ev["masks"] = have
            log(f"  pixel AUROC over {have} masks in {time.time() - t_px:.1f}s")
    try:  # per-image scores beside the checkpoint, for comparing or combining runs
        (args.ckpt_dir / f"linesight-{name}-eval-scores.json").write_text(json.dumps({
            "good": [[str(p_), float(v)] for p_, v in zip(eval_good or [], s_eg)],
            "defect": [[str(p_), float(v)] for p_, v in zip(eval_defect or [], s_ed)]}))
    except OSError as e:
        log(f"note: per-image scores not saved ({e})")
    log("")
    log(f"evaluation ({sets.eval_desc}): {ev['good']} good, {ev['defect']} defect (elapsed {fmt_s(time.time() - t_start)})")
    for k in ("image_auroc", "pixel_auroc", "recall_at_threshold", "false_reject_rate_at_threshold"):
        if ev.get(k) is not None:
            extra = f"  ({ev['masks']} defect images with masks)" if k == "pixel_auroc" else ""
            log(f"  {k:<32} {ev[k]:.4f}{extra}")
    for kd, d_ in (ev.get("per_kind") or {}).items():
        log(f"  kind {kd:<20} n {d_['n']:4d}  auroc {d_['auroc']:.4f}  recall {d_['recall']:.4f}")
    return ev
