#!/usr/bin/env python3
"""Train a linesight anomaly model (GANomaly family) on good images and export it to ONNX.

    python models/training/train.py --data DIR --out models/NAME [options]

Writes OUT/model.onnx (inputs `image` [1,C,S,S]; outputs `score` [1] and
`anomaly_map` [1,1,S,S], both computed inside the graph), OUT/model.toml (the manifest
that linesight reads) and OUT/train_log.txt. See README.md beside this file.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import copy
import datetime
import hashlib
import json
import math
import os
import random
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import torch
import torch.nn as nn
import torch.nn.functional as F

IMG_EXTS = {".png", ".jpg", ".jpeg", ".bmp"}
MEAN, STD = 0.5, 0.5  # per channel, after scaling pixels into [0, 1]
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}

# --------------------------------------------------------------------------- logging

_LOG_FILE = None


def log(msg: str = "") -> None:
    print(msg, flush=True)
    if _LOG_FILE is not None:
        _LOG_FILE.write(msg + "\n")
        _LOG_FILE.flush()


# --------------------------------------------------------------------------- data sets


def list_dir_images(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTS)


def read_list(f: Path) -> list[Path]:
    """Image paths one a line, relative to the folder above the list's folder."""
    base = f.resolve().parent.parent
    out = []
    for line in f.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line)
        out.append(p if p.is_absolute() else base / p)
    missing = [p for p in out if not p.is_file()]
    if missing:
        raise SystemExit(f"error: {f}: {len(missing)} of {len(out)} listed images do not exist "
                         f"(paths are read relative to {base}); first: {missing[0]}")
    return out


def resolve_arg_path(arg: str, data: Path | None) -> Path:
    p = Path(arg)
    if p.exists() or data is None or p.is_absolute():
        return p
    q = data / p
    return q if q.exists() else p


def load_set(arg: str, data: Path | None, what: str) -> tuple[list[Path], Path]:
    """A folder of images or a list file. Returns (paths, root) where root is the folder
    the kind sub-folders would be in."""
    p = resolve_arg_path(arg, data)
    if p.is_dir():
        paths = list_dir_images(p)
        root = p
    elif p.is_file():
        paths = read_list(p)
        root = Path(os.path.commonpath([str(q.parent) for q in paths])) if paths else p.parent
    else:
        raise SystemExit(f"error: {what} {arg!r}: no such folder or list file")
    if not paths:
        raise SystemExit(f"error: {what} {arg!r}: no images (png/jpg/jpeg/bmp) found")
    return paths, root


def defect_kind(p: Path, root: Path) -> str:
    try:
        rel = p.relative_to(root)
    except ValueError:
        rel = Path(p.name)
    if len(rel.parts) >= 2:
        return rel.parts[0]
    stem = p.stem
    if "__" in stem:
        return stem.split("__", 1)[0] or "defect"
    # as linesight's eval: the name less a trailing _<number> (missing_hole_000123)
    head, _, tail = stem.rpartition("_")
    if head and tail.isdigit():
        return head
    return "defect"


def find_mask(p: Path) -> Path | None:
    stem = p.stem
    cands = []
    for anc in (p.parent.parent, p.parent.parent.parent):
        for m in ("masks", "ground_truth"):
            for name in (stem + ".png", stem + "_mask.png"):
                cands.append(anc / m / name)
                cands.append(anc / m / p.parent.name / name)
    for c in cands:
        if c.is_file():
            return c
    return None


RESIZE_POLICIES = ("stretch", "letterbox", "fit")


