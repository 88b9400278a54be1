#!/usr/bin/env python3
"""Pulses QEMU's power button (PL061 line 3 on -M virt) N times through the monitor,
once the VM's trigger run is armed, at irregular gaps, and writes when each was sent
(host CLOCK_MONOTONIC ns) to --out, one JSON line per pulse."""

import argparse
import json
import socket
import sys
import time

GAPS_S = [1.3, 1.9, 1.1, 2.4, 1.5, 2.0, 1.2, 1.7, 2.2, 1.4]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--console", required=True)
    ap.add_argument("--monitor", required=True)
    ap.add_argument("--pulses", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout-s", type=float, default=600)
    a = ap.parse_args()
    end = time.monotonic() + a.timeout_s
    # The trigger step's "armed" line: camera streaming and line 3 requested.
    while True:
        try:
            text = open(a.console, encoding="utf-8", errors="replace").read()
        except FileNotFoundError:
            text = ""
        step = text.find("board: == trigger:")
        if step >= 0 and "armed" in text[step:]:
            break
        if "board: == trigger exited" in text or time.monotonic() > end:
            print("camera-pulse: the trigger run never armed", file=sys.stderr)
            return 1
        time.sleep(0.2)
    time.sleep(1.0)
    mon = socket.socket(socket.AF_UNIX)
    mon.connect(a.monitor)
    mon.settimeout(2)
    with open(a.out, "w") as out:
        for i in range(a.pulses):
            t = time.monotonic_ns()
            mon.sendall(b"system_powerdown\n")
            out.write(json.dumps({"pulse": i, "host_ns": t}) + "\n")
            print(f"camera-pulse: pulse {i + 1}/{a.pulses}")
            time.sleep(GAPS_S[i % len(GAPS_S)])
    mon.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
