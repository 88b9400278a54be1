#!/usr/bin/env python3
"""Checks QEMU's pl061_set_output trace against linesight's results.jsonl.

The reject line must go high exactly once per reject window (a rejected part's
capture + delay_ms, for pulse_ms; windows that overlap merge into one pulse, as
linesight's scheduler does), each pulse as wide as its window, and the pulses
spaced as the rejected parts' captures are. No other PL061 line may go high.
With `active_low = true` in the config the reject line is driven high (pass) once
linesight has it, each pulse is low, and after the run it must be left low
(de-energised, as a stopped board would leave it).

Guest times (CLOCK_MONOTONIC in the VM) and trace times (the host's wall clock,
from `-msg timestamp=on`) run at the same rate under TCG but from different
origins: the offset is taken as the median of (rising edge - window start), and
every edge is then checked against its window. As a guard against pulses matched
to the wrong parts, the offset is also checked against the guest's wall clock
(results' unix_ms, which the VM takes from the PL031 RTC at boot: good to about 1 s).

    check.py --config linesight.toml --results results.jsonl --trace trace.log
             [--parts N] [--expect-line L] [--expect-pulse-ms MS]
             [--width-tolerance-ms 10] [--early-ms 5] [--late-ms 250]

Python 3.11+ standard library only. Exit 0 = pass, 1 = fail (every problem listed).
"""

import argparse
import json
import re
import statistics
import sys
import tomllib

MS = 1_000_000
TRACE = re.compile(
    r"^\d+@(?P<s>\d+)\.(?P<us>\d{6}):pl061_set_output (?P<dev>\S+) setting output (?P<line>\d+) to (?P<level>\d)\s*$"
)
UNTIMED = re.compile(r"pl061_set_output .*setting output \d+ to \d")


def merge(windows):
    """Union of [start, end) windows, merging those that overlap or touch."""
    out = []
    for s, e in sorted(windows):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [tuple(w) for w in out]


def read_trace(path):
    """Per (device, line): list of (t_ns host wall clock, level)."""
    events = {}
    untimed = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            m = TRACE.match(raw)
            if not m:
                untimed += bool(UNTIMED.search(raw))
                continue
            t = int(m["s"]) * 1_000_000_000 + int(m["us"]) * 1000
            events.setdefault((m["dev"], int(m["line"])), []).append((t, int(m["level"])))
    return events, untimed


def pulses_of(events, active_low=False):
    """Asserted intervals from a line's level changes; the line starts low (PL061 reset).
    Active low: what comes before linesight first drives the line high is ignored, levels
    are inverted, and the line must end low, the exit level (not a pulse).
    Returns (pulses, problems)."""
    problems = []
    if active_low:
        first_high = next((i for i, (_, lv) in enumerate(events) if lv == 1), None)
        if first_high is None:
            return [], ["never driven high (active low: high is the pass level linesight holds)"]
        events = [(t, 1 - lv) for t, lv in events[first_high:]]
        if events[-1][1] != 1:
            problems.append("left high after the run: an active-low output must end low (de-energised)")
        else:
            events = events[:-1]  # the exit level, not a pulse
    level, rise, out = 0, None, []
    for t, lv in events:
        if lv == level:
            continue  # the reset's "to 0" on a line that is already low
        if lv == 1:
            rise = t
        else:
            out.append((rise, t))
        level = lv
    if level == 1:
        problems.append(f"the line was still high at the end of the trace (rose at {rise / 1e9:.6f})")
    return out, problems


