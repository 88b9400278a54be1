"""The exported scoring graph: image -> (score, anomaly_map)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import standardize
from .losses import gaussian_kernel1d, ssim_map
from .networks import Discriminator, Generator, SegHead

MAP_VARIANTS = {
    # name: weights of the components (residual, ssim, disc, seg)
    "res": (1.0, 0.0, 0.0, 0.0),
    "res+ssim": (1.0, 1.0, 0.0, 0.0),
    "res+disc": (1.0, 0.0, 1.0, 0.0),
    "res+ssim+disc": (1.0, 1.0, 1.0, 0.0),
    "ssim": (0.0, 1.0, 0.0, 0.0),
    "seg": (0.0, 0.0, 0.0, 1.0),
    "seg+res": (1.0, 0.0, 0.0, 1.0),
}
SEG_VARIANTS = ("seg", "seg+res")


class Scorer(nn.Module):
    """The exported graph: image -> (score [N], anomaly_map [N,1,S,S]).

    anomaly_map = Gaussian-smoothed weighted sum of
      residual: |x - G(x)| averaged over channels at full, 1/2 and 1/4 scale (average-pooled
                images), upsampled back, averaged over the scales;
      ssim:     (1 - SSIM(x, G(x))) / 2, channel mean;
      disc:     |f_l(x) - f_l(G(x))| channel mean over the discriminator's first feature maps,
                upsampled and averaged;
      seg:      sigmoid(SegHead(x, G(x))), the defect probability painted by the segmentation head;
    each component divided by its mean over good training images (so weights are comparable).
    With pixel statistics (pix_mu, pix_sd: per-pixel mean of the smoothed map over good
    training images, and how far their top 1% reach above it: pixel_stats), the map is
    (map - mu) / sd: how unusual each pixel is *for that place on the part*. Fixtured parts
    have hole edges and rims that never reconstruct perfectly; this stops them from drowning
    small defects elsewhere.
    score = max over the map after a k x k average pooling (defects are small)."""

    def __init__(self, G: Generator | None, D: Discriminator | None, size: int, weights=(1.0, 0.0, 0.0, 0.0),
                 norms=(1.0, 1.0, 1.0, 1.0), pool: int = 8, sigma: float = 2.0, disc_layers: int = 2,
                 pix_stats=None, seg: SegHead | None = None, standardize: bool = False):
        super().__init__()
        self.standardize = standardize
        weights = tuple(weights) + (0.0,) * (4 - len(weights))
        norms = tuple(norms) + (1.0,) * (4 - len(norms))
        self.seg = seg if weights[3] > 0 else None
        self.pix = pix_stats is not None
        if self.pix:
            self.register_buffer("pix_mu", pix_stats[0].clone())
            self.register_buffer("pix_sd", pix_stats[1].clone())
        self.G = G
        self.D = D if weights[2] > 0 else None
        self.size = size
        self.w = [float(w) / float(n) for w, n in zip(weights, norms)]
        self.pool = int(pool)
        self.disc_layers = disc_layers
        self.register_buffer("ssim_win", torch.outer(gaussian_kernel1d(1.5, 5), gaussian_kernel1d(1.5, 5))[None, None])
        g = gaussian_kernel1d(sigma)
        self.register_buffer("smooth", torch.outer(g, g)[None, None])

    def components(self, x, xh):
        S = self.size
        out = []
        if self.w[0] != 0:
            r = (x - xh).abs().mean(1, keepdim=True)
            acc = r
            for s in (2, 4):
                rs = (F.avg_pool2d(x, s, s) - F.avg_pool2d(xh, s, s)).abs().mean(1, keepdim=True)
                acc = acc + F.interpolate(rs, size=(S, S), mode="bilinear", align_corners=False)
            out.append(acc / 3.0)
        else:
            out.append(None)
        if self.w[1] != 0:
            out.append(((1 - ssim_map(x, xh, self.ssim_win)) * 0.5).mean(1, keepdim=True))
        else:
            out.append(None)
        if self.w[2] != 0 and self.D is not None:
            _, fa = self.D(x, self.disc_layers)
            _, fb = self.D(xh, self.disc_layers)
            acc = None
            for a, b in zip(fa, fb):
                d = F.interpolate((a - b).abs().mean(1, keepdim=True), size=(S, S), mode="bilinear", align_corners=False)
                acc = d if acc is None else acc + d
            out.append(acc / len(fa))
        else:
            out.append(None)
        if self.w[3] != 0 and self.seg is not None:
            out.append(torch.sigmoid(self.seg(x, xh)))
        else:
            out.append(None)
        return out

    def finish(self, amap):
        k = self.smooth.shape[-1]
        p = k // 2
        amap = F.conv2d(F.pad(amap, (p, p, p, p), mode="reflect"), self.smooth)
        if self.pix:
            amap = (amap - self.pix_mu) / self.pix_sd
        return pool_max(amap, self.pool), amap

    def forward(self, image):
        if self.standardize:
            image = standardize(image)
        xh, _ = self.G.reconstruct(image)
        xh = xh.clamp(-1.0, 1.0)
        comps = self.components(image, xh)
        amap = None
        for w, c in zip(self.w, comps):
            if c is None or w == 0:
                continue
            amap = c * w if amap is None else amap + c * w
        return self.finish(amap)


class Ensemble(nn.Module):
    """The exported graph with several members (same recipe, different seeds): the mean of
    their anomaly maps (each a Scorer's smoothed map, a z-map with pixel statistics), then
    the score as in Scorer: max of the k x k average-pooled map. Members trained from
    different seeds err on different good tiles, so the mean map separates better than
    any one of them (docs/detection.md)."""

    def __init__(self, members: list[Scorer], pool: int):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.pool = int(pool)

    def forward(self, image):
        amap = sum(m(image)[1] for m in self.members) / len(self.members)
        return pool_max(amap, self.pool), amap


def pool_max(amap: torch.Tensor, k: int) -> torch.Tensor:
    """Image score: max of the k x k average-pooled map (defects are small and local)."""
    pooled = F.avg_pool2d(amap, k, 1) if k > 1 else amap
    return pooled.flatten(1).amax(1)
