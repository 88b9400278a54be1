#!/usr/bin/env python3
"""The detection benchmark: trains the default recipe on each data set with N seeds, scores
every model through `linesight eval` on its test split, and writes one table.

    python models/training/benchmark.py DATA [DATA ...] --out bench-out [--seeds 3]
        [--stage all|train|eval] [--per-gpu 1] [--linesight target/release/linesight]
        [-- TRAIN.PY OPTIONS]

DATA is a folder with good/ and defect/ (docs/datasets.md: defect kinds from sub-folders or
file-name prefixes, masks in masks/). With splits/train_good.txt, splits/test_good.txt and
splits/test_defect.txt those are the splits; without them train.py holds out a fifth of
good/ for the test (and writes the lists it used). Trainings run one per GPU at a time
(--per-gpu K: K share each GPU; on the CPU where there is none). `--stage train` on a GPU
machine and `--stage eval` where linesight is built split the two; the table is written
after either from whatever the run folders hold (`--stage table` writes only the table).

Per set and seed: OUT/SET/seedN/ (model.onnx, model.toml, train_log.txt, train_figures.json,
eval-variants.json, eval/report.json); the table: OUT/benchmark.json and OUT/benchmark.md, with
the scoring-variant table (every run's eval-variants.json: the same networks scored in other
ways, for recipe decisions over all sets; printed too)."""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SPLITS = ("splits/train_good.txt", "splits/test_good.txt", "splits/test_defect.txt")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("data", nargs="+", type=Path, help="data set folders")
    ap.add_argument("--out", type=Path, required=True, help="benchmark folder (run folders and the table)")
    ap.add_argument("--seeds", type=seed_list, default="3",
                    help="N: seeds 0 .. N-1 per set; or a list such as 1,2 (the seeds a first run left out)")
    ap.add_argument("--stage", choices=["all", "train", "eval", "table"], default="all",
                    help="table: only write the table from what the run folders hold (runs gathered from several machines)")
    ap.add_argument("--per-gpu", type=int, default=1, help="trainings sharing one GPU at a time")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads per training (0 = the machine's cores shared among those running at once)")
    ap.add_argument("--linesight", type=Path, default=REPO / "target/release/linesight",
                    help="the linesight binary for the evaluation")
    ap.add_argument("--python", default=sys.executable, help="the Python that runs train.py")
    ap.add_argument("--eval-seeds", type=int, default=0,
                    help="run `linesight eval` on seeds 0 .. N-1 only (0 = all); the others keep the training's own "
                         "evaluation (the same graph in torch on the same test split)")
    ap.add_argument("--eval-jobs", type=int, default=1, help="`linesight eval` runs side by side")
    ap.add_argument("--eval-config", type=Path,
                    help="config file whose [runtime] `linesight eval` takes (threads, provider)")
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)  # after --: options for every train.py run
    a = ap.parse_args(argv[:cut])
    a.train_args = argv[cut + 1:]
    for d in a.data:
        if not (d / "good").is_dir():
            ap.error(f"{d}: no good/ folder (a data set has good/ and defect/, docs/datasets.md)")
    return a


def seed_list(text: str) -> list[int]:
    """`--seeds`: "3" is seeds 0, 1, 2; "1,2" is seeds 1 and 2."""
    try:
        seeds = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count such as 3 or a list such as 1,2, found {text!r}")
    if any(s < 0 for s in seeds) or ("," not in text and seeds[0] < 1):
        raise argparse.ArgumentTypeError(f"expected a count of at least 1 or seeds of 0 and more, found {text!r}")
    return seeds if "," in text else list(range(seeds[0]))


def gpus() -> int:
    """How many NVIDIA GPUs nvidia-smi lists (0 without one)."""
    if not shutil.which("nvidia-smi"):
        return 0
    r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return sum(line.startswith("GPU ") for line in r.stdout.splitlines()) if r.returncode == 0 else 0