def fmt_ms(ns):
    return f"{ns / MS:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="the config the board was meant to run")
    ap.add_argument("--results", required=True)
    ap.add_argument("--trace", required=True)
    ap.add_argument("--parts", type=int, help="parts the run was asked for")
    ap.add_argument("--expect-line", type=int, help="reject line (default: the config's reject.output.line)")
    ap.add_argument("--expect-pulse-ms", type=float, help="pulse width (default: the config's reject.pulse_ms)")
    ap.add_argument("--width-tolerance-ms", type=float, default=10.0,
                    help="allowed error of the median pulse width")
    ap.add_argument("--early-ms", type=float, default=5.0, help="how early an edge may come against its window")
    ap.add_argument("--late-ms", type=float, default=250.0,
                    help="how late an edge may come: under TCG on a busy host a vCPU can wait (136 ms seen)")
    ap.add_argument("--clock-tolerance-ms", type=float, default=1500.0,
                    help="allowed gap between the guest's and the host's wall clocks")
    a = ap.parse_args()

    with open(a.config, "rb") as f:
        cfg = tomllib.load(f)
    delay_ns = int(cfg["reject"]["delay_ms"] * MS)
    pulse_ms = cfg["reject"].get("pulse_ms", 50)
    line = a.expect_line if a.expect_line is not None else cfg["reject"]["output"]["line"]
    active_low = cfg["reject"]["output"].get("active_low", False)
    want_pulse_ms = a.expect_pulse_ms if a.expect_pulse_ms is not None else pulse_ms
    say = lambda s: print(f"qemu-virt: {s}")  # noqa: E731
    problems = []

    # --- results ---------------------------------------------------------------
    results = []
    with open(a.results, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            if raw.strip():
                try:
                    results.append(json.loads(raw))
                except json.JSONDecodeError as e:
                    problems.append(f"{a.results}:{n}: not JSON ({e})")
    ids = [r.get("id") for r in results]
    if ids != list(range(len(results))):
        problems.append(f"results: parts are not numbered 0..{len(results) - 1} in order")
    if a.parts is not None and len(results) != a.parts:
        problems.append(f"results: {len(results)} parts, expected {a.parts}")
    rejected = [r for r in results if r.get("verdict") == "reject"]
    reasons = {}
    for r in results:
        reasons[r.get("reason")] = reasons.get(r.get("reason"), 0) + 1
    windows = [(r["capture_ns"] + delay_ns, r["capture_ns"] + delay_ns + int(want_pulse_ms * MS)) for r in rejected]
    want = merge(windows)
    say(
        f"results: {len(results)} parts, {len(rejected)} rejected, {len(results) - len(rejected)} passed ("
        + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))
        + ")"
    )
    inferred = [r["latency"]["inference_ms"] for r in results if (r.get("latency") or {}).get("inference_ms")]
    if inferred:
        say(
            f"results: {len(inferred)} parts inferred in the VM, inference p50 {statistics.median(inferred):.0f} ms, "
            f"max {max(inferred):.0f} ms"
        )
    if len(want) < len(windows):
        say(f"results: {len(windows)} reject windows merge into {len(want)} pulses (they overlap)")

    # --- trace -----------------------------------------------------------------
    events, untimed = read_trace(a.trace)
    if untimed and not events:
        problems.append(f"{a.trace}: pl061_set_output events carry no timestamps (run QEMU with -msg timestamp=on)")
    devices = sorted({dev for dev, _ in events})
    if len(devices) > 1:
        problems.append(f"trace: {len(devices)} PL061 devices changed outputs ({', '.join(devices)}); expected one")
    per_line = {}
    for (dev, ln), evs in sorted(events.items()):
        ps, probs = pulses_of(evs, active_low and ln == line)
        per_line[ln] = ps
        problems += [f"PL061 line {ln}: {p}" for p in probs]
    got = per_line.get(line, [])
    others = {ln: len(ps) for ln, ps in per_line.items() if ln != line and ps}
    say(
        f"trace: PL061 line {line}: {len(got)} pulses; other lines: "
        + (", ".join(f"line {ln} {n} pulses" for ln, n in others.items()) if others else "no pulses")
    )
    for ln, n in others.items():
        problems.append(
            f"PL061 line {ln} went high {n} time(s): only the reject line {line} may move"
            + (" (is reject.output.line right?)" if n == len(want) else "")
        )
    if len(got) != len(want):
        problems.append(
            f"pulse count: {len(got)} pulses on PL061 line {line}, but {len(want)} expected "
            f"for {len(rejected)} rejected parts in results"
        )

    # --- timing ----------------------------------------------------------------
    # Edges are never early: linesight's scheduler only fires late. The usual trace
    # latency (under 0.1 ms) goes into the offset; what remains is lateness, mostly
    # none, at times tens of ms when the host keeps a vCPU waiting.
    widths, spacing_err, lateness, offset = [], [], [], None
    early, late = a.early_ms * MS, a.late_ms * MS
    if got and len(got) == len(want):
        offset = int(statistics.median(g[0] - w[0] for g, w in zip(got, want)))
        for i, (g, w) in enumerate(zip(got, want)):
            rise, fall = g[0] - offset - w[0], g[1] - offset - w[1]
            lateness += [rise, fall]
            widths.append(g[1] - g[0])
            off = [
                f"{name} {fmt_ms(abs(e))} ms {'late' if e > 0 else 'early'}"
                for name, e in (("rises", rise), ("falls", fall))
                if e < -early or e > late
            ]
            if off:
                problems.append(
                    f"pulse {i + 1}: {' and '.join(off)} against its part's window "
                    f"(allowed: {a.early_ms:g} ms early to {a.late_ms:g} ms late)"
                )
            if i > 0:
                spacing_err.append(abs((g[0] - got[i - 1][0]) - (w[0] - want[i - 1][0])))
        med, want_med = statistics.median(widths), statistics.median(w[1] - w[0] for w in want)
        if abs(med - want_med) > a.width_tolerance_ms * MS:
            problems.append(
                f"pulse width: {fmt_ms(med)} ms (median of {len(widths)} pulses, from {fmt_ms(min(widths))} "
                f"to {fmt_ms(max(widths))} ms), expected {fmt_ms(want_med)} ms "
                f"(reject.pulse_ms {want_pulse_ms:g}, tolerance {a.width_tolerance_ms:g} ms)"
            )
        # Absolute guard: the guest's wall clock at capture + delay vs the trace.
        firsts = [r for r in rejected if r.get("unix_ms") and (r.get("latency") or {}).get("total_ms") is not None]
        if firsts:
            gaps = []
            for r in firsts:
                capture_unix_ns = int((r["unix_ms"] - r["latency"]["total_ms"]) * MS)
                gaps.append(offset - (capture_unix_ns - r["capture_ns"]))
            gap = statistics.median(gaps)
            say(f"clocks: trace vs guest wall clock {fmt_ms(gap)} ms apart (the VM's RTC is read in whole seconds)")
            if abs(gap) > a.clock_tolerance_ms * MS:
                problems.append(
                    f"the pulses are {fmt_ms(gap)} ms away from where the guest's clock puts the rejected parts' "
                    f"windows (tolerance {a.clock_tolerance_ms:g} ms): pulses matched to the wrong parts?"
                )

    if problems:
        print(f"qemu-virt: FAIL — {len(problems)} problem(s):")
        shown = {}
        for p in problems:
            kind = re.sub(r"[\d.]+", "#", p)  # the same message with other numbers
            shown[kind] = shown.get(kind, 0) + 1
            if shown[kind] <= 3:
                print(f"  - {p}")
        for kind, n in shown.items():
            if n > 3:
                print(f"  - ... and {n - 3} more like the above")
        return 1
    if not want:
        say("FAIL — no part was rejected, so the run proves nothing about the reject output")
        return 1
    w_mean = statistics.mean(widths) / MS
    w_sd = statistics.pstdev(widths) / MS
    sp = max(spacing_err) / MS if spacing_err else 0.0
    lat = sorted(max(0, e) for e in lateness)
    slow = sum(e > 25 * MS for e in lat)
    print(
        f"qemu-virt: PASS — {len(got)} pulses on PL061 line {line}, {len(rejected)} rejected parts in "
        f"results.jsonl ({len(results)} parts), widths {w_mean:.1f}±{w_sd:.1f} ms (want {want_pulse_ms:g}), "
        f"spacing error max {sp:.1f} ms, edges late median {lat[len(lat) // 2] / MS:.1f} ms, max {lat[-1] / MS:.1f} ms"
        + (f" ({slow} of {len(lat)} edges over 25 ms late)" if slow else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
