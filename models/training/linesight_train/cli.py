"""The command line (models/training/train.py): options, then the run from data to manifest."""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .data import (AUTO_MAX_SIZE, RESIZE_POLICIES, auto_size, content_mask, is_gray_image, load_images,
                   split_sets)
from .evaluation import calibrate, evaluate
from .export import export_and_check
from .fit import Monitor, net_size, pick_device, save_checkpoint, seed_all, train_members
from .log import close_log, fmt_s, log, open_log
from .feature_recipe import gan_weight_arg, gflops, train_feature_model
from .variants import report as variant_report
from .manifest import git_commit, gumbel_method, quantile_method, write_manifest
from .networks import n_levels
from .scoring import MAP_VARIANTS
from .selection import build_scorer, choose_scoring, describe


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Train a linesight anomaly model (GANomaly-family, restoration-trained) on good "
                    "images and export model.onnx + model.toml.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--recipe", choices=["features", "pixels"], default="features",
                    help="features: a GAN restoring pretrained EfficientNet-Lite0 features, fused with a memory "
                         "bank of good features (docs/detection.md); pixels: the earlier GANomaly-family recipe "
                         "on pixels (its options are the 'training', 'model' and 'scoring' groups)")
    d = ap.add_argument_group("data")
    d.add_argument("--data", type=Path, help="data set folder: trains on DIR/good/ unless --train-list is given; "
                   "DIR/defect/ (if present, and no --eval-* is given) is the evaluation's defect set")
    d.add_argument("--train-list", help="text file of good image paths, one a line, relative to the folder above "
                   "the list's folder (also looked up under --data)")
    d.add_argument("--eval-good", help="good images for evaluation: a folder or a list file")
    d.add_argument("--eval-defect", help="defect images for evaluation: a folder or a list file (kinds and masks: "
                   "docs/datasets.md)")
    d.add_argument("--out", type=Path, required=True, help="output folder (models/NAME)")
    d.add_argument("--name", help="model name in the manifest (default: the --out folder's name)")
    d.add_argument("--size", type=int, default=0,
                   help="square model input side S; 0 = auto: the longest training image side rounded up to a "
                        f"multiple of 64, at most {AUTO_MAX_SIZE['features']} ({AUTO_MAX_SIZE['pixels']} with "
                        "--recipe pixels; with --resize fit, images keep their pixel scale)")
    d.add_argument("--crop", type=int, default=256,
                   help="train the (fully convolutional) networks on random crops of this side from the S x S inputs "
                        "when S is larger; 0 = whole inputs. The exported graph takes the whole S x S input")
    d.add_argument("--resize", choices=RESIZE_POLICIES, default="fit",
                   help="how images of any size and aspect become S x S: stretch each axis, letterbox "
                        "(aspect kept, centred on black) or fit (letterbox, never enlarged); linesight applies the same policy from the manifest")
    d.add_argument("--channels", choices=["auto", "gray", "rgb"], default="auto",
                   help="auto = gray if every training image is grey")
    d.add_argument("--val-frac", type=float, default=0.15,
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
    f = ap.add_argument_group("feature recipe (--recipe features)")
    f.add_argument("--passes", type=float, default=100.0,
                   help="training length in passes over each training image (so few goods are not over-trained)")
    f.add_argument("--checks", type=int, default=20,
                   help="times during training that the held-back goods' restoration error is measured; the "
                        "weights with the lowest are kept")
    f.add_argument("--gen-width", type=int, default=128, help="channels of the feature generator and discriminator")
    f.add_argument("--crop-cells", type=int, default=32,
                   help="training crops of this many feature cells a side (8 px each), centred on the part")
    f.add_argument("--w-adv", type=float, default=0.05, help="weight of the generator's adversarial (hinge) loss")
    f.add_argument("--bank", type=int, default=2048, help="memory-bank size in feature cells (greedy coreset)")
    f.add_argument("--bank-cells", type=int, default=200_000,
                   help="training cells drawn at random for the coreset to choose from")
    f.add_argument("--gan-weight", type=gan_weight_arg, default="1",
                   help="weight W of the GAN's restoration map relative to the memory bank's in the fused map, "
                        "(W r + k) / (1 + W) of the normalised maps: 1 = their mean; auto = the weight (0 to 2) whose "
                        "fused score best separates the held-back goods from the same goods with synthetic defects "
                        "(never the real defects)")
    f.add_argument("--frr-budget", type=float, default=0.02,
                   help="false-reject rate the manifest threshold is set for (Gumbel fit to held-back goods' "
                        "scores; written into model.toml)")
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


def check_args(args) -> None:
    if args.size and (args.size < 16 or n_levels(args.size) < 2):
        raise SystemExit("error: --size must be 0 (auto) or at least 16 and a multiple of 8 (e.g. 64, 128, 256)")
    if args.crop < 0 or (0 < args.crop < 16):
        raise SystemExit("error: --crop must be 0 (whole inputs) or at least 16")
    if args.members < 1:
        raise SystemExit("error: --members must be at least 1")
    if not (0.0 < args.val_frac < 1.0):
        raise SystemExit("error: --val-frac must be in (0, 1)")
    if not (0.0 < args.frr_budget < 0.5):
        raise SystemExit(f"error: --frr-budget must be in (0, 0.5), found {args.frr_budget}")
    if args.recipe == "features" and args.size % 64:
        raise SystemExit(f"error: --size must be 0 (auto) or a multiple of 64 with --recipe features, found {args.size}")


def open_device(arg: str) -> tuple[torch.device, str]:
    """The torch device and its name for the log and the manifest."""
    device = pick_device(arg)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device, torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"


def choose_channels(arg: str, paths: list[Path]) -> str:
    if arg != "auto":
        return arg
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        return "gray" if all(ex.map(is_gray_image, paths)) else "rgb"


def choose_size(args, paths: list[Path]) -> None:
    """Sets args.size where it is 0 (auto) and checks that the crops tile it."""
    cap = AUTO_MAX_SIZE[args.recipe]
    if args.size == 0:
        args.size = auto_size(paths, cap)
        log(f"input size: {args.size} x {args.size} (--size 0: the longest training image side, rounded up to a "
            f"multiple of 64, at most {cap})")
    if args.recipe == "features":
        return
    S, Sn = args.size, net_size(args)
    if Sn < S and S % 2 ** n_levels(Sn):
        raise SystemExit(f"error: --size {S} must be a multiple of {2 ** n_levels(Sn)} to train on --crop {Sn} crops")


def decode_sets(sets, channels: str, S: int, R: str) -> dict:
    """Every image of the run as uint8 [N,C,S,S] and, for training and calibration, where
    synthetic defects may go: the part, not the letterbox padding ([N,1,S,S])."""
    t0 = time.time()
    x = {
        "train": load_images(sets.train, channels, S, R),
        "val": load_images(sets.calibration, channels, S, R),
        "ctrain": np.stack([content_mask(p_, S, R) for p_ in sets.train])[:, None],
        "cval": np.stack([content_mask(p_, S, R) for p_ in sets.calibration])[:, None],
        "eg": load_images(sets.eval_good, channels, S, R) if sets.eval_good else None,
        "ed": load_images(sets.eval_defect, channels, S, R) if sets.eval_defect else None,
    }
    log(f"data: {len(sets.train)} train, {len(sets.calibration)} calibration (held back), "
        f"{0 if x['eg'] is None else len(x['eg'])} eval good, {0 if x['ed'] is None else len(x['ed'])} eval defect; "
        f"channels {channels}; size {S}; loaded in {time.time() - t0:.1f}s")
    return x


def feature_variant(w: float) -> str:
    """The manifest's comment on the feature graph's outputs."""
    how = ("mean of the feature GAN's restoration error r and the memory-bank distance k" if w == 1 else
           f"(w r + k) / (1 + w), w = {w:g}, of the feature GAN's restoration error r and the memory-bank distance k"
           + (" (the bank alone)" if w == 0 else ""))
    return f"anomaly_map: {how}, per cell, each normalised by held-back goods (median, p99); score = its max"


def train_pixel_model(args, x, C, name, channels, device, t_start):
    """The pixel recipe: members trained on pixels, then map and pooling chosen on synthetic
    defects (docs/detection.md, rounds 1-19). Returns scorer, calibration, epochs, map text."""
    xtrain = torch.from_numpy(x["train"]).to(device)
    xval, cval = torch.from_numpy(x["val"]), torch.from_numpy(x["cval"])
    xeval = (torch.from_numpy(x["eg"]), torch.from_numpy(x["ed"])) if x["eg"] is not None and x["ed"] is not None else None
    monitor = Monitor(args.size, xval, cval, device, args, xeval)
    members, epochs_done = train_members(args, C, xtrain, torch.from_numpy(x["ctrain"]).to(device), device,
                                         t_start, monitor)
    save_checkpoint(args, name, members, channels)
    choice = choose_scoring(args, members, args.size, xtrain.cpu(), xval, cval, xeval, device)
    scorer = build_scorer(members, choice, args.size, args.standardize == "on")
    calib = calibrate(scorer, x["val"], args, device)
    return scorer, calib, epochs_done, describe(choice, len(members))


def main(argv=None):
    t_start = time.time()
    args = parse_args(argv)
    command = "python " + shlex.join(sys.argv if argv is None else ["models/training/train.py", *argv])
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    open_log(out / "train_log.txt")
    name = args.name or out.resolve().name
    log(f"linesight train.py  torch {torch.__version__}  {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    log(f"command: {command}")
    check_args(args)
    seed_all(args.seed)
    device, dev_name = open_device(args.device)
    log(f"device: {dev_name}")

    sets = split_sets(args)
    for what, paths in (("eval_good", sets.eval_good), ("eval_defect", sets.eval_defect)):
        if paths:  # the test lists, for `linesight eval` of this model on what it was evaluated on here
            (out / f"{what}.txt").write_text("".join(f"{p.resolve()}\n" for p in paths))
    channels = choose_channels(args.channels, sets.train)
    C = 1 if channels == "gray" else 3
    choose_size(args, sets.train)
    S = args.size
    x = decode_sets(sets, channels, S, args.resize)

    if args.recipe == "features":
        scorer, calib, info, variant_maps = train_feature_model(args, x, C, device)
        method_lines, variant = gumbel_method(args, calib), feature_variant(info["gan_weight"])
        epochs_done = args.passes
        if "cuda_ms_torch" in info:
            variant += f"; {info['cuda_ms_torch']:.2f} ms per part on {dev_name} (torch, batch 1)"
    else:
        scorer, calib, epochs_done, variant = train_pixel_model(args, x, C, name, channels, device, t_start)
        method_lines = quantile_method(args)
    t_trained = time.time()
    evaluation = None
    if x["eg"] is not None or x["ed"] is not None:
        evaluation = evaluate(scorer, sets, x["eg"], x["ed"], calib["threshold"], args, name, device, t_start,
                              t_trained)
        if args.recipe == "features":
            evaluation.update({k: v for k, v in info.items() if k.startswith(("auroc_", "selection_"))})
            if variant_maps is not None:  # for the log and the benchmark: OUT/eval-variants.json
                info["variant_image_auroc"] = variant_report(variant_maps, sets, args, out, device)
                del variant_maps

    check = np.concatenate([x["val"][:3]] + ([x["ed"][:3]] if x["ed"] is not None else []))
    flops = gflops(scorer, C, S)
    log(f"cost: {flops:.2f} GFLOPs per part at {S} x {S}")
    sha, ok = export_and_check(scorer, C, S, out, check)
    prov = {
        "data": sets.data_desc,
        "command": command,
        "commit": git_commit(Path(__file__).resolve().parent),
        "trained_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": dev_name,
        "epochs": epochs_done,
        "train_images": len(sets.train),
        "seconds": time.time() - t_start,
        "gflops": flops,
    }
    write_manifest(out / "model.toml", name=name, sha=sha, C=C, S=S, channels=channels, calib=calib,
                   method_lines=method_lines, args=args, prov=prov, evaluation=evaluation, variant_desc=variant)
    if args.recipe == "features":  # the figures the benchmark table takes from the run
        (out / "train_figures.json").write_text(json.dumps({**info, "gflops": flops, "device": dev_name,
                                                            "seconds": time.time() - t_start}, indent=1))
    log(f"wrote {out / 'model.toml'}; training {fmt_s(t_trained - t_start)}, total {fmt_s(time.time() - t_start)}")
    close_log()
    if not ok:
        sys.exit(1)