def run_dir(out: Path, data: Path, seed: int) -> Path:
    return out / data.resolve().name / f"seed{seed}"


def train_command(a, data: Path, seed: int, rd: Path) -> list[str]:
    cmd = [a.python, str(HERE / "train.py"), "--data", str(data), "--seed", str(seed), "--out", str(rd),
           "--name", data.resolve().name, "--ckpt-dir", str(rd)]
    if all((data / s).is_file() for s in SPLITS):
        cmd += ["--train-list", SPLITS[0], "--eval-good", SPLITS[1], "--eval-defect", SPLITS[2]]
    return cmd + a.train_args


def train_all(a, runs: list[tuple[Path, int]]) -> None:
    n_gpu = gpus()
    slots = max(1, n_gpu) * max(1, a.per_gpu)
    threads = a.threads or max(1, (os.cpu_count() or 1) // slots)
    print(f"training {len(runs)} runs, {slots} at a time on {n_gpu or 'no'} GPU(s)", flush=True)

    def one(i_run):
        i, (data, seed) = i_run
        rd = run_dir(a.out, data, seed)
        rd.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        if n_gpu:
            env["CUDA_VISIBLE_DEVICES"] = str(i % n_gpu)
        t0 = time.time()
        with open(rd / "stdout.txt", "w") as f:
            rc = subprocess.run(train_command(a, data, seed, rd), stdout=f, stderr=subprocess.STDOUT, env=env).returncode
        print(f"  {rd.relative_to(a.out)}: {'done' if rc == 0 else f'FAILED (exit {rc}, see stdout.txt)'} "
              f"in {time.time() - t0:.0f}s", flush=True)
        return rc

    with concurrent.futures.ThreadPoolExecutor(slots) as ex:
        rcs = list(ex.map(one, enumerate(runs)))
    if any(rcs):
        raise SystemExit(f"error: {sum(r != 0 for r in rcs)} of {len(runs)} trainings failed")


def eval_lists(data: Path, rd: Path) -> tuple[Path, Path]:
    """The test goods and defects: the set's splits, else the lists train.py wrote."""
    if all((data / s).is_file() for s in SPLITS):
        return data / SPLITS[1], data / SPLITS[2]
    return rd / "eval_good.txt", rd / "eval_defect.txt"


def eval_all(a, runs: list[tuple[Path, int]]) -> None:
    if not a.linesight.is_file():
        raise SystemExit(f"error: {a.linesight} not found: build it (cargo build --release) or give --linesight")
    todo = [(d, s) for d, s in runs if not a.eval_seeds or s < a.eval_seeds]

    def one(run):
        data, seed = run
        rd = run_dir(a.out, data, seed)
        if not (rd / "model.toml").is_file():
            print(f"  {rd.relative_to(a.out)}: no model.toml, not evaluated", flush=True)
            return
        good, defect = eval_lists(data, rd)
        cmd = [str(a.linesight), "eval", "--model", str(rd), "--good", str(good), "--defect", str(defect),
               "--out", str(rd / "eval")] + (["--config", str(a.eval_config)] if a.eval_config else [])
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"error: linesight eval of {rd} failed:\n{r.stderr}")
        print(f"  {rd.relative_to(a.out)}: evaluated in {time.time() - t0:.0f}s", flush=True)

    with concurrent.futures.ThreadPoolExecutor(max(1, a.eval_jobs)) as ex:
        list(ex.map(one, todo))


