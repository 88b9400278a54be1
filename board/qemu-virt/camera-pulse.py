#!/usr/bin/env python3
"""Pulses QEMU's power button (PL061 line 3 on -M virt) through the monitor, in two
phases: --pulses times once the VM's trigger run is armed (irregular gaps), written
to --out; then --eject-pulses times once `linesight pulse` waits for parts, written
to --eject-out. Each line: the pulse's number, host CLOCK_MONOTONIC ns and host wall
clock ns (QEMU's trace is stamped with the wall clock)."""

import argparse
import json
import socket
import sys
import time

GAPS_S = [1.3, 1.9, 1.1, 2.4, 1.5, 2.0, 1.2, 1.7, 2.2, 1.4]


def wait_for(console, start_marker, ready, end_marker, deadline):
    """Waits until `ready` appears after `start_marker` in the console log."""
    while True:
        try:
            text = open(console, encoding="utf-8", errors="replace").read()
        except FileNotFoundError:
            text = ""
        at = text.find(start_marker)
        if at >= 0 and ready in text[at:]:
            return True
        if (at >= 0 and end_marker in text[at:]) or time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def pulse(mon, n, gaps, out):
    with open(out, "w") as f:
        for i in range(n):
            t, w = time.monotonic_ns(), time.time_ns()
            mon.sendall(b"system_powerdown\n")
            f.write(json.dumps({"pulse": i, "host_ns": t, "wall_ns": w}) + "\n")
            print(f"camera-pulse: pulse {i + 1}/{n}")
            time.sleep(gaps[i % len(gaps)])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--console", required=True)
    ap.add_argument("--monitor", required=True)
    ap.add_argument("--pulses", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--eject-pulses", type=int, default=0)
    ap.add_argument("--eject-out")
    ap.add_argument("--timeout-s", type=float, default=600)
    a = ap.parse_args()
    deadline = time.monotonic() + a.timeout_s
    # The trigger step's "armed" line: camera streaming and line 3 requested.
    if not wait_for(a.console, "board: == trigger:", "armed", "board: == trigger exited", deadline):
        print("camera-pulse: the trigger run never armed", file=sys.stderr)
        return 1
    time.sleep(1.0)
    mon = socket.socket(socket.AF_UNIX)
    mon.connect(a.monitor)
    pulse(mon, a.pulses, GAPS_S, a.out)
    if a.eject_pulses:
        # `linesight pulse` has requested line 3 and waits for parts.
        if not wait_for(a.console, "board: == pulse:", "waiting for", "board: == pulse exited", deadline):
            print("camera-pulse: linesight pulse never waited for parts", file=sys.stderr)
            return 1
        time.sleep(0.5)
        pulse(mon, a.eject_pulses, [1.0], a.eject_out)
    mon.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
