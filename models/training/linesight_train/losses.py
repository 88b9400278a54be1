"""Training losses and the SSIM they share with the scoring graph."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def focal_loss(logit: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss: defect pixels are few; easy background pixels are down-weighted."""
    ce = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    p = torch.sigmoid(logit)
    pt = p * target + (1 - p) * (1 - target)
    return (ce * (1 - pt) ** gamma).mean()


def gaussian_kernel1d(sigma: float, radius: int | None = None) -> torch.Tensor:
    if radius is None:
        radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return k / k.sum()


def ssim_map(a: torch.Tensor, b: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """SSIM per pixel and channel for images in [-1, 1] (converted to [0, 1]); win is a
    [1,1,k,k] Gaussian window. Zero-free reflect padding keeps the size."""
    a = (a + 1) * 0.5
    b = (b + 1) * 0.5
    C = a.shape[1]
    k = win.shape[-1]
    w = win.expand(C, 1, k, k)
    pad = k // 2

    def filt(t):
        return F.conv2d(F.pad(t, (pad, pad, pad, pad), mode="reflect"), w, groups=C)

    mu_a, mu_b = filt(a), filt(b)
    saa = filt(a * a) - mu_a * mu_a
    sbb = filt(b * b) - mu_b * mu_b
    sab = filt(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