def row(a, data: Path, seed: int) -> dict | None:
    rd = run_dir(a.out, data, seed)
    if not (rd / "model.toml").is_file():
        return None
    m = tomllib.loads((rd / "model.toml").read_text())
    fig = json.loads((rd / "train_figures.json").read_text()) if (rd / "train_figures.json").is_file() else {}
    rep = json.loads((rd / "eval/report.json").read_text()) if (rd / "eval/report.json").is_file() else {}
    prov, cal, ev = m.get("provenance", {}), m.get("calibration", {}), m.get("evaluation", {})
    at, r95 = rep.get("at_threshold") or {}, rep.get("at_recall_95") or {}
    if not rep:  # not run through linesight eval: the training's own figures on the same test split
        at = {"recall": ev.get("recall_at_threshold"), "false_reject_rate": ev.get("false_reject_rate_at_threshold")}
    return {
        "set": data.resolve().name, "seed": seed, "measured_by": "linesight eval" if rep else "training (torch)",
        "image_auroc": rep.get("image_auroc", ev.get("image_auroc")),
        "pixel_auroc": rep.get("pixel_auroc", ev.get("pixel_auroc")),
        "average_precision": rep.get("average_precision"),
        "frr_at_95_recall": r95.get("false_reject_rate"),
        "recall_at_threshold": at.get("recall"), "frr_at_threshold": at.get("false_reject_rate"),
        "frr_budget": cal.get("false_reject_budget"),
        "train_minutes": prov.get("seconds", float("nan")) / 60,
        "gflops_per_part": prov.get("gflops_per_part"),
        "cuda_ms_torch": fig.get("cuda_ms_torch"),
        "cpu_ms_linesight_p50": (rep.get("latency_ms") or [None])[0],
        "input": m["input"]["shape"][2],
        "selection_spearman": fig.get("selection_spearman"),
        "auroc_restoration_only": fig.get("auroc_restoration_only"),
        "auroc_neighbour_only": fig.get("auroc_neighbour_only"),
        "auroc_in_training": ev.get("image_auroc"),
        "gan_weight": fig.get("gan_weight"),
    }


COLS = [("set", "set", "{}"), ("seed", "seed", "{}"), ("measured_by", "measured by", "{}"), ("image_auroc", "image AUROC", "{:.4f}"),
        ("pixel_auroc", "pixel AUROC", "{:.4f}"), ("average_precision", "AP", "{:.4f}"),
        ("frr_at_95_recall", "FRR @ 95% recall", "{:.3f}"), ("recall_at_threshold", "recall @ thr", "{:.3f}"),
        ("frr_at_threshold", "FRR @ thr", "{:.3f}"), ("train_minutes", "train min", "{:.1f}"),
        ("gflops_per_part", "GFLOPs/part", "{:.1f}"), ("cuda_ms_torch", "CUDA ms (torch)", "{:.2f}"),
        ("cpu_ms_linesight_p50", "CPU ms (linesight p50)", "{:.0f}"), ("selection_spearman", "selection ρ", "{:.2f}"),
        ("auroc_restoration_only", "GAN map alone", "{:.4f}"), ("auroc_neighbour_only", "bank map alone", "{:.4f}"),
        ("gan_weight", "GAN weight", "{:g}")]


def cell(v, fmt: str) -> str:
    return "–" if v is None or (isinstance(v, float) and v != v) else fmt.format(v)


def summary(rows: list[dict]) -> list[dict]:
    """Per set: mean and minimum over seeds of the image AUROC, mean of the rest."""
    out = []
    for s in sorted({r["set"] for r in rows}):
        rs = [r for r in rows if r["set"] == s and r["image_auroc"] is not None]
        if not rs:
            continue
        d = {"set": s, "seeds": len(rs), "image_auroc_mean": statistics.mean(r["image_auroc"] for r in rs),
             "image_auroc_min": min(r["image_auroc"] for r in rs)}
        for k in ("pixel_auroc", "recall_at_threshold", "frr_at_threshold", "frr_at_95_recall", "selection_spearman"):
            v = [r[k] for r in rs if r[k] is not None]
            d[k + "_mean"] = statistics.mean(v) if v else None
        out.append(d)
    return out


