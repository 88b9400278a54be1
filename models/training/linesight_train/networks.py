"""The networks: GANomaly generator (encoder-decoder-encoder), discriminator, segmentation head."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


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
