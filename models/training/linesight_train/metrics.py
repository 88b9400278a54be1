"""Figures of merit: AUROC, score statistics."""
from __future__ import annotations

import numpy as np


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Rank-based AUROC (Mann-Whitney U), ties averaged. pos = anomalous scores."""
    pos = np.asarray(pos, dtype=np.float64).ravel()
    neg = np.asarray(neg, dtype=np.float64).ravel()
    n1, n0 = len(pos), len(neg)
    if n1 == 0 or n0 == 0:
        return float("nan")
    s = np.concatenate([pos, neg])
    order = np.argsort(s, kind="mergesort")
    sv = s[order]
    _, start, counts = np.unique(sv, return_index=True, return_counts=True)
    avg_rank = start + (counts - 1) / 2.0 + 1.0
    ranks = np.empty(len(s), dtype=np.float64)
    ranks[order] = np.repeat(avg_rank, counts)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def quantile_stats(s: np.ndarray) -> dict:
    return {
        "n": len(s), "mean": float(np.mean(s)), "std": float(np.std(s)), "min": float(np.min(s)), "max": float(np.max(s)),
        "p50": float(np.quantile(s, 0.5)), "p90": float(np.quantile(s, 0.9)), "p95": float(np.quantile(s, 0.95)),
        "p99": float(np.quantile(s, 0.99)), "p995": float(np.quantile(s, 0.995)),
    }
