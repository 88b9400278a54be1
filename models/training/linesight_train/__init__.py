"""Training and ONNX export of linesight's anomaly models (GANomaly family).

The command line is models/training/train.py (cli.main); models/training/README.md says
what each module holds.
"""