def read_variants(a, runs: list[tuple[Path, int]]) -> list[dict]:
    """Every run's eval-variants.json, reduced to the set, seed, chosen GAN weight and, per
    variant, its image, pixel and synthetic AUROC."""
    out = []
    for data, seed in runs:
        f = run_dir(a.out, data, seed) / "eval-variants.json"
        if not f.is_file():
            continue
        d = json.loads(f.read_text())
        out.append({"set": data.resolve().name, "seed": seed, "gan_weight_chosen": d.get("gan_weight_chosen"),
                    "variants": {k: {m: v.get(m) for m in ("image_auroc", "pixel_auroc", "synthetic_auroc")}
                                 for k, v in d.get("variants", {}).items()}})
    return out


SYN_PICK = "(per run: best synthetic)"  # the rule a training could apply: the variant its synthetic defects rank first


def variant_summary(runs: list[dict]) -> dict:
    """Per variant and set, the mean over seeds of the image AUROC (and pixel AUROC where
    there is one); per variant the mean and the minimum over sets; a leave-one-set-out
    check (for each set, the variant with the best mean over the other sets, and what it
    gives on the set left out); and the row of a rule a training could apply by itself:
    in each run, the variant with the highest synthetic AUROC (ties: the first listed)."""
    sets = sorted({r["set"] for r in runs})
    names = []
    for r in runs:
        names += [v for v in r["variants"] if v not in names]
    table = {}
    for v in names + [SYN_PICK]:
        per, px = {}, {}
        for s in sets:
            vals, pvals = [], []
            for r in (r_ for r_ in runs if r_["set"] == s):
                if v == SYN_PICK:
                    cand = [(k, d) for k, d in r["variants"].items() if d.get("synthetic_auroc") is not None]
                    if not cand:
                        continue
                    d = max(cand, key=lambda kd: kd[1]["synthetic_auroc"])[1]
                else:
                    d = r["variants"].get(v)
                if d and d.get("image_auroc") is not None:
                    vals.append(d["image_auroc"])
                    if d.get("pixel_auroc") is not None:
                        pvals.append(d["pixel_auroc"])
            if vals:
                per[s] = statistics.mean(vals)
            if pvals:
                px[s] = statistics.mean(pvals)
        if per:
            table[v] = {"per_set": per, "pixel_per_set": px, "mean": statistics.mean(per.values()),
                        "min": min(per.values()), "complete": len(per) == len(sets)}
    loso = {}
    full = [v for v in names if v in table and table[v]["complete"]]
    if len(sets) > 1:
        for s in sets:
            best = max(full, key=lambda v: statistics.mean(x for t, x in table[v]["per_set"].items() if t != s),
                       default=None)
            if best is not None:
                loso[s] = {"variant": best, "image_auroc": table[best]["per_set"][s]}
    weights = {s: [r["gan_weight_chosen"] for r in runs if r["set"] == s] for s in sets}
    return {"sets": sets, "variants": table, "leave_one_set_out": loso, "gan_weight_chosen": weights}


def variant_lines(vs: dict) -> list[str]:
    """The variant table in Markdown."""
    sets = vs["sets"]
    if not vs["variants"]:
        return []
    L = ["## Scoring variants", "",
         "Image AUROC on the test split of the same networks scored in other ways (eval-variants.json of each run; "
         "mean over seeds per set), for recipe decisions only: nothing inside a training chose with it.", "",
         "| variant | " + " | ".join(sets) + " | mean | min |", "|---|" + "---|" * (len(sets) + 2)]
    for v, d in vs["variants"].items():
        L.append(f"| {v} | " + " | ".join(cell(d["per_set"].get(s), "{:.4f}") for s in sets)
                 + f" | {d['mean']:.4f} | {d['min']:.4f} |" + ("" if d["complete"] else " (not every set)"))
    px_sets = [s for s in sets if any(s in d["pixel_per_set"] for d in vs["variants"].values())]
    if px_sets:
        L += ["", "Pixel AUROC (sets with masks):", "", "| variant | " + " | ".join(px_sets) + " |",
              "|---|" + "---|" * len(px_sets)]
        for v, d in vs["variants"].items():
            if any(s in d["pixel_per_set"] for s in px_sets):
                L.append(f"| {v} | " + " | ".join(cell(d["pixel_per_set"].get(s), "{:.4f}") for s in px_sets) + " |")
    if vs["leave_one_set_out"]:
        lo = vs["leave_one_set_out"]
        vals = [d["image_auroc"] for d in lo.values()]
        L += ["", "Leave one set out (the variant with the best mean over the other sets, on the set left out): "
              + "; ".join(f"{s}: {d['variant']} {d['image_auroc']:.4f}" for s, d in lo.items())
              + f". Mean {statistics.mean(vals):.4f}, min {min(vals):.4f}."]
    L += ["", "GAN weight chosen in training (held-back goods + synthetic defects), per seed: "
          + "; ".join(f"{s}: " + ", ".join(cell(w, "{:g}") for w in ws) for s, ws in vs["gan_weight_chosen"].items())
          + "."]
    return L


