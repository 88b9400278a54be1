"""The trained core of the feature recipe: a GAN in the backbone's feature space.

The generator restores good features: it sees a part's feature map with some regions
corrupted and learns to give back the map of the good part, through a bottleneck at
stride 16 and 32 with no skip at full resolution (so it must restore a region from its
context rather than copy it). The discriminator sees feature maps, real ones against
restored ones, cell by cell (Projected-GAN style: a GAN on a pretrained feature space
trains in minutes and keeps the generator's restorations on the manifold of good parts).
At inspection the generator gets the part's own features; where it cannot give them back
(a defect), the restoration error is the anomaly map.

Corruptions are in feature space, so the backbone runs once per training image: regions of
a few cells to a quarter of the map (blobs and thin strokes) are replaced by noise, by
features from elsewhere (another part, another place) or scaled."""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .log import log


def block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.LeakyReLU(0.2))


class Generator(nn.Module):
    """[N, F, h, w] standardised features -> restored features of the same shape (h, w any;
    the graph pads to a multiple of 4 cells and crops back)."""

    def __init__(self, channels: int, width: int = 128):
        super().__init__()
        w = width
        self.inp = nn.Sequential(nn.Conv2d(channels, w, 1), nn.LeakyReLU(0.2), block(w, w))
        self.down = nn.Sequential(block(w, w, 2), block(w, w), block(w, w, 2), block(w, w))
        self.up1 = block(2 * w, w)
        self.up0 = nn.Sequential(block(w, w), nn.Conv2d(w, channels, 1))
        self.mid = block(w, w)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        h, w = f.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        x = F.pad(f, (0, pw, 0, ph), mode="replicate") if ph or pw else f
        e0 = self.inp(x)
        e1 = self.down[1](self.down[0](e0))          # stride 2 in cells
        e2 = self.down[3](self.down[2](e1))          # stride 4
        u1 = F.interpolate(e2, size=e1.shape[-2:], mode="bilinear", align_corners=False)
        u1 = self.up1(torch.cat([u1, self.mid(e1)], 1))
        u0 = F.interpolate(u1, size=e0.shape[-2:], mode="bilinear", align_corners=False)
        out = self.up0(u0)
        return out[..., :h, :w]


class Discriminator(nn.Module):
    """Real or restored, per cell (a 5 x 5-cell receptive field); spectral norm keeps it
    Lipschitz so that it guides rather than overpowers the generator."""

    def __init__(self, channels: int, width: int = 128):
        super().__init__()
        sn = nn.utils.spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(channels, width, 3, 1, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(width, width, 3, 1, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(width, 1, 1)))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


# --------------------------------------------------------------------------- corruption


def region_masks(n: int, h: int, w: int, g: torch.Generator, device) -> torch.Tensor:
    """[n, 1, h, w] masks of 1 to 3 regions each: ellipses of 1 cell to a quarter of the
    map's side, or thin strokes (cracks, scratches), soft-edged."""
    yy = torch.arange(h, device=device).float()[:, None]
    xx = torch.arange(w, device=device).float()[None, :]
    out = torch.zeros(n, 1, h, w, device=device)
    side = min(h, w)
    for i in range(n):
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            cy, cx = float(torch.rand(1, generator=g)) * h, float(torch.rand(1, generator=g)) * w
            th = float(torch.rand(1, generator=g)) * math.pi
            c, s = math.cos(th), math.sin(th)
            u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
            if float(torch.rand(1, generator=g)) < 0.3:   # stroke: long and one cell wide
                a, b = 2 + float(torch.rand(1, generator=g)) * side / 3, 0.6 + float(torch.rand(1, generator=g)) * 0.6
            else:
                a = 0.8 + float(torch.rand(1, generator=g)) ** 2 * side / 4
                b = a * (0.3 + 0.7 * float(torch.rand(1, generator=g)))
            d = (u / a) ** 2 + (v / b) ** 2
            out[i, 0] = torch.maximum(out[i, 0], (1.5 - d).clamp(0, 1))  # soft edge
    return out


