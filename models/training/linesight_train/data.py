"""Data sets on disk and the input contract: image lists, the defect-kind and mask rule
(docs/datasets.md, shared with linesight's src/dataset.rs), decoding, resize policies,
content masks."""
from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .log import log

IMG_EXTS = {".png", ".jpg", ".jpeg", ".bmp"}
MEAN, STD = 0.5, 0.5  # per channel, after scaling pixels into [0, 1]
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


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


def load_set(arg: str, data: Path | None, what: str) -> list[Path]:
    """A folder of images or a list file."""
    p = resolve_arg_path(arg, data)
    if p.is_dir():
        paths = list_dir_images(p)
    elif p.is_file():
        paths = read_list(p)
    else:
        raise SystemExit(f"error: {what} {arg!r}: no such folder or list file")
    if not paths:
        raise SystemExit(f"error: {what} {arg!r}: no images (png/jpg/jpeg/bmp) found")
    return paths


# --------------------------------------------------------------------------- defect kinds and masks
# The rule is docs/datasets.md; tests/fixtures/dataset_layout.toml holds the cases that
# this code and linesight's both pass.


def defect_folder(path: Path) -> Path | None:
    """The image's nearest ancestor folder named `defect`."""
    return next((a for a in Path(path).parents if a.name == "defect"), None)


def defect_kind(path: Path) -> str | None:
    """The first folder below the defect folder, else the file-name prefix before `__`,
    else the stem less a trailing `_<digits>`; None if none of these gives a name."""
    path = Path(path)
    d = defect_folder(path)
    if d is not None and path.parent != d:
        return path.relative_to(d).parts[0]
    stem = path.stem
    if "__" in stem:
        return stem.split("__", 1)[0] or None
    head, _, tail = stem.rpartition("_")
    if head and tail.isascii() and tail.isdigit():
        return head
    return None


def find_mask(path: Path, masks_dir: Path | None = None) -> Path | None:
    """The mask of a defect image: in `masks_dir` if given, else in `masks/` beside the
    defect folder, else in `ground_truth/` beside it; first at the image's path below the
    defect folder, then flat; named <stem>.png or <stem>_mask.png."""
    path = Path(path)
    d = defect_folder(path)
    rel = path.parent.relative_to(d) if d is not None else Path()
    if masks_dir is None:
        if d is None:
            return None
        masks_dir = d.parent / "masks"
        if not masks_dir.is_dir():
            masks_dir = d.parent / "ground_truth"
    names = (path.stem + ".png", path.stem + "_mask.png")
    for folder in (masks_dir / rel, masks_dir):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


# --------------------------------------------------------------------------- the run's sets


@dataclass
class Sets:
    train: list[Path]
    calibration: list[Path]  # held back, never trained on
    eval_good: list[Path] | None
    eval_defect: list[Path] | None
    data_desc: str  # for the manifest's provenance
    eval_desc: str | None


def training_pool(args, rng: np.random.RandomState) -> tuple[list[Path], str]:
    """The good training images (shuffled by rng) and how the manifest names them."""
    data = args.data
    if args.train_list:
        pool = read_list(resolve_arg_path(args.train_list, data))
        desc = str(args.train_list) if data is None else f"{data} (train list {args.train_list})"
    elif data is not None:
        if not (data / "good").is_dir():
            raise SystemExit(f"error: {data}/good/ does not exist (and no --train-list given)")
        pool = list_dir_images(data / "good")
        desc = str(data)
    else:
        raise SystemExit("error: give --data DIR (with DIR/good/) or --train-list FILE")
    if len(pool) < 4:
        raise SystemExit(f"error: only {len(pool)} training images")
    return [pool[i] for i in rng.permutation(len(pool))], desc


def evaluation_sets(args, pool: list[Path]):
    """The evaluation goods and defects (either may be None) and what is left of the pool:
    evaluation goods are never trained on."""
    data = args.data
    eval_good, eval_defect = None, None
    if args.eval_defect:
        eval_defect = load_set(args.eval_defect, data, "--eval-defect")
    elif not args.eval_good and data is not None and (data / "defect").is_dir():
        eval_defect = list_dir_images(data / "defect") or None
    if args.eval_good:
        eval_good = load_set(args.eval_good, data, "--eval-good")
        ev = {p.resolve() for p in eval_good}
        before = len(pool)
        pool = [p for p in pool if p.resolve() not in ev]
        if len(pool) != before:
            log(f"note: {before - len(pool)} --eval-good images were also training images; they are not trained on")
    elif eval_defect is not None:
        n_test = max(1, int(round(len(pool) * args.test_frac)))
        eval_good, pool = pool[:n_test], pool[n_test:]
        log(f"evaluation goods: {n_test} images held out of the training pool (--test-frac {args.test_frac})")
    return eval_good, eval_defect, pool


def describe_evaluation(args, eval_good, eval_defect) -> str | None:
    if eval_good is None and eval_defect is None:
        return None
    data = args.data
    return "; ".join(x for x in (
        f"good: {args.eval_good}" if args.eval_good else (f"good: {len(eval_good)} held out of the training images" if eval_good else None),
        f"defect: {args.eval_defect or (str(data / 'defect') if eval_defect else '')}" if eval_defect else None) if x)


def split_sets(args) -> Sets:
    """Training, calibration and evaluation images, from --data and the list options."""
    pool, data_desc = training_pool(args, np.random.RandomState(args.seed))
    eval_good, eval_defect, pool = evaluation_sets(args, pool)
    n_val = max(2, int(round(len(pool) * args.val_frac)))
    if len(pool) - n_val < 2:
        raise SystemExit(f"error: too few training images ({len(pool)}) for a {args.val_frac} calibration split")
    return Sets(train=pool[n_val:], calibration=pool[:n_val], eval_good=eval_good, eval_defect=eval_defect,
                data_desc=data_desc, eval_desc=describe_evaluation(args, eval_good, eval_defect))


# --------------------------------------------------------------------------- decoding and the input contract


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


# --size 0's cap per recipe: the feature recipe's graph stays under 30 GFLOPs at 1024 x 1024
# (docs/detection.md); the pixel recipe's costs 294 GFLOPs at 512 x 512.
AUTO_MAX_SIZE = {"features": 1024, "pixels": 512}


def auto_size(paths: list[Path], cap: int) -> int:
    """--size 0: room for the largest training image at its own pixel scale (the fit policy
    then never resizes it), rounded up to a multiple of 64, capped at `cap` (beyond it
    images are scaled down); at least 64."""
    def longest(p):
        with Image.open(p) as im:
            return max(im.size)
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        m = max(ex.map(longest, paths))
    return max(64, min(cap, -(-m // 64) * 64))