def letterbox_rect(w: int, h: int, size: int, upscale: bool = True) -> tuple[int, int, int, int]:
    """Where a w x h image lands in the size x size letterbox: (x0, y0, nw, nh). The longer
    side becomes `size` (with upscale=False, the "fit" policy, only if it is longer: smaller
    images keep their pixel scale); integer round-half-up, as linesight's preprocess computes it."""
    m = max(w, h) if upscale else max(w, h, size)
    nw = max(1, (2 * w * size + m) // (2 * m))
    nh = max(1, (2 * h * size + m) // (2 * m))
    return (size - nw) // 2, (size - nh) // 2, nw, nh


def fit(im: Image.Image, size: int, resize: str, resample, pad=0) -> Image.Image:
    """stretch: each axis to size (aspect lost); letterbox: aspect kept, centred on a
    constant `pad` background; fit: as letterbox, but never enlarged."""
    if resize == "stretch":
        return im.resize((size, size), resample)
    x0, y0, nw, nh = letterbox_rect(im.size[0], im.size[1], size, resize != "fit")
    canvas = Image.new(im.mode, (size, size), pad)
    canvas.paste(im if im.size == (nw, nh) else im.resize((nw, nh), resample), (x0, y0))
    return canvas


def decode(path: Path, channels: str | None, size: int, resize: str = "stretch") -> np.ndarray:
    """The input contract: PIL decode, resize to size x size by the policy (bilinear),
    convert to L or RGB, uint8. (Images that are not already 8-bit L/RGB are first
    converted to 8-bit L or RGB so that the resize is bilinear.) Returns uint8 [C, size, size]."""
    with Image.open(path) as im:
        im.load()
        if im.mode not in ("L", "RGB"):
            im = im.convert("L" if im.mode in GRAY_MODES else "RGB")
        im = fit(im, size, resize, Image.BILINEAR)
        im = im.convert("L" if channels == "gray" else "RGB")
        a = np.asarray(im, dtype=np.uint8)
    if a.ndim == 2:
        a = a[None]
    else:
        a = a.transpose(2, 0, 1)
    return np.ascontiguousarray(a)


def is_gray_image(path: Path) -> bool:
    with Image.open(path) as im:
        if im.mode in GRAY_MODES:
            return True
        im = im.convert("RGB")
        im.thumbnail((256, 256))
        a = np.asarray(im, dtype=np.int16)
    return int(np.abs(a[..., 0] - a[..., 1]).max()) <= 3 and int(np.abs(a[..., 1] - a[..., 2]).max()) <= 3


def load_images(paths: list[Path], channels: str, size: int, resize: str, workers: int = 8) -> np.ndarray:
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        arrs = list(ex.map(lambda p: decode(p, channels, size, resize), paths))
    return np.stack(arrs) if arrs else np.zeros((0, 1 if channels == "gray" else 3, size, size), np.uint8)


def load_mask(path: Path, size: int, resize: str) -> np.ndarray:
    with Image.open(path) as im:
        im = fit(im.convert("L"), size, resize, Image.NEAREST)
        return np.asarray(im) > 127


def content_mask(path: Path, size: int, resize: str) -> np.ndarray:
    """The model-input pixels that show the image (not letterbox padding)."""
    with Image.open(path) as im:
        w, h = im.size
    m = np.zeros((size, size), bool)
    if resize == "stretch":
        m[:] = True
    else:
        x0, y0, nw, nh = letterbox_rect(w, h, size, resize != "fit")
        m[y0:y0 + nh, x0:x0 + nw] = True
    return m


def to_model_input(u8: torch.Tensor) -> torch.Tensor:
    return (u8.float() / 255.0 - MEAN) / STD


def standardize(x: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image exposure normalisation, the first step of every network: x minus the mean
    of the part's pixels, divided by their spread, to a spread of 0.25 ([-1,1] units).
    Statistics come from `ref` (default x), over all channels together (colour is kept)
    and over pixels brighter than black (letterbox padding is 0, so it is left out).
    Exposure varies across a line's life and across data sets (the magnetic-tile series
    exp1..exp6 are the same kind of tile at mean grey 66 to 150, their spread growing in
    proportion): after this a defect looks the same at every exposure."""
    ref = x if ref is None else ref
    inside = (ref > -1.0 + 1.0 / 255.0).to(ref.dtype)
    n = inside.flatten(1).sum(1).clamp_min(1.0)[:, None, None, None]
    mu = (ref * inside).flatten(1).sum(1)[:, None, None, None] / n
    var = (((ref - mu) * inside) ** 2).flatten(1).sum(1)[:, None, None, None] / n
    return (x - mu) / var.sqrt().clamp_min(0.01) * 0.25


# --------------------------------------------------------------------------- metrics


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


# --------------------------------------------------------------------------- networks


def norm2d(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True)
    raise ValueError(kind)


def n_levels(size: int) -> int:
    """Number of stride-2 levels down to a bottleneck of 4..7 pixels."""
    n = 0
    s = size
    while s % 2 == 0 and s // 2 >= 4:
        s //= 2
        n += 1
    return n


class Encoder(nn.Module):
    """Conv encoder: one stride-2 3x3 conv (+norm, LeakyReLU) per level, then a 1x1 conv
    to the latent code z (nz channels at the bottleneck's spatial size)."""

    def __init__(self, c_in: int, size: int, width: int, max_width: int, nz: int, norm: str):
        super().__init__()
        L = n_levels(size)
        self.chans = [min(width * 2 ** i, max_width) for i in range(L)]
        blocks = []
        c = c_in
        for i, co in enumerate(self.chans):
            layers = [nn.Conv2d(c, co, 3, 2, 1, bias=(i == 0))]
            if i > 0:
                layers.append(norm2d(norm, co))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            if i >= L - 2:  # a second conv at the two coarsest levels
                layers += [nn.Conv2d(co, co, 3, 1, 1, bias=False), norm2d(norm, co), nn.LeakyReLU(0.2, inplace=True)]
            blocks.append(nn.Sequential(*layers))
            c = co
        self.blocks = nn.ModuleList(blocks)
        self.to_z = nn.Conv2d(c, nz, 1)

    def forward(self, x):
        feats = []
        for b in self.blocks:
            x = b(x)
            feats.append(x)
        return self.to_z(x), feats


class Generator(nn.Module):
    """GANomaly E-D-E: encoder E1 -> latent z -> decoder D -> reconstruction x^ -> E2 -> z'.
    Skip connections (Skip-GANomaly style) only at coarse levels: feature maps whose side is
    at most size / skip_div. Fine levels carry no skip, so small defects cannot be copied
    through; the decoder has to paint normal appearance from the coarse context."""

    def __init__(self, c: int, size: int, width: int = 32, max_width: int = 96, nz: int = 64,
                 norm: str = "batch", skip_div: int = 8):
        super().__init__()
        self.size = size
        self.e1 = Encoder(c, size, width, max_width, nz, norm)
        self.e2 = Encoder(c, size, width, max_width, nz, norm)
        chans = self.e1.chans
        L = len(chans)
        res = [size // 2 ** (i + 1) for i in range(L)]  # side of encoder level i
        self.skip = [skip_div > 0 and res[i] <= size // skip_div and i < L - 1 for i in range(L)]
        self.from_z = nn.Sequential(nn.Conv2d(nz, chans[-1], 1, bias=False), norm2d(norm, chans[-1]),
                                    nn.LeakyReLU(0.2, inplace=True))
        ups = []
        # decoder level i turns side res[i] into res[i-1] (or size), input chans[i] (+ skip)
        for i in range(L - 1, -1, -1):
            c_in = chans[i] + (chans[i] if self.skip[i] else 0)
            c_out = chans[i - 1] if i > 0 else width
            layers = [nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), norm2d(norm, c_out), nn.LeakyReLU(0.2, inplace=True)]
            if i >= L - 2:
                layers += [nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), norm2d(norm, c_out), nn.LeakyReLU(0.2, inplace=True)]
            ups.append(nn.Sequential(*layers))
        self.ups = nn.ModuleList(ups)
        self.out = nn.Conv2d(width, c, 3, 1, 1)

    def reconstruct(self, x):
        z, feats = self.e1(x)
        L = len(feats)
        h = self.from_z(z)
        for j, up in enumerate(self.ups):
            i = L - 1 - j
            if self.skip[i]:
                h = torch.cat([h, feats[i]], 1)
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = up(h)
        return self.out(h), z  # linear output: a saturated tanh can get stuck

    def forward(self, x):
        xh, z = self.reconstruct(x)
        z2, _ = self.e2(xh)
        return xh, z, z2


class Discriminator(nn.Module):
    """DCGAN discriminator: 4x4 stride-2 convs and LeakyReLU down to 4x4, then a 4x4 conv
    to one logit. Spectral normalisation instead of BatchNorm keeps it Lipschitz (plain
    BN-DCGAN discriminators overpower the generator here within a few hundred steps and
    the feature-matching gradients then wreck the reconstruction). Returns the logit and
    the intermediate feature maps."""

    def __init__(self, c: int, size: int, width: int = 32, max_width: int = 256):
        super().__init__()
        L = n_levels(size)
        sn = nn.utils.parametrizations.spectral_norm
        layers = []
        ci = c
        for i in range(L):
            co = min(width * 2 ** i, max_width)
            layers.append(nn.Sequential(sn(nn.Conv2d(ci, co, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)))
            ci = co
        self.layers = nn.ModuleList(layers)
        bott = size // 2 ** L
        self.head = sn(nn.Conv2d(ci, 1, bott, 1, 0))

    def bake(self):
        """Replace the spectral-norm parametrisations by plain weights (for export)."""
        for m_ in self.modules():
            if nn.utils.parametrize.is_parametrized(m_, "weight"):
                nn.utils.parametrize.remove_parametrizations(m_, "weight", leave_parametrized=True)

    def forward(self, x, n_feats: int | None = None):
        feats = []
        for i, l in enumerate(self.layers):
            x = l(x)
            feats.append(x)
            if n_feats is not None and len(feats) >= n_feats:
                return None, feats
        return self.head(x).flatten(1).mean(1), feats


class SegHead(nn.Module):
    """The discriminative half (DRAEM-style): sees the input and the generator's restoration
    side by side and paints, per pixel, the logit that the pixel is a defect. Trained on the
    synthetic defects' masks, it learns which input-vs-restoration differences matter, so
    the textured noise that a pure residual map cannot tell from a defect is ignored.
    A small U-Net: two 3x3 convs per level, max-pool down, nearest up, skips at every level."""

    def __init__(self, c: int, size: int, width: int = 32, max_width: int = 128):
        super().__init__()
        L = max(2, min(4, n_levels(size)))
        self.chans = [min(width * 2 ** i, max_width) for i in range(L)]

        def block(ci, co):
            return nn.Sequential(nn.Conv2d(ci, co, 3, 1, 1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True),
                                 nn.Conv2d(co, co, 3, 1, 1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True))

        ci = 2 * c
        self.down = nn.ModuleList()
        for co in self.chans:
            self.down.append(block(ci, co))
            ci = co
        self.up = nn.ModuleList(block(self.chans[i + 1] + self.chans[i], self.chans[i]) for i in range(L - 2, -1, -1))
        self.out = nn.Conv2d(self.chans[0], 1, 1)

    def forward(self, x, xh):
        h = torch.cat([x, xh], 1)
        skips = []
        for i, b in enumerate(self.down):
            if i > 0:
                h = F.max_pool2d(h, 2)
            h = b(h)
            skips.append(h)
        for j, b in enumerate(self.up):
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = b(torch.cat([h, skips[len(skips) - 2 - j]], 1))
        return self.out(h)


def focal_loss(logit: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss: defect pixels are few; easy background pixels are down-weighted."""
    ce = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    p = torch.sigmoid(logit)
    pt = p * target + (1 - p) * (1 - target)
    return (ce * (1 - pt) ** gamma).mean()


# --------------------------------------------------------------------------- losses


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


# --------------------------------------------------------------------------- synthetic anomalies


def perlin(n: int, size: int, res: int, device) -> torch.Tensor:
    """n independent 2-D Perlin (gradient) noise fields [n, size, size], res cells per side,
    values roughly in [-0.7, 0.7]."""
    ang = torch.rand(n, res + 1, res + 1, device=device) * (2 * math.pi)
    g = torch.stack([torch.cos(ang), torch.sin(ang)], -1)  # [n, r+1, r+1, 2]
    t = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) * (res / size)
    i = t.floor().long().clamp(max=res - 1)
    f = t - i.float()
    iy, ix = i[:, None].expand(size, size), i[None, :].expand(size, size)
    fy, fx = f[:, None].expand(size, size), f[None, :].expand(size, size)

    def dot(dy, dx):
        gg = g[:, iy + dy, ix + dx]  # [n, S, S, 2]
        return gg[..., 0] * (fy - dy) + gg[..., 1] * (fx - dx)

    def fade(t_):
        return t_ * t_ * t_ * (t_ * (t_ * 6 - 15) + 10)

    u, v = fade(fx), fade(fy)
    n00, n01, n10, n11 = dot(0, 0), dot(0, 1), dot(1, 0), dot(1, 1)
    a = n00 + u * (n01 - n00)
    b = n10 + u * (n11 - n10)
    return a + v * (b - a)


def perlin_mixed(n: int, size: int, device, min_res: int = 1, max_res: int | None = None) -> torch.Tensor:
    """Perlin fields whose cell count per side is drawn per sample from powers of two."""
    max_res = max_res or max(1, size // 4)
    choices = [r for r in (1, 2, 4, 8, 16, 32, 64) if min_res <= r <= max_res]
    pick = torch.randint(len(choices), (n,))
    out = torch.empty(n, size, size, device=device)
    for j, r in enumerate(choices):
        idx = (pick == j).nonzero().flatten()
        if len(idx):
            out[idx.to(device)] = perlin(len(idx), size, r, device)
    return out


def stroke_field(n: int, size: int, device, segments: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Thin curved strokes (cracks, scratches: the commonest defect shape on any surface): a
    random walk of `segments` segments with smoothly turning direction. Returns each pixel's
    distance to the stroke [n,S,S] and the stroke's half-width [n,1,1] (0.5-1.5 px at 256 px)."""
    yy, xx = torch.meshgrid(torch.arange(size, device=device, dtype=torch.float32) + 0.5,
                            torch.arange(size, device=device, dtype=torch.float32) + 0.5, indexing="ij")
    p = torch.stack([xx, yy], -1)[None]  # [1,S,S,2]
    a = torch.rand(n, 2, device=device) * size
    ang = torch.rand(n, device=device) * (2 * math.pi)
    seg_len = size * (0.01 + 0.06 * torch.rand(n, device=device))
    dmin = torch.full((n, size, size), float("inf"), device=device)
    for _ in range(segments):
        ang = ang + 0.4 * torch.randn(n, device=device)
        b = a + torch.stack([torch.cos(ang), torch.sin(ang)], -1) * seg_len[:, None]
        ab = (b - a)[:, None, None]
        ap = p - a[:, None, None]
        t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-6)).clamp(0, 1)
        dmin = torch.minimum(dmin, (ap - t[..., None] * ab).norm(dim=-1))
        a = b
    width = (0.5 + 1.0 * torch.rand(n, 1, 1, device=device)) * max(1.0, size / 256.0)
    return dmin, width


def ellipses(n: int, size: int, device, r_min: float, r_max: float) -> torch.Tensor:
    """Filled ellipses at random places, radii r_min..r_max of the side, [n,S,S] in {0,1}."""
    yy = torch.arange(size, device=device, dtype=torch.float32)[None, :, None]
    xx = torch.arange(size, device=device, dtype=torch.float32)[None, None, :]
    cy = torch.rand(n, 1, 1, device=device) * size
    cx = torch.rand(n, 1, 1, device=device) * size
    ry = size * (r_min + (r_max - r_min) * torch.rand(n, 1, 1, device=device))
    rx = size * (r_min + (r_max - r_min) * torch.rand(n, 1, 1, device=device))
    return (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).float()


def blob_masks(n: int, size: int, device) -> torch.Tensor:
    """Perlin-shaped blobs, mostly confined to a random ellipse (defects are usually small),
    [n,1,S,S] in {0,1}."""
    noise = perlin_mixed(n, size, device, min_res=2, max_res=max(2, size // 8))
    thr = 0.15 + 0.35 * torch.rand(n, 1, 1, device=device)
    m = (noise > thr).float()
    ell = ellipses(n, size, device, 0.02, 0.30)
    local = (torch.rand(n, 1, 1, device=device) < 0.8).float()
    m = m * (local * ell + (1 - local))
    # never empty: fall back to the ellipse itself
    empty = (m.flatten(1).sum(1) < 4).float()[:, None, None]
    m = m * (1 - empty) + ell * empty
    return m[:, None]


def shading_field(n: int, size: int, device) -> torch.Tensor:
    """Large smooth brightness changes (uneven coating or grinding, stains, discolouration):
    a coarse Perlin blob inside a large ellipse, box-blurred twice so that its edge fades
    over about size/16 px. Returns the opacity [n,1,S,S] in [0,1]."""
    noise = perlin_mixed(n, size, device, min_res=1, max_res=4)
    thr = 0.3 * torch.rand(n, 1, 1, device=device) - 0.1
    m = ((noise > thr).float() * ellipses(n, size, device, 0.10, 0.45))[:, None]
    k = max(3, (size // 16) | 1)
    for _ in range(2):
        m = F.avg_pool2d(F.pad(m, (k // 2,) * 4, mode="replicate"), k, 1)
    return m / m.flatten(1).amax(1).clamp_min(1e-6)[:, None, None, None]


def corrupt(x: torch.Tensor, prob: float, stroke_frac: float = 0.25, shade_frac: float = 0.0,
            content: torch.Tensor | None = None, visible: float = 0.04) -> tuple[torch.Tensor, torch.Tensor]:
    """Generic synthetic defects on a fraction `prob` of the batch x ([-1,1], [B,C,S,S]).
    A share `stroke_frac` are thin darker or brighter strokes with a soft edge (cracks,
    scratches), `shade_frac` large smooth brightness changes (uneven surfaces), the rest
    Perlin-shaped blobs filled with an intensity shift, a foreign Perlin texture, cut-paste
    from another image of the batch, or local smoothing (lost texture).
    Defects stay inside `content` ([B,1,S,S], the pixels that show the part, not letterbox
    padding). Returns the corrupted batch and the target masks: the defect's pixels where the
    change is visible (more than `visible`, in [-1,1] units, within 2 px), and none at all
    where less than 30% of the defect is: a defect that nobody could see, such as smoothing
    an already smooth patch, must not teach the head to guess."""
    B, C, S, _ = x.shape
    dev = x.device
    m = blob_masks(B, S, dev)
    sel = (torch.rand(B, device=dev) < prob).float()[:, None, None, None]
    kind = torch.randint(4, (B,), device=dev)
    beta = (0.4 + 0.6 * torch.rand(B, 1, 1, 1, device=dev))
    sign = torch.where(torch.rand(B, 1, 1, 1, device=dev) < 0.5, -1.0, 1.0)

    # 0: intensity shift (brighter or darker), per channel slightly different
    shift = sign * (0.2 + 1.0 * torch.rand(B, 1, 1, 1, device=dev)) * (1 + 0.2 * torch.randn(B, C, 1, 1, device=dev))
    a0 = (x + shift).clamp(-1, 1)
    # 1: foreign texture: high-frequency Perlin noise with a random mean and contrast
    tex = perlin_mixed(B, S, dev, min_res=max(1, S // 32), max_res=max(1, S // 4))[:, None]
    tex = tex / (tex.flatten(1).abs().amax(1)[:, None, None, None] + 1e-6)
    tex = (torch.rand(B, 1, 1, 1, device=dev) * 1.6 - 0.8) + tex * (0.2 + 0.8 * torch.rand(B, 1, 1, 1, device=dev))
    if C > 1:
        tex = tex * (1 + 0.3 * torch.randn(B, C, 1, 1, device=dev))
    a1 = tex.clamp(-1, 1)
    # 2: cut-paste from another image of the batch, shifted, sometimes rotated 90 degrees
    src = x[torch.roll(torch.arange(B, device=dev), 1)] if B > 1 else x
    src = torch.roll(src, shifts=(int(torch.randint(S, ())), int(torch.randint(S, ()))), dims=(2, 3))
    if bool(torch.rand(()) < 0.5):
        src = torch.rot90(src, 1, (2, 3))
    a2 = src
    # 3: local smoothing
    k = max(3, (S // 16) | 1)
    a3 = F.avg_pool2d(F.pad(x, (k // 2,) * 4, mode="reflect"), k, 1)
    cand = torch.stack([a0, a1, a2, a3], 0)  # [4,B,C,S,S]
    alt = cand[kind, torch.arange(B, device=dev)]
    b = torch.where((kind == 0)[:, None, None, None], torch.ones_like(beta), beta)
    blob = x * (1 - b * m) + alt * (b * m)

    # strokes: mostly darker (cracks open dark), contrast from faint to strong, 1 px soft edge
    dist, half = stroke_field(B, S, dev)
    soft = max(1.0, S / 256.0)
    alpha_s = (1 - (dist - half).clamp_min(0) / soft).clamp(0, 1)[:, None]
    sign_s = torch.where(torch.rand(B, 1, 1, 1, device=dev) < 0.7, -1.0, 1.0)
    stroke = (x + sign_s * (0.15 + 0.75 * torch.rand(B, 1, 1, 1, device=dev)) * alpha_s).clamp(-1, 1)
    m_s = (dist <= half + 0.5 * soft).float()[:, None]
    # shading: a smooth additive bump or dip
    alpha_h = shading_field(B, S, dev)
    shade = (x + sign * (0.15 + 0.45 * torch.rand(B, 1, 1, 1, device=dev)) * alpha_h).clamp(-1, 1)
    m_h = (alpha_h > 0.5).float()

    u = torch.rand(B, 1, 1, 1, device=dev)
    is_s = u < stroke_frac
    is_h = (u >= stroke_frac) & (u < stroke_frac + shade_frac)
    xin = torch.where(is_s, stroke, torch.where(is_h, shade, blob))
    keep = sel if content is None else sel * content.float()
    m = torch.where(is_s, m_s, torch.where(is_h, m_h, m)) * keep
    xin = x + (xin - x) * keep
    changed = ((xin - x).abs().amax(1, keepdim=True) > visible).float()
    frac = (m * changed).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)
    m = m * F.max_pool2d(changed, 5, 1, 2) * (frac >= 0.3).float()[:, None, None, None]
    return xin, m


def content_boxes(content: torch.Tensor) -> torch.Tensor:
    """The bounding box (y0, y1, x0, x1; ends exclusive) of each image's part pixels,
    content [N,1,S,S] -> [N,4] long."""
    rows, cols = content[:, 0].any(2), content[:, 0].any(1)

    def span(a):
        idx = torch.arange(a.shape[1], device=a.device)[None].expand_as(a)
        lo = torch.where(a, idx, a.shape[1]).amin(1)
        hi = torch.where(a, idx + 1, 0).amax(1)
        return lo, hi

    y0, y1 = span(rows)
    x0, x1 = span(cols)
    return torch.stack([y0, y1, x0, x1], 1)


def crop_origins(boxes: torch.Tensor, S: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random top-left corners of c x c crops of S x S inputs, one per box: on the part
    where it is larger than the crop, else covering all of it along that axis."""

    def axis(a0, a1):
        lo = torch.minimum(a0, a1 - c).clamp(0, S - c)
        hi = torch.maximum(a0, a1 - c).clamp(0, S - c)
        return lo + (torch.rand(len(a0), device=boxes.device) * (hi - lo + 1).float()).long().clamp_max(hi - lo)

    return axis(boxes[:, 0], boxes[:, 1]), axis(boxes[:, 2], boxes[:, 3])


def crop_index(t: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, c: int):
    """Index tuple selecting the c x c crops at (ys, xs) of t [B,C,S,S] as [B,c,c,C]."""
    ar = torch.arange(c, device=t.device)
    b = torch.arange(t.shape[0], device=t.device)[:, None, None]
    return b, slice(None), (ys[:, None] + ar)[:, :, None], (xs[:, None] + ar)[:, None, :]


def crop(t: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, c: int) -> torch.Tensor:
    return t[crop_index(t, ys, xs, c)].permute(0, 3, 1, 2)


def corrupt_in_crops(x: torch.Tensor, content: torch.Tensor, c: int, *args) -> tuple[torch.Tensor, torch.Tensor]:
    """corrupt() at the training scale on inputs larger than the training crops: each image
    gets its synthetic defect inside one random c x c crop (so defects have the sizes the
    networks were trained on), pasted back into the whole input."""
    if c >= x.shape[-1]:
        return corrupt(x, *args, content=content)
    ys, xs = crop_origins(content_boxes(content), x.shape[-1], c)
    xin_c, m_c = corrupt(crop(x, ys, xs, c), *args, content=crop(content, ys, xs, c))
    xin, m = x.clone(), torch.zeros_like(x[:, :1])
    xin[crop_index(x, ys, xs, c)] = xin_c.permute(0, 2, 3, 1)
    m[crop_index(m, ys, xs, c)] = m_c.permute(0, 2, 3, 1)
    return xin, m


# --------------------------------------------------------------------------- scoring graph

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


# --------------------------------------------------------------------------- training


AUTO_MAX_SIZE = 512


def auto_size(paths: list[Path]) -> int:
    """--size 0: room for the largest training image at its own pixel scale (the fit policy
    then never resizes it), rounded up to a multiple of 64, capped at AUTO_MAX_SIZE (beyond
    it images are scaled down); at least 64."""
    def longest(p):
        with Image.open(p) as im:
            return max(im.size)
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        m = max(ex.map(longest, paths))
    return max(64, min(AUTO_MAX_SIZE, -(-m // 64) * 64))


def net_size(args) -> int:
    """The side of the images the networks train on: --crop, or the whole input."""
    return args.crop if 0 < args.crop < args.size else args.size


def pick_device(arg: str) -> torch.device:
    if arg == "cuda" or (arg == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda but torch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def fmt_s(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 60}m{s % 60:02d}s"


def make_monitor(S, xval_u8: torch.Tensor, cval: torch.Tensor, device, args, xeval=None):
    """Progress check on the held-back goods: their L1 reconstruction error, and the image
    AUROC between them and a fixed synthetic-defect copy of the score the run is building
    (the segmentation head's map if there is one, else the plain residual). With an
    evaluation set (xeval = (good u8, defect u8)) its AUROC is printed too, for information:
    it shows whether longer training still helps and is never used to choose anything."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(args.seed + 777)
        xs = to_model_input(xval_u8.to(device))
        xsyn, _ = corrupt_in_crops(xs, cval.to(device), net_size(args), 1.0, args.stroke_frac, args.shade_frac)
    c = net_size(args)

    @torch.no_grad()
    def monitor(G, Sg=None):
        sc = Scorer(G, None, S, weights=(0.0, 0.0, 0.0, 1.0) if Sg is not None else (1.0, 0.0, 0.0, 0.0),
                    pool=max(1, c // 16), sigma=max(1.0, c / 64.0), seg=Sg, standardize=args.standardize == "on").to(device)

        def scores(x):
            return torch.cat([sc(x[i:i + 64])[0] for i in range(0, len(x), 64)]).float().cpu().numpy()

        nets = [n_ for n_ in (G, Sg) if n_ is not None]
        for n_ in nets:
            n_.eval()
        xn = standardize(xs) if args.standardize == "on" else xs
        rec = torch.cat([(G.reconstruct(xn[i:i + 64])[0].clamp(-1, 1) - xn[i:i + 64]).abs().flatten(1).mean(1)
                         for i in range(0, len(xn), 64)])
        out = f"held-back rec {float(rec.mean()):.4f} synth AUROC {auroc(scores(xsyn), scores(xs)):.3f}"
        if xeval is not None:
            good, bad = (scores(to_model_input(u.to(device))) for u in xeval)
            out += f" eval AUROC {auroc(bad, good):.4f} (info)"
        for n_ in nets:
            n_.train()
        return out

    return monitor


def train(args, G, D, xtrain_u8, content, device, t_start, monitor=None, Sg=None, minutes=None):
    """Adversarial restoration training within `minutes` (default --max-minutes); content:
    the training images' part pixels (not padding). Returns (epochs completed, steps)."""
    minutes = args.max_minutes if minutes is None else minutes
    N = xtrain_u8.shape[0]
    bs = max(2, min(args.batch_size, N))
    steps_per_epoch = max(1, N // bs)
    epochs = args.epochs if args.epochs > 0 else max(1, math.ceil(args.steps / steps_per_epoch))
    optG = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.999))
    optD = torch.optim.Adam(D.parameters(), lr=args.lr, betas=(0.5, 0.999))
    optS = torch.optim.Adam(Sg.parameters(), lr=args.lr * 2, betas=(0.9, 0.999)) if Sg is not None else None
    # bf16 autocast broke training on an H200 (reconstruction stuck at L1 0.48, discriminator
    # loss 0 from epoch 2) while the same run in fp32 learned: AMP is opt-in.
    amp = device.type == "cuda" and args.amp
    # The segmentation head is most of the arithmetic (a full-resolution U-Net) and trains
    # well in bf16, unlike the GAN: it gets autocast on CUDA unless --seg-precision fp32.
    # channels_last lets cuDNN use its fastest convolution kernels for every network.
    seg_amp = device.type == "cuda" and args.seg_precision == "bf16"
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    for n_ in (G, D, Sg):
        if n_ is not None:
            n_.to(memory_format=fmt)
    # Exponential moving average of the generator's and the head's weights: what is scored and
    # exported. The live weights wander (the real-defect AUROC of one run moved by +-0.04
    # between checks 32 epochs apart); their average is a steadier model.
    ema = [copy.deepcopy(n_).eval() if args.ema > 0 and n_ is not None else n_ for n_ in (G, Sg)]
    averaged = ema if args.ema > 0 else [G, Sg]

    def ema_update():
        d = min(args.ema, (1 + step) / (10 + step))
        for live, avg in zip((G, Sg), ema):
            if live is None:
                continue
            with torch.no_grad():
                torch._foreach_lerp_(list(avg.parameters()), list(live.parameters()), 1 - d)
                for ba, bl in zip(avg.buffers(), live.buffers()):
                    if ba.dtype.is_floating_point:
                        ba.lerp_(bl, 1 - d)
                    else:
                        ba.copy_(bl)
    win = torch.outer(gaussian_kernel1d(1.5, 5), gaussian_kernel1d(1.5, 5))[None, None].to(device)
    S, c = xtrain_u8.shape[-1], net_size(args)
    boxes = content_boxes(content) if c < S else None  # where the training crops may go
    budget = minutes * 60.0
    t_train = time.time()
    planned = epochs  # may shrink once the epoch time is known, so the LR schedule completes
    log(f"training: {N} images, batch {bs}, {steps_per_epoch} steps/epoch, {epochs} epochs planned "
        f"({epochs * steps_per_epoch} steps), time budget {minutes:g} min, amp={'bf16' if amp else 'off'}, "
        f"segmentation head {'bf16' if seg_amp else 'fp32'}")
    step = 0
    ep = 0
    ep_times = []
    check_secs = []  # how long each progress check took
    G.train()
    D.train()
    while ep < planned:
        te = time.time()
        perm = torch.randperm(N, device=device)
        sums = {}
        for it in range(steps_per_epoch):
            # cosine schedule over the planned steps, short linear warm-up
            total = planned * steps_per_epoch
            warm = min(200, total // 10 + 1)
            lr = args.lr * (min(1.0, (step + 1) / warm)) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total)))))
            for o, f in ((optG, 1.0), (optD, 1.0), (optS, 2.0)):
                for g_ in (o.param_groups if o is not None else []):
                    g_["lr"] = lr * f
            idx = perm[it * bs:(it + 1) * bs]
            xb, cm = xtrain_u8[idx], content[idx]
            if boxes is not None:
                ys, xs = crop_origins(boxes[idx], S, c)
                xb, cm = crop(xb, ys, xs, c), crop(cm, ys, xs, c)
            x = to_model_input(xb)
            if args.flip:
                fl = torch.rand(x.shape[0], device=device) < 0.5
                x = torch.where(fl[:, None, None, None], x.flip(3), x)
            with torch.no_grad():
                if args.jitter > 0:  # global gain and offset: lighting drifts, parts do not change
                    j = args.jitter
                    x = (x * (1 + j * (2 * torch.rand(x.shape[0], 1, 1, 1, device=device) - 1))
                         + j * (2 * torch.rand(x.shape[0], 1, 1, 1, device=device) - 1)).clamp(-1, 1)
                if args.overexpose > 0:  # brighter exposures, clipped: saturated patches are normal
                    hot = torch.rand(x.shape[0], 1, 1, 1, device=device) < args.overexpose
                    gain = 1 + torch.rand(x.shape[0], 1, 1, 1, device=device)
                    x = torch.where(hot, ((x + 1) * gain - 1).clamp(-1, 1), x)
                if args.flip:
                    cm = torch.where(fl[:, None, None, None], cm.flip(3), cm)
                xin, m = corrupt(x, args.anomaly_prob, args.stroke_frac, args.shade_frac, cm)
                if args.standardize == "on":  # the networks see what the exported graph gives them
                    x, xin = standardize(x, xin), standardize(xin)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                xh, z, z2 = G(xin)
                # discriminator: hinge loss, clean real images vs reconstructions
                lr_real, _ = D(x)
                lr_fake, _ = D(xh.detach())
                lossD = F.relu(1 - lr_real).mean() + F.relu(1 + lr_fake).mean()
            optD.zero_grad(set_to_none=True)
            lossD.backward()
            optD.step()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logit_fake, f_fake = D(xh)
                with torch.no_grad():
                    _, f_real = D(x)
                l_rec = (xh.float() - x).abs().mean()
                l_ssim = (1 - ssim_map(xh.float(), x, win)).mean()
                l_lat = F.mse_loss(z2.float(), z.float())
                l_fm = sum((a.float() - b.float()).abs().mean() for a, b in zip(f_fake, f_real)) / len(f_fake)
                l_gan = -logit_fake.float().mean()
                lossG = (args.w_rec * l_rec + args.w_ssim * l_ssim + args.w_lat * l_lat
                         + args.w_fm * l_fm + args.w_gan * l_gan)
            optG.zero_grad(set_to_none=True)
            lossG.backward()
            optG.step()
            l_seg = torch.zeros((), device=device)
            if Sg is not None:
                # the head learns on the restoration the generator actually makes (detached)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=seg_amp):
                    logit = Sg(xin.contiguous(memory_format=fmt), xh.detach().float().clamp(-1, 1).contiguous(memory_format=fmt))
                l_seg = focal_loss(logit.float(), m)
                optS.zero_grad(set_to_none=True)
                l_seg.backward()
                optS.step()
            if args.ema > 0:
                ema_update()
            step += 1
            for k_, v in (("G", lossG), ("rec", l_rec), ("ssim", l_ssim), ("lat", l_lat), ("fm", l_fm),
                          ("gan", l_gan), ("D", lossD), ("seg", l_seg)):
                sums[k_] = sums.get(k_, 0.0) + v.detach()
        sums = {k_: float(v) / steps_per_epoch for k_, v in sums.items()}
        if not all(math.isfinite(v) for v in sums.values()):
            raise SystemExit(f"error: a loss is not finite at epoch {ep + 1}: {sums}; lower --lr")
        ep += 1
        now = time.time()
        ep_times.append(now - te)
        # The first epoch carries start-up costs (cuDNN autotuning): plan from the median of the
        # next five (one slow epoch 2, while another job on the GPU was starting, once cut a
        # schedule to 88 of 205 epochs: round 15 of docs/detection.md). The progress checks
        # still to come are budgeted at the median of the checks after the first, which
        # carries the autotuning for full-size inputs (about 52 s against 3 s for the later
        # ones at 640 px: spread over the epochs, it cut round 16's plans to 176 of 205).
        recent = float(np.median(ep_times[1:][-5:])) if len(ep_times) > 1 else ep_times[0]
        per_check = float(np.median(check_secs[1:])) if len(check_secs) > 1 else 0.0
        # about 11 checks per run whatever the plan (every tenth of it, and the last epoch)
        checks_left = max(1, 11 - len(check_secs)) if monitor is not None else 0
        fit = ep + int((budget - (now - t_train) - per_check * checks_left) / max(recent, 1e-6))
        if fit < planned and ep >= min(6, planned):
            log(f"  time budget: about {recent:.2f} s/epoch, so {max(ep, fit)} of {planned} epochs fit in "
                f"{minutes:g} min; the schedule is shortened to that")
            planned = max(ep, fit)
        eta = recent * (planned - ep) + per_check * checks_left
        mon = ""
        if monitor is not None and (ep % max(1, planned // 10) == 0 or ep == planned):
            t_mon = time.time()
            mon = "  | " + monitor(*averaged)
            check_secs.append(time.time() - t_mon)
        log(f"epoch {ep:4d}/{planned}  G {sums['G']:.4f} (rec {sums['rec']:.4f} ssim {sums['ssim']:.4f} "
            f"lat {sums['lat']:.4f} fm {sums['fm']:.4f} gan {sums['gan']:+.3f})  D {sums['D']:.3f}  seg {sums['seg']:.4f}  "
            f"lr {lr:.2e}  {now - te:.1f}s/ep  elapsed {fmt_s(now - t_start)}  ETA {fmt_s(eta)}{mon}")
        if now - t_train > budget and ep < planned:
            log(f"  time budget of {minutes:g} min spent after {ep} epochs: stopping")
            break
    if args.ema > 0:
        for live, avg in zip((G, Sg), ema):
            if live is not None:
                live.load_state_dict(avg.state_dict())
    return ep, step


# --------------------------------------------------------------------------- evaluation helpers


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


def quantile_stats(s: np.ndarray) -> dict:
    return {
        "n": len(s), "mean": float(np.mean(s)), "std": float(np.std(s)), "min": float(np.min(s)), "max": float(np.max(s)),
        "p50": float(np.quantile(s, 0.5)), "p90": float(np.quantile(s, 0.9)), "p95": float(np.quantile(s, 0.95)),
        "p99": float(np.quantile(s, 0.99)), "p995": float(np.quantile(s, 0.995)),
    }


# --------------------------------------------------------------------------- export


def export_onnx(scorer: nn.Module, C: int, S: int, path: Path) -> str:
    import onnx

    scorer = scorer.cpu().eval()
    for m_ in scorer.modules():
        if isinstance(m_, Discriminator):
            m_.bake()
    dummy = torch.zeros(1, C, S, S)
    how = "torchscript (dynamo=False)"
    try:
        torch.onnx.export(scorer, (dummy,), str(path), input_names=["image"], output_names=["score", "anomaly_map"],
                          opset_version=17, dynamo=False, do_constant_folding=True)
    except Exception as e:  # pragma: no cover - fallback path
        log(f"  legacy ONNX exporter failed ({type(e).__name__}: {e}); trying the dynamo exporter")
        how = "dynamo"
        prog = torch.onnx.export(scorer, (dummy,), None, input_names=["image"],
                                 output_names=["score", "anomaly_map"], opset_version=17, dynamo=True,
                                 external_data=False)
        prog.save(str(path))
    m = onnx.load(str(path))
    if m.ir_version > 9:
        m.ir_version = 9
    onnx.checker.check_model(m)
    ops = [o for o in m.opset_import if o.domain in ("", "ai.onnx")]
    if ops and ops[0].version != 17:
        raise SystemExit(f"error: exported opset {ops[0].version}, wanted 17")
    onnx.save(m, str(path))
    return how


def verify_onnx(path: Path, scorer: nn.Module, samples: torch.Tensor) -> tuple[float, float]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ins = sess.get_inputs()
    outs = sess.get_outputs()
    assert [i.name for i in ins] == ["image"], ins
    assert [o.name for o in outs] == ["score", "anomaly_map"], outs
    scorer = scorer.cpu().eval()
    worst_rel, worst_map = 0.0, 0.0
    with torch.no_grad():
        for i in range(samples.shape[0]):
            x = to_model_input(samples[i:i + 1])
            ts, tm = scorer(x)
            os_, om = sess.run(None, {"image": x.numpy().astype(np.float32)})
            assert os_.shape == (1,) and os_.dtype == np.float32, (os_.shape, os_.dtype)
            assert om.shape == tuple(tm.shape) and om.dtype == np.float32, (om.shape, om.dtype)
            rel = abs(float(os_[0]) - float(ts[0])) / max(abs(float(ts[0])), 1e-12)
            md = float(np.abs(om - tm.numpy()).max()) / max(float(tm.abs().max()), 1e-12)
            log(f"  onnx check {i}: torch {float(ts[0]):.6f}  onnxruntime {float(os_[0]):.6f}  rel diff {rel:.2e}  "
                f"map max rel diff {md:.2e}")
            worst_rel, worst_map = max(worst_rel, rel), max(worst_map, md)
    return worst_rel, worst_map


# --------------------------------------------------------------------------- manifest


def tf(v: float) -> str:
    """A TOML float (always with a '.' or an exponent)."""
    s = f"{float(v):.8g}"
    if not re.search(r"[.eEn]", s):
        s += ".0"
    return s


def tkey(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def git_commit(where: Path) -> str:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(where), capture_output=True, text=True, timeout=10)
        if r.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", r.stdout.strip()):
            return r.stdout.strip()
    except Exception:
        pass
    return "unknown"


def write_manifest(path: Path, *, name, sha, C, S, channels, calib, args, prov, evaluation, variant_desc):
    q = json.dumps
    L = []
    L.append("# linesight model manifest: written by models/training/train.py")
    L.append(f"name = {q(name)}")
    L.append("format_version = 1")
    L.append('onnx = "model.onnx"')
    L.append(f"sha256 = {q(sha)}")
    L.append("")
    L.append("[input]")
    L.append('name = "image"')
    L.append(f"shape = [1, {C}, {S}, {S}]     # N, C, H, W")
    L.append(f"channels = {q(channels)}")
    L.append(f"resize = {q(args.resize)}       # stretch | letterbox (aspect kept, padded with 0) | fit (letterbox, never enlarged)")
    L.append("value_range = [0.0, 1.0]    # pixel values scaled into this range before mean/std")
    L.append("mean = [" + ", ".join([tf(MEAN)] * C) + "]")
    L.append("std = [" + ", ".join([tf(STD)] * C) + "]")
    L.append("")
    L.append("[outputs]")
    L.append('score = "score"')
    L.append('anomaly_map = "anomaly_map"')
    L.append(f"# {variant_desc}")
    L.append("")
    L.append("[calibration]")
    L.append("# scores of held-back good images (never trained on)")
    L.append(f"n = {calib['n']}")
    for k in ("mean", "std", "min", "max", "p50", "p90", "p95", "p99", "p995", "threshold"):
        L.append(f"{k} = {tf(calib[k])}")
    L.append('method = "good_quantile"      # threshold = q + margin * (q - p50), q = quantile(quantile)')
    L.append(f"quantile = {tf(args.quantile)}")
    L.append(f"margin = {tf(args.margin)}")
    L.append("")
    L.append("[provenance]")
    L.append(f"data = {q(prov['data'])}")
    L.append(f"training_command = {q(prov['command'])}")
    L.append(f"commit = {q(prov['commit'])}")
    L.append(f"trained_at = {q(prov['trained_at'])}")
    L.append(f"device = {q(prov['device'])}")
    L.append(f"epochs = {prov['epochs']}")
    L.append(f"train_images = {prov['train_images']}")
    L.append(f"seconds = {prov['seconds']:.1f}")
    if evaluation is not None:
        ev = evaluation
        L.append("")
        L.append("[evaluation]")
        L.append("# on the evaluation set named below")
        L.append(f"data = {q(ev['data'])}")
        L.append(f"good = {ev['good']}")
        L.append(f"defect = {ev['defect']}")
        for k in ("image_auroc", "pixel_auroc", "recall_at_threshold", "false_reject_rate_at_threshold"):
            v = ev.get(k)
            if v is not None and math.isfinite(v):
                L.append(f"{k} = {v:.4f}")
        if ev.get("per_kind"):
            L.append("[evaluation.per_kind]")
            for kind, d in sorted(ev["per_kind"].items()):
                parts = [f"n = {d['n']}"]
                if math.isfinite(d["auroc"]):
                    parts.append(f"auroc = {d['auroc']:.4f}")
                parts.append(f"recall_at_threshold = {d['recall']:.4f}")
                L.append(f"{tkey(kind)} = {{ " + ", ".join(parts) + " }")
    path.write_text("\n".join(L) + "\n")


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Train a linesight anomaly model (GANomaly-family, restoration-trained) on good "
                    "images and export model.onnx + model.toml.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = ap.add_argument_group("data")
    d.add_argument("--data", type=Path, help="data set folder: trains on DIR/good/ unless --train-list is given; "
                   "DIR/defect/ (if present, and no --eval-* is given) is the evaluation's defect set")
    d.add_argument("--train-list", help="text file of good image paths, one a line, relative to the folder above "
                   "the list's folder (also looked up under --data)")
    d.add_argument("--eval-good", help="good images for evaluation: a folder or a list file")
    d.add_argument("--eval-defect", help="defect images for evaluation: a folder (kind = sub-folder) or a list file "
                   "(kind = file-name prefix before the first '_' / '__')")
    d.add_argument("--out", type=Path, required=True, help="output folder (models/NAME)")
    d.add_argument("--name", help="model name in the manifest (default: the --out folder's name)")
    d.add_argument("--size", type=int, default=0,
                   help="square model input side S; 0 = auto: the longest training image side rounded up to a "
                        f"multiple of 64, at most {AUTO_MAX_SIZE} (with --resize fit, images keep their pixel scale)")
    d.add_argument("--crop", type=int, default=256,
                   help="train the (fully convolutional) networks on random crops of this side from the S x S inputs "
                        "when S is larger; 0 = whole inputs. The exported graph takes the whole S x S input")
    d.add_argument("--resize", choices=RESIZE_POLICIES, default="fit",
                   help="how images of any size and aspect become S x S: stretch each axis, letterbox "
                        "(aspect kept, centred on black) or fit (letterbox, never enlarged); linesight applies the same policy from the manifest")
    d.add_argument("--channels", choices=["auto", "gray", "rgb"], default="auto",
                   help="auto = gray if every training image is grey")
    d.add_argument("--val-frac", type=float, default=0.1,
                   help="fraction of the good training images held back for calibration (never trained on)")
    d.add_argument("--test-frac", type=float, default=0.2,
                   help="fraction of DIR/good held out as evaluation goods when evaluation defects exist "
                        "but no --eval-good is given")
    d.add_argument("--flip", action="store_true", help="augment with horizontal flips (only if parts may appear mirrored)")
    t = ap.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=0, help="epochs; 0 = as many as make --steps optimiser steps")
    t.add_argument("--steps", type=int, default=4300,
                   help="optimiser steps when --epochs is 0 (per member). More is not better: the head then learns "
                        "the synthetic defects too well (magnetic tile: 0.89 after 8,000 steps against 0.92-0.93 "
                        "after 4,300; docs/detection.md)")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (generator and discriminator)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    t.add_argument("--max-minutes", type=float, default=12.0,
                   help="training time cap for all members together: a slower GPU trains fewer steps (the schedule is "
                        "shortened to fit), then evaluates and exports (about 1 more minute)")
    t.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA (faster; unstable in tests, off by default)")
    t.add_argument("--anomaly-prob", type=float, default=0.7, help="fraction of training inputs given synthetic defects")
    t.add_argument("--stroke-frac", type=float, default=0.25,
                   help="share of synthetic defects that are thin soft-edged strokes (cracks, scratches)")
    t.add_argument("--shade-frac", type=float, default=0.0,
                   help="share of synthetic defects that are large smooth brightness changes (off: on magnetic "
                        "tiles 0.15 cost 0.09 image AUROC, the head learnt to flag natural lighting)")
    t.add_argument("--members", type=int, default=2,
                   help="independently seeded members (seeds --seed, --seed + 1, ...) trained one after the other "
                        "within --max-minutes; the exported map is the mean of theirs. Two lift magnetic tiles from "
                        "0.92-0.93 to 0.93-0.95 image AUROC and double the inference cost (--members 1 for a slow "
                        "CPU-only line; docs/detection.md, rounds 18-19)")
    t.add_argument("--overexpose", type=float, default=0.3,
                   help="fraction of training inputs brightened by a gain of 1 to 2 and clipped: saturated patches "
                        "are not defects (without it, over-exposed good tiles were the highest-scored goods)")
    t.add_argument("--standardize", choices=["on", "off"], default="off",
                   help="per-image exposure normalisation (mean and spread of the part's pixels) as the graph's "
                        "first step, in training too")
    t.add_argument("--jitter", type=float, default=0.0,
                   help="global gain and offset jitter of training images, +-J (0 = off; not measured on the final recipe)")
    t.add_argument("--seg-precision", choices=["bf16", "fp32"], default="bf16",
                   help="segmentation head training precision on CUDA (bf16 is faster; the GAN always trains in fp32)")
    t.add_argument("--ema", type=float, default=0.999,
                   help="decay of the moving average of the weights that is exported (0 = export the last weights)")
    t.add_argument("--w-rec", type=float, default=1.0, help="weight of the L1 reconstruction loss")
    t.add_argument("--w-ssim", type=float, default=1.0, help="weight of the (1 - SSIM) structural loss")
    t.add_argument("--w-lat", type=float, default=0.1, help="weight of the latent consistency loss ||E1(x) - E2(G(x))||^2")
    t.add_argument("--w-fm", type=float, default=0.1, help="weight of discriminator feature matching")
    t.add_argument("--w-gan", type=float, default=0.01, help="weight of the hinge GAN loss for the generator")
    m = ap.add_argument_group("model")
    m.add_argument("--width", type=int, default=32, help="channels at the first level (doubling per level)")
    m.add_argument("--max-width", type=int, default=96, help="channel cap of the generator")
    m.add_argument("--nz", type=int, default=64, help="latent channels at the bottleneck")
    m.add_argument("--norm", choices=["batch", "instance"], default="batch")
    m.add_argument("--seg-width", type=int, default=48,
                   help="channels of the segmentation head's first level (it learns to paint the synthetic "
                        "defects from input + restoration); 0 = no head, residual maps only")
    m.add_argument("--pixel-norm", choices=["auto", "on", "off"], default="auto",
                   help="normalise the map by per-pixel statistics of good training images (for fixtured parts); "
                        "auto = chosen like the map variant")
    m.add_argument("--skip-div", type=int, default=8,
                   help="skip connections only at levels whose side is <= S/skip-div (0 = none)")
    s = ap.add_argument_group("scoring")
    s.add_argument("--map", choices=["auto"] + list(MAP_VARIANTS), default="auto",
                   help="anomaly-map components; auto = the head's map (without a head: the restoration maps), "
                        "per-pixel z and pooling by AUROC on held-back goods vs synthetic defects on them")
    s.add_argument("--pool", type=int, default=0, help="score = max of the k x k average-pooled map; 0 = auto (S/16, "
                   "or chosen with --map auto among S/32, S/16, S/8)")
    s.add_argument("--quantile", type=float, default=0.995, help="threshold quantile of held-back good scores")
    s.add_argument("--margin", type=float, default=0.1, help="threshold = q + margin * (q - p50)")
    s.add_argument("--ckpt-dir", type=Path, default=Path("/tmp"), help="where the checkpoint (not for the repo) goes")
    return ap.parse_args(argv)


def main(argv=None):
    global _LOG_FILE
    t_start = time.time()
    args = parse_args(argv)
    command = "python " + shlex.join(sys.argv if argv is None else ["models/training/train.py", *argv])
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    _LOG_FILE = open(out / "train_log.txt", "w")
    name = args.name or out.resolve().name
    log(f"linesight train.py  torch {torch.__version__}  {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    log(f"command: {command}")
    if args.size and (args.size < 16 or n_levels(args.size) < 2):
        raise SystemExit("error: --size must be 0 (auto) or at least 16 and a multiple of 8 (e.g. 64, 128, 256)")
    if args.crop < 0 or (0 < args.crop < 16):
        raise SystemExit("error: --crop must be 0 (whole inputs) or at least 16")
    if args.members < 1:
        raise SystemExit("error: --members must be at least 1")
    if not (0.0 < args.val_frac < 1.0):
        raise SystemExit("error: --val-frac must be in (0, 1)")
    seed_all(args.seed)
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dev_name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    log(f"device: {dev_name}")

    # ---- the data sets
    data = args.data
    rng = np.random.RandomState(args.seed)
    data_desc = []
    if args.train_list:
        lp = resolve_arg_path(args.train_list, data)
        pool = read_list(lp)
        data_desc.append(str(args.train_list) if data is None else f"{data} (train list {args.train_list})")
    elif data is not None:
        if not (data / "good").is_dir():
            raise SystemExit(f"error: {data}/good/ does not exist (and no --train-list given)")
        pool = list_dir_images(data / "good")
        data_desc.append(str(data))
    else:
        raise SystemExit("error: give --data DIR (with DIR/good/) or --train-list FILE")
    if len(pool) < 4:
        raise SystemExit(f"error: only {len(pool)} training images")
    pool = [pool[i] for i in rng.permutation(len(pool))]

    eval_good, eval_defect, defect_root, eval_desc = None, None, None, None
    if args.eval_defect:
        eval_defect, defect_root = load_set(args.eval_defect, data, "--eval-defect")
    elif not args.eval_good and data is not None and (data / "defect").is_dir():
        eval_defect, defect_root = list_dir_images(data / "defect"), data / "defect"
        if not eval_defect:
            eval_defect = None
    if args.eval_good:
        eval_good, _ = load_set(args.eval_good, data, "--eval-good")
        # never evaluate on training images
        ev = {p.resolve() for p in eval_good}
        before = len(pool)
        pool = [p for p in pool if p.resolve() not in ev]
        if len(pool) != before:
            log(f"note: {before - len(pool)} --eval-good images were also training images; they are not trained on")
    elif eval_defect is not None:
        n_test = max(1, int(round(len(pool) * args.test_frac)))
        eval_good, pool = pool[:n_test], pool[n_test:]
        log(f"evaluation goods: {n_test} images held out of the training pool (--test-frac {args.test_frac})")
    if eval_good is not None or eval_defect is not None:
        eval_desc = "; ".join(x for x in (
            f"good: {args.eval_good}" if args.eval_good else (f"good: {len(eval_good)} held out of the training images" if eval_good else None),
            f"defect: {args.eval_defect or (str(data / 'defect') if eval_defect else '')}" if eval_defect else None) if x)

    n_val = max(2, int(round(len(pool) * args.val_frac)))
    if len(pool) - n_val < 2:
        raise SystemExit(f"error: too few training images ({len(pool)}) for a {args.val_frac} calibration split")
    val_paths, train_paths = pool[:n_val], pool[n_val:]

    channels = args.channels
    if channels == "auto":
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            channels = "gray" if all(ex.map(is_gray_image, train_paths)) else "rgb"
    C = 1 if channels == "gray" else 3
    if args.size == 0:
        args.size = auto_size(train_paths)
        log(f"input size: {args.size} x {args.size} (--size 0: the longest training image side, rounded up to a "
            f"multiple of 64, at most {AUTO_MAX_SIZE})")
    S = args.size
    Sn = net_size(args)
    if Sn < S and S % 2 ** n_levels(Sn):
        raise SystemExit(f"error: --size {S} must be a multiple of {2 ** n_levels(Sn)} to train on --crop {Sn} crops")
    t0 = time.time()
    R = args.resize
    xtrain = load_images(train_paths, channels, S, R)
    xval = load_images(val_paths, channels, S, R)
    # where synthetic defects may go: the part, not the letterbox padding
    ctrain = np.stack([content_mask(p_, S, R) for p_ in train_paths])[:, None]
    cval = torch.from_numpy(np.stack([content_mask(p_, S, R) for p_ in val_paths])[:, None])
    xeg = load_images(eval_good, channels, S, R) if eval_good else None
    xed = load_images(eval_defect, channels, S, R) if eval_defect else None
    log(f"data: {len(train_paths)} train, {len(val_paths)} calibration (held back), "
        f"{0 if xeg is None else len(xeg)} eval good, {0 if xed is None else len(xed)} eval defect; "
        f"channels {channels}; size {S}; loaded in {time.time() - t0:.1f}s")

    # ---- the networks: one or more members (seeds seed, seed+1, ...), trained one after the other
    K = args.members
    xtrain_dev = torch.from_numpy(xtrain).to(device)
    ctrain_dev = torch.from_numpy(ctrain).to(device)
    xeval = (torch.from_numpy(xeg), torch.from_numpy(xed)) if xeg is not None and xed is not None else None
    monitor = make_monitor(S, torch.from_numpy(xval), cval, device, args, xeval)
    members = []  # (G, D, Sg) per member
    epochs_done = 0
    t_members = time.time()
    for j in range(K):
        # each member gets an equal share of what is left of --max-minutes, so time one
        # member did not need (or a slow start took) is shared by the ones after it
        minutes_j = max(0.1, args.max_minutes - (time.time() - t_members) / 60.0) / (K - j)
        if K > 1:
            log("")
            log(f"member {j + 1} of {K}: seed {args.seed + j}, {minutes_j:.3g} min")
            seed_all(args.seed + j)
        G = Generator(C, Sn, args.width, args.max_width, args.nz, args.norm, args.skip_div).to(device)
        D = Discriminator(C, Sn).to(device)
        Sg = SegHead(C, Sn, args.seg_width).to(device) if args.seg_width > 0 else None
        if j == 0:
            n_exp = sum(p.numel() for n_, p in G.named_parameters() if not n_.startswith("e2."))
            log(f"generator: {sum(p.numel() for p in G.parameters()) / 1e6:.2f} M parameters "
                f"({n_exp / 1e6:.2f} M in the exported reconstruction path), skips at levels "
                f"{[Sn // 2 ** (i + 1) for i, s in enumerate(G.skip) if s]} px of {Sn}; discriminator: "
                f"{sum(p.numel() for p in D.parameters()) / 1e6:.2f} M parameters; segmentation head: "
                f"{'none' if Sg is None else f'{sum(p.numel() for p in Sg.parameters()) / 1e6:.2f} M parameters'}")
        ep_j, _ = train(args, G, D, xtrain_dev, ctrain_dev, device, t_start, monitor, Sg, minutes=minutes_j)
        epochs_done += ep_j
        for n_ in (G, D, Sg):
            if n_ is not None:
                n_.eval().to(memory_format=torch.contiguous_format)
        members.append((G, D, Sg))
    t_trained = time.time()
    ckpt = args.ckpt_dir / f"linesight-{name}-checkpoint.pt"
    try:
        args.ckpt_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"members": [{"G": G.state_dict(), "D": D.state_dict(), "Sg": None if Sg is None else Sg.state_dict()}
                                for G, D, Sg in members], "args": vars(args), "channels": channels}, ckpt)
        log(f"checkpoint: {ckpt}")
    except OSError as e:
        log(f"note: checkpoint not saved ({e})")

    # smoothing and pooling in pixels of the scale the networks were trained at
    sigma = max(1.0, Sn / 64.0)
    pools = [args.pool] if args.pool > 0 else sorted({max(1, Sn // d) for d in (64, 32, 16, 8)})
    # With a segmentation head only its own map competes (with or without per-pixel z and
    # pooling): restoration-only maps never came close, and where the synthetic defects
    # picked seg+res it cost 0.03 and 0.06 real AUROC (docs/detection.md).
    has_seg = members[0][2] is not None
    auto = ["seg"] if has_seg else [v for v in MAP_VARIANTS if v not in SEG_VARIANTS]
    variants = auto if args.map == "auto" else [args.map]
    if not has_seg and variants[0] in SEG_VARIANTS:
        raise SystemExit(f"error: --map {args.map} needs the segmentation head (--seg-width > 0)")
    # only the components that some candidate map uses are computed
    need = tuple(float(any(MAP_VARIANTS[v][i] > 0 for v in variants)) for i in range(4))
    std_on = args.standardize == "on"
    # synthetic defects on the held-back goods: the model-selection set (no real defects used)
    xval_t = torch.from_numpy(xval)
    synth = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(args.seed + 12345)
        xs = to_model_input(xval_t.to(device))
        for _ in range(max(1, math.ceil(64 / len(xs)))):
            xin, _ = corrupt_in_crops(xs, cval.to(device), Sn, 1.0, args.stroke_frac, args.shade_frac)
            synth.append(((xin.clamp(-1, 1) * STD + MEAN) * 255).round().clamp(0, 255).to(torch.uint8).cpu())
    sets = {"tr": xtrain_dev.cpu(), "val": xval_t, "syn": torch.cat(synth)}
    if xeval is not None:
        sets["eg"], sets["ed"] = xeval
    # ---- raw map components of every member on every set
    comps, lats, norms = [], [], []
    t_c = time.time()
    for G, D, Sg in members:
        c, lt = {}, {}
        for key, u8 in sets.items():
            c[key], lt[key] = run_components(G, D, S, u8, device, Sg=Sg, need=need, std=std_on)
        comps.append(c)
        lats.append(lt)
        norms.append([max(float(x.mean()), 1e-8) for x in c["tr"]])
    log(f"map components of {K} member(s) on {sum(len(u) for u in sets.values())} images in {time.time() - t_c:.1f}s")

    def mean_map(v, pix, key):
        """The candidate map of every image of a set, averaged over the members."""
        acc = None
        for j in range(K):
            _, m_ = variant_scores(comps[j][key], MAP_VARIANTS[v], norms[j], S, 1, sigma, device,
                                   pix_stats=pix_cache[(v, j)] if pix else None)
            acc = m_ if acc is None else acc + m_
        return acc / K

    def set_scores(maps, k):
        return torch.cat([pool_max(maps[i:i + 256].to(device), k).cpu() for i in range(0, len(maps), 256)]
                         ).numpy().astype(np.float64)

    default_variant, default_pool = "res+ssim", max(1, Sn // 16)
    table = []
    log("")
    log("scoring variants (selection: held-back goods vs the same with synthetic defects; "
        "the real evaluation set is shown for information, never used to choose):")
    log(f"  {'map':<15} {'pool':>4}  {'synthetic AUROC':>15}  {'eval AUROC':>10}")
    if xeval is not None:
        log(f"  {'ganomaly-latent':<15} {'-':>4}  {auroc(lats[0]['syn'].numpy(), lats[0]['val'].numpy()):15.4f}  "
            f"{auroc(lats[0]['ed'].numpy(), lats[0]['eg'].numpy()):10.4f}   (plain GANomaly score, for reference)")
    pix_choices = [False, True] if args.pixel_norm == "auto" else [args.pixel_norm == "on"]
    pix_cache = {}
    for v in variants:
        for pn in pix_choices:
            if pn and (v, 0) not in pix_cache:
                for j in range(K):
                    pix_cache[(v, j)] = pixel_stats(comps[j]["tr"], MAP_VARIANTS[v], norms[j], S, sigma, device)
            maps = {key: mean_map(v, pn, key) for key in sets if key != "tr"}
            for k in pools:
                a_syn = auroc(set_scores(maps["syn"], k), set_scores(maps["val"], k))
                a_ev = auroc(set_scores(maps["ed"], k), set_scores(maps["eg"], k)) if xeval is not None else float("nan")
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
    v_name, pool_k = chosen[0], chosen[1]
    use_pix = v_name.endswith("+pix")
    v_name = v_name.removesuffix("+pix")
    log(f"chosen: map {chosen[0]}, pool {pool_k}, Gaussian sigma {sigma:g}" + (f", mean of {K} members" if K > 1 else "")
        + f" (components and comparison {time.time() - t_c:.1f}s)")

    def member_scorer(j: int, pool: int) -> Scorer:
        G, D, Sg = members[j]
        return Scorer(G, D, S, weights=MAP_VARIANTS[v_name], norms=norms[j], pool=pool, sigma=sigma,
                      pix_stats=pix_cache[(v_name, j)] if use_pix else None, seg=Sg, standardize=std_on).eval()

    scorer = member_scorer(0, pool_k) if K == 1 else Ensemble([member_scorer(j, 1) for j in range(K)], pool_k).eval()

    # ---- calibration on the held-back goods, through the real scorer
    def scores_of(u8: np.ndarray, bs=64):
        sc = scorer.to(device)
        res, maps = [], []
        with torch.no_grad():
            for i in range(0, len(u8), bs):
                s, m_ = sc(to_model_input(torch.from_numpy(u8[i:i + bs]).to(device)))
                res.append(s.float().cpu())
                maps.append(m_.float().cpu())
        return torch.cat(res).numpy().astype(np.float64), torch.cat(maps)

    t_cal = time.time()
    s_val, _ = scores_of(xval)
    calib = quantile_stats(s_val)
    qv = float(np.quantile(s_val, args.quantile))
    calib["threshold"] = qv + args.margin * (qv - calib["p50"])
    log("")
    log(f"calibration on {calib['n']} held-back goods: mean {calib['mean']:.5f} std {calib['std']:.5f} "
        f"p50 {calib['p50']:.5f} p99 {calib['p99']:.5f} max {calib['max']:.5f} -> threshold {calib['threshold']:.5f} "
        f"({time.time() - t_cal:.1f}s)")

    # ---- evaluation
    evaluation = None
    if xeg is not None or xed is not None:
        thr = calib["threshold"]
        ev = {"data": eval_desc, "good": 0 if xeg is None else len(xeg), "defect": 0 if xed is None else len(xed)}
        s_eg, m_eg = scores_of(xeg) if xeg is not None else (np.zeros(0), None)
        s_ed, m_ed = scores_of(xed) if xed is not None else (np.zeros(0), None)
        log(f"  evaluation scores and maps in {time.time() - t_cal:.1f}s since calibration began")
        ev["image_auroc"] = auroc(s_ed, s_eg) if len(s_ed) and len(s_eg) else None
        ev["recall_at_threshold"] = float(np.mean(s_ed > thr)) if len(s_ed) else None
        ev["false_reject_rate_at_threshold"] = float(np.mean(s_eg > thr)) if len(s_eg) else None
        if xed is not None:
            kinds = [defect_kind(p, defect_root) for p in eval_defect]
            per = {}
            for kd in sorted(set(kinds)):
                sel = np.array([k_ == kd for k_ in kinds])
                per[kd] = {"n": int(sel.sum()), "auroc": auroc(s_ed[sel], s_eg) if len(s_eg) else float("nan"),
                           "recall": float(np.mean(s_ed[sel] > thr))}
            ev["per_kind"] = per
            masks = [find_mask(p) for p in eval_defect]
            have = [i for i, mp in enumerate(masks) if mp is not None]
            if have and m_eg is not None:
                t_px = time.time()
                pos_px, neg_px = [], []
                # only pixels that show the part (letterbox padding is neither defect nor good)
                # (numpy: torch's threaded indexing of small arrays crawled with four runs on one host)
                for i in have:
                    mk = load_mask(masks[i], S, R)
                    inside = content_mask(eval_defect[i], S, R)
                    mv = m_ed[i, 0].numpy()
                    pos_px.append(mv[mk & inside])
                    neg_px.append(mv[~mk & inside])
                for i, pth in enumerate(eval_good):
                    neg_px.append(m_eg[i, 0].numpy()[content_mask(pth, S, R)])
                pos_px, neg_px = np.concatenate(pos_px), np.concatenate(neg_px)
                r = np.random.RandomState(args.seed)
                cap = 2_000_000
                if len(pos_px) > cap:
                    pos_px = pos_px[r.choice(len(pos_px), cap, replace=False)]
                if len(neg_px) > cap:
                    neg_px = neg_px[r.choice(len(neg_px), cap, replace=False)]
                ev["pixel_auroc"] = auroc(pos_px, neg_px)
                ev["masks"] = len(have)
                log(f"  pixel AUROC over {len(have)} masks in {time.time() - t_px:.1f}s")
        evaluation = ev
        try:  # per-image scores beside the checkpoint, for comparing or combining runs
            (args.ckpt_dir / f"linesight-{name}-eval-scores.json").write_text(json.dumps({
                "good": [[str(p_), float(v)] for p_, v in zip(eval_good or [], s_eg)],
                "defect": [[str(p_), float(v)] for p_, v in zip(eval_defect or [], s_ed)]}))
        except OSError as e:
            log(f"note: per-image scores not saved ({e})")
        log("")
        log(f"evaluation ({eval_desc}): {ev['good']} good, {ev['defect']} defect (elapsed {fmt_s(time.time() - t_start)})")
        for k in ("image_auroc", "pixel_auroc", "recall_at_threshold", "false_reject_rate_at_threshold"):
            if ev.get(k) is not None:
                extra = f"  ({ev['masks']} defect images with masks)" if k == "pixel_auroc" else ""
                log(f"  {k:<32} {ev[k]:.4f}{extra}")
        for kd, d_ in (ev.get("per_kind") or {}).items():
            log(f"  kind {kd:<20} n {d_['n']:4d}  auroc {d_['auroc']:.4f}  recall {d_['recall']:.4f}")

    # ---- export and check
    onnx_path = out / "model.onnx"
    log("")
    how = export_onnx(scorer, C, S, onnx_path)
    size_mb = onnx_path.stat().st_size / 1e6
    log(f"exported {onnx_path} ({size_mb:.2f} MB, opset 17, IR <= 9, {how})")
    check = np.concatenate([xval[:3]] + ([xed[:3]] if xed is not None else []))
    worst_rel, worst_map = verify_onnx(onnx_path, scorer, torch.from_numpy(check))
    ok = worst_rel <= 1e-4
    log(f"onnx check: worst score rel diff {worst_rel:.2e}, worst map rel diff {worst_map:.2e} -> "
        f"{'OK' if ok else 'MISMATCH'} (tolerance 1e-4)")
    sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()

    prov = {
        "data": "; ".join(data_desc),
        "command": command,
        "commit": git_commit(Path(__file__).resolve().parent),
        "trained_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": dev_name,
        "epochs": epochs_done,
        "train_images": len(train_paths),
        "seconds": time.time() - t_start,
    }
    variant_desc = ((f"mean of {K} members' maps; " if K > 1 else "") + f"anomaly_map: {v_name}{' per-pixel (map - mean) / (top-1% tail - mean) of good training images' if use_pix else ''} "
                    f"(Gaussian sigma {sigma:g} px); score: max of the {pool_k}x{pool_k} "
                    f"average-pooled map")
    write_manifest(out / "model.toml", name=name, sha=sha, C=C, S=S, channels=channels, calib=calib, args=args,
                   prov=prov, evaluation=evaluation, variant_desc=variant_desc)
    log(f"wrote {out / 'model.toml'}; training {fmt_s(t_trained - t_start)}, total {fmt_s(time.time() - t_start)}")
    _LOG_FILE.close()
    _LOG_FILE = None
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
