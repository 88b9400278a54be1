#!/usr/bin/env python3
"""Checks a camera-test.sh run (its folder: out/ from the VM, pulses.jsonl, trace.log).

- check:   the V4L2 device (vivid) and its formats were listed; the trigger line found.
- collect: 8 frames of 320x180 saved, kernel buffer times 100 ms apart (10 fps).
- trigger: one part per power-button pulse the host sent, numbered in order; the
           parts' kernel edge times spaced as the host sent the pulses; every part
           has a frame captured inside its window; the first part was inspected.
- pulse:   after each of 3 more button pulses, a 100 ms reject pulse on line 5 about
           reject.delay_ms (300 ms) later, in QEMU's trace.
- loop:    frames captured through vivid's video loop equal, pixel for pixel, the part
           image written to its output; the good part passes, the defective one is
           rejected on its score.
- loss:    parts while vivid was unbound are camera_lost rejects, in one run; frames
           come back after it is bound again; the fault output (PL061 line 6) went
           high once and low again in QEMU's trace; the summary counts the loss.

Exit 0 = pass, 1 = fail (every problem listed). Python 3.11+ standard library only.
"""

import argparse
import importlib.util
import json
import os
import re
import statistics
import struct
import sys

MS = 1_000_000
TRACE = re.compile(r"^\d+@(?P<s>\d+)\.(?P<us>\d{6}):pl061_set_output \S+ setting output (?P<line>\d+) to (?P<level>\d)")


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--gap-tolerance-ms", type=float, default=60.0,
                    help="allowed difference between a gap of the host's pulses and the gap of the guest's edge times")
    ap.add_argument("--claim-pulses", type=int,
                    help="check against this many pulses sent instead of pulses.jsonl's count (to show the check can fail)")
    ap.add_argument("--swap-loop-parts", action="store_true",
                    help="expect the good part rejected and the defective one passed (to show the check can fail)")
    a = ap.parse_args()
    d, out = a.dir, os.path.join(a.dir, "out")
    problems = []
    say = lambda s: print(f"qemu-virt: {s}")  # noqa: E731

    def rc(name):
        try:
            return open(os.path.join(out, f"{name}.rc")).read().strip()
        except FileNotFoundError:
            return "missing"

    def log(name):
        try:
            return open(os.path.join(out, f"{name}.log"), encoding="utf-8", errors="replace").read()
        except FileNotFoundError:
            return ""

    # --- check -----------------------------------------------------------------
    text = log("check")
    if rc("check") != "0":
        problems.append(f"linesight check exited {rc('check')}:\n{text}")
    for want in ["camera device: driver vivid", "YUYV [320x180", "GREY [320x180", "control gain",
                 "camera: v4l2 /dev/video0", "9030000.pl061, 8 lines) line 3"]:
        if want not in text:
            problems.append(f"check output lacks {want!r}")
    m = re.search(r"camera device: (.*)", text)
    if m:
        say(f"check: {m.group(1)[:300]}")

    # --- collect ---------------------------------------------------------------
    if "gain 100" not in log("collect"):
        problems.append("collect: the camera's gain was not set to 100 (camera.gain)")
    if rc("collect") != "0":
        problems.append(f"linesight collect exited {rc('collect')}:\n{log('collect')}")
    frames = jsonl(os.path.join(out, "collect/frames.jsonl")) if os.path.exists(os.path.join(out, "collect/frames.jsonl")) else []
    if len(frames) != 8:
        problems.append(f"collect: {len(frames)} frames listed, expected 8")
    for f in frames:
        size = png_size(os.path.join(out, "collect", f["file"]))
        if size != (320, 180) or (f["width"], f["height"]) != (320, 180):
            problems.append(f"collect: {f['file']} is {size}, expected 320x180")
    if len(frames) >= 3:
        gaps = [(b["capture_ns"] - a_["capture_ns"]) / MS for a_, b in zip(frames, frames[1:])]
        med = statistics.median(gaps)
        say(f"collect: {len(frames)} frames 320x180, kernel buffer time gaps {', '.join(f'{g:.1f}' for g in gaps)} ms")
        if not 95 <= med <= 105:
            problems.append(f"collect: frames {med:.1f} ms apart, expected 100 ms (10 fps kernel timestamps)")

    # --- trigger ---------------------------------------------------------------
    sent = jsonl(os.path.join(d, "pulses.jsonl")) if os.path.exists(os.path.join(d, "pulses.jsonl")) else []
    parts = jsonl(os.path.join(out, "trigger.jsonl")) if os.path.exists(os.path.join(out, "trigger.jsonl")) else []
    if rc("trigger") != "0":
        problems.append(f"trigger run exited {rc('trigger')}:\n{log('trigger')[-3000:]}")
    if not sent:
        problems.append("no pulses were sent")
    n_sent = a.claim_pulses if a.claim_pulses is not None else len(sent)
    if len(parts) != n_sent:
        problems.append(f"trigger: {len(parts)} parts for {n_sent} pulses sent")
    if [p["id"] for p in parts] != list(range(len(parts))):
        problems.append("trigger: parts not numbered in order")
    worst = 0.0
    for i in range(1, min(len(parts), len(sent))):
        host = (sent[i]["host_ns"] - sent[i - 1]["host_ns"]) / MS
        guest = (parts[i]["capture_ns"] - parts[i - 1]["capture_ns"]) / MS
        worst = max(worst, abs(host - guest))
        if abs(host - guest) > a.gap_tolerance_ms:
            problems.append(f"trigger: gap before part {i}: host sent {host:.1f} ms, guest edges {guest:.1f} ms apart")
    for p in parts:
        fn = p.get("frame_ns")
        if fn is None:
            problems.append(f"trigger: part {p['id']} has no frame ({p.get('reason')}: {p.get('detail')})")
        elif not 0 <= fn - p["capture_ns"] <= 400 * MS:
            problems.append(f"trigger: part {p['id']}'s frame is {(fn - p['capture_ns']) / MS:.1f} ms after its edge, outside 0..400 ms")
    if parts and parts[0].get("score") is None:
        problems.append(f"trigger: part 0 was not inspected: {parts[0]}")
    if parts:
        lat = [(p["frame_ns"] - p["capture_ns"]) / MS for p in parts if p.get("frame_ns")]
        say(f"trigger: {len(parts)} parts for {len(sent)} pulses; edge gaps match the host's within {worst:.1f} ms; "
            f"frames {min(lat, default=0):.0f}..{max(lat, default=0):.0f} ms after their edges; "
            f"reasons {sorted({p['reason'] for p in parts})}; part 0 score {parts[0].get('score')}")

    # --- pulse: the ejector check ---------------------------------------------------
    # Reject line 5 in QEMU's trace (host wall clock) against the host's button pulses.
    eject = jsonl(os.path.join(d, "eject-pulses.jsonl")) if os.path.exists(os.path.join(d, "eject-pulses.jsonl")) else []
    line5 = []
    with open(os.path.join(d, "trace.log"), encoding="utf-8", errors="replace") as f:
        for raw in f:
            t = TRACE.match(raw)
            if t and t["line"] == "5":
                line5.append((int(t["s"]) * 10**9 + int(t["us"]) * 1000, int(t["level"])))
    rises = [t for (t, lv), (_, prev) in zip(line5[1:], line5) if lv == 1 and prev == 0]
    falls = {t0: next((t for t, lv in line5 if lv == 0 and t > t0), None) for t0 in rises}
    if rc("pulse") != "0" or "3 pulse(s) of 100 ms fired" not in log("pulse"):
        problems.append(f"pulse: exited {rc('pulse')}:\n{log('pulse')}")
    if len(eject) != 3:
        problems.append(f"pulse: {len(eject)} button pulses sent for the ejector check, expected 3")
    delays = []
    for p in eject:
        # The reject pulse that follows the button by about reject.delay_ms (300 ms).
        near = [t for t in rises if 200 * MS <= t - p["wall_ns"] <= 500 * MS]
        if len(near) != 1:
            problems.append(f"pulse: {len(near)} reject pulses 200..500 ms after button pulse {p['pulse']}")
            continue
        width = (falls[near[0]] - near[0]) / MS if falls[near[0]] else None
        delays.append((near[0] - p["wall_ns"]) / MS)
        if width is None or abs(width - 100) > 10:
            problems.append(f"pulse: reject pulse after button pulse {p['pulse']} is {width} ms wide, expected 100")
    if len(delays) >= 2:
        # Host → guest latency varies little; the spread of button → reject shows the timing.
        spread = max(delays) - min(delays)
        say(f"pulse: button → reject pulse {', '.join(f'{x:.1f}' for x in delays)} ms (delay_ms 300 plus host→guest latency), spread {spread:.1f} ms")
        if spread > 50:
            problems.append(f"pulse: button → reject delays spread {spread:.1f} ms")

    # --- video loop ------------------------------------------------------------
    spec = importlib.util.spec_from_file_location("loop_frames", os.path.join(os.path.dirname(__file__), "camera", "loop-frames.py"))
    lf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lf)
    sent_good = lf.read_gray_png(os.path.join(d, "loop", "good-part.png"))
    looped = jsonl(os.path.join(out, "loop-collect/frames.jsonl")) if os.path.exists(os.path.join(out, "loop-collect/frames.jsonl")) else []
    if rc("loop-collect") != "0" or len(looped) != 3:
        problems.append(f"loop: collect exited {rc('loop-collect')} with {len(looped)} frames:\n{log('loop-collect')}")
    same = 0
    for f in looped:
        got = lf.read_gray_png(os.path.join(out, "loop-collect", f["file"]))
        if got == sent_good:
            same += 1
        else:
            diff = sum(a != b for ra, rb in zip(got[2], sent_good[2]) for a, b in zip(ra, rb)) if got[:2] == sent_good[:2] else -1
            problems.append(f"loop: {f['file']} ({got[0]}x{got[1]}) differs from the part written to the output ({diff} pixels)")
    verdicts = {}
    wants = [("loop-good", "below_threshold"), ("loop-defect", "above_threshold")]
    if a.swap_loop_parts:
        wants = [("loop-good", "above_threshold"), ("loop-defect", "below_threshold")]
    for name, want in wants:
        res = jsonl(os.path.join(out, f"{name}.jsonl")) if os.path.exists(os.path.join(out, f"{name}.jsonl")) else []
        if rc(name) != "0" or len(res) != 1:
            problems.append(f"{name}: exited {rc(name)} with {len(res)} parts:\n{log(name)[-2000:]}")
            continue
        verdicts[name] = (res[0]["score"], res[0]["reason"])
        if res[0]["reason"] != want:
            problems.append(f"{name}: the part's verdict is {res[0]['reason']} (score {res[0]['score']}), expected {want}")
    if looped:
        say(f"loop: {same} of {len(looped)} frames captured through vivid's loop equal the 1280x720 part written; "
            + ", ".join(f"{k}: score {v[0]} ({v[1]})" for k, v in verdicts.items()))

    # --- loss ------------------------------------------------------------------
    text = log("loss")
    res = jsonl(os.path.join(out, "loss.jsonl")) if os.path.exists(os.path.join(out, "loss.jsonl")) else []
    if rc("loss") != "0":
        problems.append(f"loss run exited {rc('loss')}:\n{text[-3000:]}")
    lost = [r for r in res if r["reason"] == "camera_lost"]
    if not lost:
        problems.append(f"loss: no camera_lost parts in {len(res)}")
    else:
        first, last = lost[0]["id"], lost[-1]["id"]
        if last - first + 1 != len(lost):
            problems.append("loss: camera_lost parts are not one run")
        if any(r["verdict"] != "reject" for r in lost):
            problems.append("loss: a camera_lost part was not rejected")
        after = [r for r in res if r["id"] > last]
        if len(after) < 10:
            problems.append(f"loss: only {len(after)} parts after the camera came back")
        before = [r for r in res if r["id"] < first]
        if len(before) < 10:
            problems.append(f"loss: only {len(before)} parts before the camera was lost")
    if "camera lost 1 time(s), recovered 1;" not in text:
        problems.append("loss: the summary does not count one loss and one recovery")
    m = re.search(r"camera recovered after ([0-9.]+) s", text)
    # The fault line (6) in QEMU's trace: low (reset), then high once, then low.
    levels = []
    with open(os.path.join(d, "trace.log"), encoding="utf-8", errors="replace") as f:
        for raw in f:
            t = TRACE.match(raw)
            if t and t["line"] == "6":
                lv = int(t["level"])
                if not levels or levels[-1][1] != lv:
                    levels.append((int(t["s"]) * 10**9 + int(t["us"]) * 1000, lv))
    if [lv for _, lv in levels if lv == 1] != [1] or not levels or levels[-1][1] != 0:
        problems.append(f"loss: fault line 6 levels in the trace {[lv for _, lv in levels]}, expected one high pulse")
    else:
        rise = next(t for t, lv in levels if lv == 1)
        fall = next(t for t, lv in levels if lv == 0 and t > rise)
        say(f"loss: {len(lost)} camera_lost parts (ids {lost[0]['id']}..{lost[-1]['id']}) of {len(res)}; "
            f"fault line 6 high {(fall - rise) / MS:.0f} ms; recovered after {m.group(1) if m else '?'} s")

    if problems:
        for p in problems:
            print(f"qemu-virt: FAIL — {p}")
        return 1
    say("PASS: V4L2 capture from vivid, power-button trigger, ejector timing (pulse), video loop verdicts, camera loss and recovery")
    return 0


if __name__ == "__main__":
    sys.exit(main())
