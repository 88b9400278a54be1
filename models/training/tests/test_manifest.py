"""model.toml as the package writes it has every field linesight's reader needs, with the
TOML type it deserializes (src/model/manifest.rs: a float must be written as a float)."""
import math
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest

from linesight_train.cli import parse_args
from linesight_train.data import RESIZE_POLICIES
from linesight_train.manifest import quantile_method, write_manifest
from linesight_train.metrics import quantile_stats

REPO = Path(__file__).resolve().parents[3]

# What linesight's Manifest (and the structs it holds) cannot do without: table -> key -> type.
REQUIRED = {
    "": {"name": str, "format_version": int, "onnx": str, "sha256": str,
         "input": dict, "outputs": dict, "calibration": dict},
    "input": {"name": str, "shape": list, "channels": str, "resize": str, "value_range": list,
              "mean": list, "std": list},
    "outputs": {"score": str, "anomaly_map": str},
    "calibration": {"n": int, "mean": float, "std": float, "max": float, "p99": float,
                    "threshold": float, "method": str},
}
# The Rust structs behind each table.
RUST_STRUCTS = {"Manifest": "", "InputSpec": "input", "OutputNames": "outputs", "Calibration": "calibration"}


def rust_required_keys() -> set[tuple[str, str]]:
    """(table, key) of every field of the Rust structs that is neither Option<_> nor
    #[serde(default)] nor #[serde(skip)]: what linesight fails to load without."""
    src = "\n".join(p.read_text() for p in sorted((REPO / "src").rglob("*.rs")))
    out = set()
    for struct, table in RUST_STRUCTS.items():
        m = re.search(r"pub struct " + struct + r"\s*\{(.*?)\n\}", src, re.S)
        assert m, f"no `pub struct {struct}` under src/: the manifest reader changed, update RUST_STRUCTS"
        attrs = []
        for line in (l_.strip() for l_ in m.group(1).splitlines()):
            if line.startswith("#["):
                attrs.append(line)
                continue
            field = re.match(r"pub (\w+)\s*:\s*(.+?),?$", line)
            if field:
                name, ty = field.groups()
                optional = ty.startswith("Option<") or any(re.search(r"serde\((.*\b)?(default|skip)\b", a) for a in attrs)
                if not optional:
                    out.add((table, name))
                attrs = []
    return out


def write(tmp_path, channels="gray", evaluation=None, resize="fit") -> dict:
    C = 1 if channels == "gray" else 3
    args = parse_args(["--out", str(tmp_path), "--resize", resize])
    calib = quantile_stats(np.arange(1.0, 41.0))  # whole numbers: must still be TOML floats
    calib["threshold"] = 40.0
    prov = {"data": "set", "command": "python models/training/train.py --data set --out m", "commit": "unknown",
            "trained_at": "2026-01-01T00:00:00Z", "device": "cpu", "epochs": 3, "train_images": 10, "seconds": 1.5}
    path = tmp_path / "model.toml"
    write_manifest(path, name="tiny", sha="ab" * 32, C=C, S=64, channels=channels, calib=calib, method_lines=quantile_method(args), args=args, prov=prov,
                   evaluation=evaluation, variant_desc="anomaly_map: seg")
    return tomllib.loads(path.read_text())


def table(doc: dict, name: str) -> dict:
    return doc if name == "" else doc[name]


def test_rust_reader_needs_nothing_beyond_the_list():
    missing = rust_required_keys() - {(t, k) for t, keys in REQUIRED.items() for k in keys}
    assert not missing, f"linesight's manifest reader now requires {sorted(missing)}: add them to REQUIRED and write them"


@pytest.mark.parametrize("channels", ["gray", "rgb"])
@pytest.mark.parametrize("resize", RESIZE_POLICIES)
def test_every_required_field_with_its_type(tmp_path, channels, resize):
    doc = write(tmp_path, channels, resize=resize)
    for name, keys in REQUIRED.items():
        t = table(doc, name)
        for key, ty in keys.items():
            assert key in t, f"[{name}] {key} missing"
            assert type(t[key]) is ty, f"[{name}] {key} = {t[key]!r}: linesight reads a {ty.__name__}"


@pytest.mark.parametrize("channels", ["gray", "rgb"])
def test_values_pass_linesights_checks(tmp_path, channels):
    doc = write(tmp_path, channels)
    C = 1 if channels == "gray" else 3
    i = doc["input"]
    assert doc["format_version"] == 1 and doc["onnx"] == "model.onnx"
    assert re.fullmatch(r"[0-9a-f]{64}", doc["sha256"])
    assert i["name"] == "image" and i["shape"] == [1, C, 64, 64]
    assert all(type(d) is int for d in i["shape"])
    assert i["channels"] in ("gray", "rgb") and i["resize"] in ("stretch", "letterbox", "fit")
    assert i["value_range"] == [0.0, 1.0]
    for key in ("value_range", "mean", "std"):
        assert all(type(v) is float for v in i[key]), key
    assert len(i["mean"]) == len(i["std"]) == C
    assert all(s != 0 and math.isfinite(s) for s in i["std"])
    assert doc["outputs"] == {"score": "score", "anomaly_map": "anomaly_map"}
    cal = doc["calibration"]
    assert math.isfinite(cal["threshold"]) and cal["n"] == 40 and cal["method"] == "good_quantile"
    for key in ("min", "p50", "p90", "p95", "p995", "quantile", "margin"):
        assert type(cal[key]) is float, key
    assert isinstance(doc["provenance"], dict) and doc["provenance"]["training_command"].startswith("python ")


def test_evaluation_table(tmp_path):
    ev = {"data": "good: g; defect: d", "good": 5, "defect": 4, "image_auroc": 0.9, "pixel_auroc": None,
          "recall_at_threshold": 0.75, "false_reject_rate_at_threshold": float("nan"),
          "per_kind": {"crack": {"n": 3, "auroc": 1.0, "recall": 1.0},
                       "missing hole": {"n": 1, "auroc": float("nan"), "recall": 0.0}}}
    doc = write(tmp_path, evaluation=ev)
    e = doc["evaluation"]
    assert e["good"] == 5 and e["defect"] == 4 and e["image_auroc"] == 0.9
    assert "pixel_auroc" not in e and "false_reject_rate_at_threshold" not in e  # None and NaN are left out
    assert e["per_kind"]["crack"] == {"n": 3, "auroc": 1.0, "recall_at_threshold": 1.0}
    assert e["per_kind"]["missing hole"] == {"n": 1, "recall_at_threshold": 0.0}
    assert "evaluation" not in write(tmp_path)