def write_table(a, rows: list[dict], vruns: list[dict] | None = None) -> None:
    summ = summary(rows)
    vs = variant_summary(vruns or [])
    (a.out / "benchmark.json").write_text(json.dumps({"runs": rows, "per_set": summ, "variants": vs,
                                                      "train_args": a.train_args}, indent=1))
    L = ["# linesight detection benchmark", "",
         f"`python models/training/benchmark.py {' '.join(str(d) for d in a.data)} --out {a.out} --seeds {','.join(map(str, a.seeds))}"
         + (" -- " + " ".join(a.train_args) if a.train_args else "") + "`", "",
         "| " + " | ".join(c[1] for c in COLS) + " |", "|" + "---|" * len(COLS)]
    for r in rows:
        L.append("| " + " | ".join(cell(r[k], f) for k, _, f in COLS) + " |")
    if summ:
        L += ["", "| set | seeds | image AUROC mean | min | pixel AUROC mean | recall @ thr | FRR @ thr | selection ρ |",
              "|---|---|---|---|---|---|---|---|"]
        for d in summ:
            L.append(f"| {d['set']} | {d['seeds']} | {d['image_auroc_mean']:.4f} | {d['image_auroc_min']:.4f} | "
                     f"{cell(d['pixel_auroc_mean'], '{:.4f}')} | {cell(d['recall_at_threshold_mean'], '{:.3f}')} | "
                     f"{cell(d['frr_at_threshold_mean'], '{:.3f}')} | {cell(d['selection_spearman_mean'], '{:.2f}')} |")
        means = [d["image_auroc_mean"] for d in summ]
        L += ["", f"Over the sets: mean image AUROC {statistics.mean(means):.4f}, worst set {min(means):.4f}, "
                  f"worst single run {min(d['image_auroc_min'] for d in summ):.4f}."]
    L += ["", "Image/pixel AUROC, AP, FRR (false-reject rate) and recall are on the test split, by `linesight eval` "
              "(ONNX Runtime, the exported model) or, where 'measured by' says training, by train.py's own evaluation "
              "of the same graph in torch (recall and FRR at the manifest threshold); CUDA ms: the graph in torch at batch 1 on the training GPU; "
              "CPU ms: linesight's preprocess + inference p50 during the evaluation; selection ρ: rank correlation of "
              "the weight-choosing signal (held-back goods' restoration error) with the real-defect AUROC over the "
              "training's checks."]
    VL = variant_lines(vs)
    if VL:
        L += [""] + VL
        print("\n".join(VL))
    (a.out / "benchmark.md").write_text("\n".join(L) + "\n")
    print(f"wrote {a.out / 'benchmark.md'} and benchmark.json ({len(rows)} runs)")


def main(argv=None):
    a = parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    runs = [(d, s) for d in a.data for s in a.seeds]
    if a.stage in ("all", "train"):
        train_all(a, runs)
    if a.stage in ("all", "eval"):
        eval_all(a, runs)
    write_table(a, [r for r in (row(a, d, s) for d, s in runs) if r is not None], read_variants(a, runs))


if __name__ == "__main__":
    main()
