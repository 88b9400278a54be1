"""The training loop: adversarial restoration training of each member within the time
budget, with progress checks on the held-back goods."""
from __future__ import annotations

import copy
import math
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

from .anomalies import content_boxes, corrupt, corrupt_in_crops, crop, crop_origins
from .data import standardize, to_model_input
from .log import fmt_s, log
from .losses import focal_loss, gaussian_kernel1d, ssim_map
from .metrics import auroc
from .networks import Discriminator, Generator, SegHead
from .scoring import Scorer


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


class Monitor:
    """Progress check on the held-back goods: their L1 reconstruction error, and the image
    AUROC between them and a fixed synthetic-defect copy of the score the run is building
    (the segmentation head's map if there is one, else the plain residual). With an
    evaluation set (xeval = (good u8, defect u8)) its AUROC is printed too, for information:
    it shows whether longer training still helps and is never used to choose anything."""

    def __init__(self, S, xval_u8: torch.Tensor, cval: torch.Tensor, device, args, xeval=None):
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(args.seed + 777)
            self.xs = to_model_input(xval_u8.to(device))
            self.xsyn, _ = corrupt_in_crops(self.xs, cval.to(device), net_size(args), 1.0, args.stroke_frac,
                                            args.shade_frac)
        self.S, self.crop, self.device, self.xeval = S, net_size(args), device, xeval
        self.standardize = args.standardize == "on"

    @torch.no_grad()
    def __call__(self, G, Sg=None) -> str:
        c, device = self.crop, self.device
        sc = Scorer(G, None, self.S, weights=(0.0, 0.0, 0.0, 1.0) if Sg is not None else (1.0, 0.0, 0.0, 0.0),
                    pool=max(1, c // 16), sigma=max(1.0, c / 64.0), seg=Sg, standardize=self.standardize).to(device)
        nets = [n_ for n_ in (G, Sg) if n_ is not None]
        for n_ in nets:
            n_.eval()
        xs = self.xs
        xn = standardize(xs) if self.standardize else xs
        rec = torch.cat([(G.reconstruct(xn[i:i + 64])[0].clamp(-1, 1) - xn[i:i + 64]).abs().flatten(1).mean(1)
                         for i in range(0, len(xn), 64)])
        out = f"held-back rec {float(rec.mean()):.4f} synth AUROC {auroc(batch_scores(sc, self.xsyn), batch_scores(sc, xs)):.3f}"
        if self.xeval is not None:
            good, bad = (batch_scores(sc, to_model_input(u.to(device))) for u in self.xeval)
            out += f" eval AUROC {auroc(bad, good):.4f} (info)"
        for n_ in nets:
            n_.train()
        return out


def batch_scores(scorer, x: torch.Tensor) -> np.ndarray:
    return torch.cat([scorer(x[i:i + 64])[0] for i in range(0, len(x), 64)]).float().cpu().numpy()


class TimeBudget:
    """Shortens the planned epochs once the epoch time is known, so that the learning-rate
    schedule completes within `minutes`, progress checks included."""

    def __init__(self, minutes: float, planned: int, checks: bool):
        self.minutes, self.seconds, self.planned, self.checks = minutes, minutes * 60.0, planned, checks
        self.t0 = time.time()
        self.epoch_secs = []
        self.check_secs = []  # how long each progress check took

    def end_epoch(self, ep: int, secs: float, now: float) -> float:
        """Re-plans after epoch `ep` took `secs`; returns the estimated seconds left."""
        self.epoch_secs.append(secs)
        # The first epoch carries start-up costs (cuDNN autotuning): plan from the median of the
        # next five (one slow epoch 2, while another job on the GPU was starting, once cut a
        # schedule to 88 of 205 epochs: round 15 of docs/detection.md). The progress checks
        # still to come are budgeted at the median of the checks after the first, which
        # carries the autotuning for full-size inputs (about 52 s against 3 s for the later
        # ones at 640 px: spread over the epochs, it cut round 16's plans to 176 of 205).
        ep_times, check_secs = self.epoch_secs, self.check_secs
        recent = float(np.median(ep_times[1:][-5:])) if len(ep_times) > 1 else ep_times[0]
        per_check = float(np.median(check_secs[1:])) if len(check_secs) > 1 else 0.0
        # about 11 checks per run whatever the plan (every tenth of it, and the last epoch)
        checks_left = max(1, 11 - len(check_secs)) if self.checks else 0
        fits = ep + int((self.seconds - (now - self.t0) - per_check * checks_left) / max(recent, 1e-6))
        if fits < self.planned and ep >= min(6, self.planned):
            log(f"  time budget: about {recent:.2f} s/epoch, so {max(ep, fits)} of {self.planned} epochs fit in "
                f"{self.minutes:g} min; the schedule is shortened to that")
            self.planned = max(ep, fits)
        return recent * (self.planned - ep) + per_check * checks_left

    def check_due(self, ep: int) -> bool:
        return self.checks and (ep % max(1, self.planned // 10) == 0 or ep == self.planned)

    def spent(self, now: float) -> bool:
        return now - self.t0 > self.seconds


def cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine schedule over the planned steps, short linear warm-up."""
    warm = min(200, total // 10 + 1)
    return base * (min(1.0, (step + 1) / warm)) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total)))))


@torch.no_grad()
def augment(x: torch.Tensor, cm: torch.Tensor, args, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips, lighting jitter and over-exposure of a training batch x and its content masks cm."""
    if args.flip:
        fl = torch.rand(x.shape[0], device=device) < 0.5
        x = torch.where(fl[:, None, None, None], x.flip(3), x)
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
    return x, cm


@torch.no_grad()
def ema_update(live_nets, averages, decay: float) -> None:
    """Moves each average's weights towards its live network's by 1 - decay."""
    for live, avg in zip(live_nets, averages):
        if live is None:
            continue
        torch._foreach_lerp_(list(avg.parameters()), list(live.parameters()), 1 - decay)
        for ba, bl in zip(avg.buffers(), live.buffers()):
            if ba.dtype.is_floating_point:
                ba.lerp_(bl, 1 - decay)
            else:
                ba.copy_(bl)


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
    win = torch.outer(gaussian_kernel1d(1.5, 5), gaussian_kernel1d(1.5, 5))[None, None].to(device)
    S, c = xtrain_u8.shape[-1], net_size(args)
    boxes = content_boxes(content) if c < S else None  # where the training crops may go
    budget = TimeBudget(minutes, epochs, monitor is not None)
    log(f"training: {N} images, batch {bs}, {steps_per_epoch} steps/epoch, {epochs} epochs planned "
        f"({epochs * steps_per_epoch} steps), time budget {minutes:g} min, amp={'bf16' if amp else 'off'}, "
        f"segmentation head {'bf16' if seg_amp else 'fp32'}")
    step = 0
    ep = 0
    G.train()
    D.train()
    while ep < budget.planned:
        te = time.time()
        perm = torch.randperm(N, device=device)
        sums = {}
        for it in range(steps_per_epoch):
            lr = cosine_lr(args.lr, step, budget.planned * steps_per_epoch)
            for o, f in ((optG, 1.0), (optD, 1.0), (optS, 2.0)):
                for g_ in (o.param_groups if o is not None else []):
                    g_["lr"] = lr * f
            idx = perm[it * bs:(it + 1) * bs]
            xb, cm = xtrain_u8[idx], content[idx]
            if boxes is not None:
                ys, xs = crop_origins(boxes[idx], S, c)
                xb, cm = crop(xb, ys, xs, c), crop(cm, ys, xs, c)
            x, cm = augment(to_model_input(xb), cm, args, device)
            with torch.no_grad():
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
                ema_update((G, Sg), ema, min(args.ema, (1 + step) / (10 + step)))
            step += 1
            for k_, v in (("G", lossG), ("rec", l_rec), ("ssim", l_ssim), ("lat", l_lat), ("fm", l_fm),
                          ("gan", l_gan), ("D", lossD), ("seg", l_seg)):
                sums[k_] = sums.get(k_, 0.0) + v.detach()
        sums = {k_: float(v) / steps_per_epoch for k_, v in sums.items()}
        if not all(math.isfinite(v) for v in sums.values()):
            raise SystemExit(f"error: a loss is not finite at epoch {ep + 1}: {sums}; lower --lr")
        ep += 1
        now = time.time()
        eta = budget.end_epoch(ep, now - te, now)
        mon = ""
        if budget.check_due(ep):
            t_mon = time.time()
            mon = "  | " + monitor(*averaged)
            budget.check_secs.append(time.time() - t_mon)
        log(f"epoch {ep:4d}/{budget.planned}  G {sums['G']:.4f} (rec {sums['rec']:.4f} ssim {sums['ssim']:.4f} "
            f"lat {sums['lat']:.4f} fm {sums['fm']:.4f} gan {sums['gan']:+.3f})  D {sums['D']:.3f}  seg {sums['seg']:.4f}  "
            f"lr {lr:.2e}  {now - te:.1f}s/ep  elapsed {fmt_s(now - t_start)}  ETA {fmt_s(eta)}{mon}")
        if budget.spent(now) and ep < budget.planned:
            log(f"  time budget of {minutes:g} min spent after {ep} epochs: stopping")
            break
    if args.ema > 0:
        for live, avg in zip((G, Sg), ema):
            if live is not None:
                live.load_state_dict(avg.state_dict())
    return ep, step


def train_members(args, C: int, xtrain, ctrain, device, t_start, monitor):
    """One or more members (seeds --seed, --seed + 1, ...), trained one after the other.
    Returns [(G, D, Sg)] per member, in eval mode, and the epochs they took in all."""
    K = args.members
    Sn = net_size(args)
    members = []
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
            log_network_sizes(G, D, Sg, Sn)
        ep_j, _ = train(args, G, D, xtrain, ctrain, device, t_start, monitor, Sg, minutes=minutes_j)
        epochs_done += ep_j
        for n_ in (G, D, Sg):
            if n_ is not None:
                n_.eval().to(memory_format=torch.contiguous_format)
        members.append((G, D, Sg))
    return members, epochs_done


def log_network_sizes(G, D, Sg, Sn: int) -> None:
    n_exp = sum(p.numel() for n_, p in G.named_parameters() if not n_.startswith("e2."))
    log(f"generator: {sum(p.numel() for p in G.parameters()) / 1e6:.2f} M parameters "
        f"({n_exp / 1e6:.2f} M in the exported reconstruction path), skips at levels "
        f"{[Sn // 2 ** (i + 1) for i, s in enumerate(G.skip) if s]} px of {Sn}; discriminator: "
        f"{sum(p.numel() for p in D.parameters()) / 1e6:.2f} M parameters; segmentation head: "
        f"{'none' if Sg is None else f'{sum(p.numel() for p in Sg.parameters()) / 1e6:.2f} M parameters'}")


def save_checkpoint(args, name: str, members, channels: str) -> None:
    """The trained members beside the run (not for the repo)."""
    ckpt = args.ckpt_dir / f"linesight-{name}-checkpoint.pt"
    try:
        args.ckpt_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"members": [{"G": G.state_dict(), "D": D.state_dict(), "Sg": None if Sg is None else Sg.state_dict()}
                                for G, D, Sg in members], "args": vars(args), "channels": channels}, ckpt)
        log(f"checkpoint: {ckpt}")
    except OSError as e:
        log(f"note: checkpoint not saved ({e})")
