"""Synthetic defects (restoration training, model selection) and training crops on the part."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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