def corrupt(f: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupted copies of standardised feature maps f and where they were corrupted."""
    n, c, h, w = f.shape
    m = region_masks(n, h, w, g, f.device)
    kind = torch.randint(0, 3, (n, 1, 1, 1), generator=g).to(f.device)
    noise = torch.randn(f.shape, generator=g).to(f.device) * (0.5 + 1.5 * torch.rand(n, 1, 1, 1, generator=g).to(f.device))
    # features from another part at another place (a rolled copy of the batch)
    dy, dx = int(torch.randint(0, h, (1,), generator=g)), int(torch.randint(0, w, (1,), generator=g))
    other = torch.roll(f, shifts=(1, dy, dx), dims=(0, 2, 3))
    gain = (0.3 + 1.4 * torch.rand(n, 1, 1, 1, generator=g)).to(f.device)
    replaced = torch.where(kind == 0, f + noise, torch.where(kind == 1, other, f * gain + 0.5 * noise))
    return f * (1 - m) + replaced * m, m


# --------------------------------------------------------------------------- training


def restoration_error(G: nn.Module, feats: torch.Tensor, bs: int = 16) -> float:
    """Mean squared restoration error of uncorrupted feature maps (held-back goods)."""
    G.eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(feats), bs):
            f = feats[i:i + bs]
            tot += float(((G(f) - f) ** 2).mean(1).sum())
            n += f.shape[0] * f.shape[2] * f.shape[3]
    G.train()
    return tot / max(n, 1)


def crops(f: torch.Tensor, content: torch.Tensor, side: int, g: torch.Generator) -> torch.Tensor:
    """Random side x side-cell crops of feature maps, each centred on a random cell of the
    part (the content mask's cells, never the letterbox padding) and kept inside the map;
    whole maps when they are smaller."""
    n, c, h, w = f.shape
    if h <= side and w <= side:
        return f
    sh, sw = min(side, h), min(side, w)
    out = []
    for i in range(n):
        on = torch.nonzero(content[i, 0] > 0)
        cy, cx = (on[int(torch.randint(0, len(on), (1,), generator=g))].tolist() if len(on)
                  else (h // 2, w // 2))
        y = min(max(cy - sh // 2, 0), h - sh)
        x = min(max(cx - sw // 2, 0), w - sw)
        out.append(f[i, :, y:y + sh, x:x + sw])
    return torch.stack(out)


def train_gan(feats: torch.Tensor, content: torch.Tensor, held: torch.Tensor, args, device, seed: int,
              eval_fn=None) -> tuple[nn.Module, dict]:
    """Trains G and D on standardised training feature maps `feats` [N, F, h, w] (content:
    [N, 1, h, w], 1 on the part) for `args.passes` passes per image; keeps the weights with
    the lowest restoration error of the held-back goods `held` (checked `args.checks` times:
    never the real defects), and the discriminator of that check (hist["D"]). eval_fn(G), if
    given, measures real-defect AUROC at each check for the log only (to report how well the
    held-back signal predicts it)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    C = feats.shape[1]
    G, D = Generator(C, args.gen_width).to(device), Discriminator(C, args.gen_width).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=args.lr, betas=(0.5, 0.999))
    n = len(feats)
    bs = min(args.batch_size, n)
    steps = max(1, int(round(args.passes * n / bs)))
    check_every = max(1, steps // args.checks)
    best, best_d, best_err, history = None, None, float("inf"), []
    t0 = time.time()
    log(f"feature GAN: {n} training maps of {tuple(feats.shape[1:])}, batch {bs}, {args.passes} passes per "
        f"image = {steps} steps, weights chosen on {len(held)} held-back goods every {check_every} steps")
    for step in range(1, steps + 1):
        idx = torch.randint(0, n, (bs,), generator=g)
        f = crops(feats[idx].to(device), content[idx].to(device), args.crop_cells, g)
        fc, m = corrupt(f, g)
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        for o in (opt_g, opt_d):
            for pg in o.param_groups:
                pg["lr"] = lr
        # discriminator: real features against restorations (hinge)
        with torch.no_grad():
            fake = G(fc)
        loss_d = F.relu(1 - D(f)).mean() + F.relu(1 + D(fake)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # generator: restore every cell, the corrupted ones weighted up, and look real
        r = G(fc)
        err = ((r - f) ** 2).mean(1, keepdim=True)
        loss_rec = (err * (1 + 4 * m)).mean()
        loss_adv = -D(r).mean()
        loss_g = loss_rec + args.w_adv * loss_adv
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if step % check_every == 0 or step == steps:
            held_err = restoration_error(G, held.to(device))
            entry = {"step": step, "held_err": held_err, "loss_rec": float(loss_rec.detach()), "loss_d": float(loss_d.detach())}
            if eval_fn is not None:
                entry["real_auroc"] = eval_fn(G)
            history.append(entry)
            if held_err < best_err:
                best_err = held_err
                best = {k: v.detach().clone() for k, v in G.state_dict().items()}
                best_d = {k: v.detach().clone() for k, v in D.state_dict().items()}
            log(f"  step {step:5d}/{steps}  rec {float(loss_rec):.4f}  d {float(loss_d):.3f}  held-back restoration "
                f"{held_err:.4f}" + (f"  (real AUROC {entry['real_auroc']:.4f}, measured only)" if "real_auroc" in entry else "")
                + f"  {time.time() - t0:.0f}s")
    G.load_state_dict(best)
    G.eval()
    D.load_state_dict(best_d)  # the discriminator of the same check, for its per-cell map (variants.py)
    D.eval()
    return G, {"steps": steps, "history": history, "best_held_err": best_err, "seconds": time.time() - t0, "D": D}


def spearman(a, b) -> float:
    """Rank correlation (no ties expected)."""
    a, b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if len(a) < 3:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
