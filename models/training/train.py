#!/usr/bin/env python3
"""Train a linesight anomaly model (GANomaly family) on good images and export it to ONNX.

    python models/training/train.py --data DIR --out models/NAME [options]

Writes OUT/model.onnx (inputs `image` [1,C,S,S]; outputs `score` [1] and
`anomaly_map` [1,1,S,S], both computed inside the graph), OUT/model.toml (the manifest
that linesight reads) and OUT/train_log.txt. The code is the package linesight_train
beside this file; see README.md here.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from linesight_train import cli  # noqa: E402

if __name__ == "__main__":
    cli.main()
