#!/usr/bin/env bash
# The camera and trigger test on the virtual board: qemu-system-aarch64 -M virt with
# Debian's arm64 kernel and the vivid V4L2 test driver. In the VM (camera/init):
#   1. linesight check        the V4L2 device's formats and sizes, the trigger line
#   2. linesight collect      8 frames through the v4l2 source (GREY, mmap streaming)
#   3. linesight run          parts from PL061 line 3, which is wired to QEMU's power
#                             button: the host pulses it N times with system_powerdown
#                             on the QEMU monitor; frames (YUYV) are matched to the edges
#   4. linesight pulse        3 more button pulses; a reject pulse on line 5 must
#                             follow each by reject.delay_ms (300 ms), 100 ms wide
#   5. linesight collect/run  vivid's video loop: a good and a defective part written
#                             to its HDMI output come back on its HDMI capture, through
#                             the v4l2 source, and are inspected (one part per run)
#   6. linesight run          free run while vivid is unbound and bound again: the
#                             camera vanishes and comes back; fault output on line 6
# The host then checks (camera-check.py): parts = pulses sent, their kernel edge times
# spaced as the host sent them, a frame in every part's window, kernel buffer times at
# the camera's rate, the looped frames equal to the part images written and their
# verdicts right, camera_lost rejects while vivid was gone, the fault line high
# exactly once in QEMU's pl061_set_output trace, and recovery without a restart.
#
#   board/qemu-virt/camera-test.sh [--pulses N] [--recheck [--claim-pulses N] [--swap-loop-parts]]
#
#   --recheck            no boot: check the last run (.cache/camera-last) again
#   --claim-pulses N     check as if N pulses had been sent: with a wrong N it must FAIL
#   --swap-loop-parts    expect the looped good part rejected and the defect passed:
#                        it must FAIL
#
# Needs the aarch64 build first (cargo zigbuild --release --target
# aarch64-unknown-linux-gnu.2.31); builds examples/v4l2_feed the same way. The
# kernel and libraries are cached in .cache/camera-root; the last run's files stay
# in .cache/camera-last.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=$here/.cache
# shellcheck source=lib.sh
. "$here/lib.sh"

pulses=8
recheck=0
claims=()
while [ $# -gt 0 ]; do
    case "$1" in
        --pulses) pulses=$2; shift 2 ;;
        --recheck) recheck=1; shift ;;
        --claim-pulses) claims+=(--claim-pulses "$2"); shift 2 ;;
        --swap-loop-parts) claims+=(--swap-loop-parts); shift ;;
        -h|--help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "qemu-virt: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
t0=$(date +%s.%N)
last=$cache/camera-last
check() { python3 "$here/camera-check.py" --dir "$1" ${claims[@]+"${claims[@]}"}; }
if [ "$recheck" = 1 ]; then
    check "$last"
    exit
fi

board_host_tools
# The output feeder for vivid's video loop, built like linesight (aarch64, glibc 2.31).
say "building examples/v4l2_feed for aarch64"
(cd "$repo" && cargo zigbuild -q --release --target aarch64-unknown-linux-gnu.2.31 --example v4l2_feed) \
    || die "cannot build examples/v4l2_feed (cargo zigbuild, as for linesight)"
board_fetch camera-root drivers/virtio drivers/media drivers/block/virtio_blk.ko
board_kernel camera-root
say "kernel $kver (cached in ${cache#"$repo"/})"

run=$cache/camera-run.$$
rm -rf "$run" && mkdir -p "$run"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$run"' EXIT
ir=$run/initramfs
board_initramfs "$ir"
cp "$here/camera/init" "$ir/init" && chmod 755 "$ir/init"
mkdir -p "$ir/lib/modules/media" "$ir/opt/linesight/board/qemu-virt/camera"
for m in test-drivers/vivid/vivid mc/mc v4l2-core/videodev common/v4l2-tpg/v4l2-tpg \
    v4l2-core/v4l2-dv-timings common/videobuf2/videobuf2-common common/videobuf2/videobuf2-v4l2 \
    common/videobuf2/videobuf2-memops common/videobuf2/videobuf2-vmalloc \
    common/videobuf2/videobuf2-dma-contig cec/core/cec rc/rc-core; do
    cp "$modules/drivers/media/$m.ko" "$ir/lib/modules/media/"
done
cp "$here"/camera/*.toml "$ir/opt/linesight/board/qemu-virt/camera/"
# Frames for the video loop: a good and a defective synthetic part (made with
# `linesight synth --seed 5`), stretched to the HDMI output's 1280x720, as raw YUYV.
python3 "$here/camera/loop-frames.py" --width 1280 --height 720 --out "$run/loop" \
    "$here/camera/good-part.png" "$here/camera/defect-part.png" >/dev/null
mkdir -p "$ir/loop" && cp "$run"/loop/*.yuyv "$ir/loop/"
cp "$repo/target/aarch64-unknown-linux-gnu/release/examples/v4l2_feed" "$ir/opt/linesight/"
board_cpio "$ir" "$run/initramfs.cpio"
rm -rf "$ir"
say "initramfs $(du -m "$run/initramfs.cpio" | cut -f1) MiB: linesight $(git -C "$repo" describe --always --dirty 2>/dev/null || true) (aarch64), vivid and its media modules"

echo "$pulses" >"$run/pulses"
truncate -s 16M "$run/out.img"
say "booting qemu-system-aarch64 -M virt -cpu ${QEMU_CPU:-cortex-a76} -smp ${QEMU_SMP:-2}; $pulses power-button pulses"
boot_t0=$(date +%s.%N)
timeout 900 qemu-system-aarch64 -M virt -cpu "${QEMU_CPU:-cortex-a76}" -smp "${QEMU_SMP:-2}" -m 1024 \
    -nodefaults -no-reboot -display none -serial file:"$run/console.log" \
    -monitor unix:"$run/monitor.sock",server,nowait \
    -kernel "$kernel" -initrd "$run/initramfs.cpio" \
    -append "console=ttyAMA0 rdinit=/init quiet loglevel=3 panic=-1 linesight.pulses=$pulses" \
    -drive if=none,id=out,format=raw,file="$run/out.img" -device virtio-blk-device,drive=out \
    -trace enable=pl061_set_output -msg timestamp=on -D "$run/trace.log" \
    </dev/null 2>"$run/qemu.stderr" &
qemu=$!
tail -n +1 -F "$run/console.log" 2>/dev/null | sed -u 's/^/  vm| /' &

# The trigger run is armed (camera open, line 3 requested): pulse the button from here.
python3 "$here/camera-pulse.py" --console "$run/console.log" --monitor "$run/monitor.sock" \
    --pulses "$pulses" --out "$run/pulses.jsonl" --eject-pulses 3 --eject-out "$run/eject-pulses.jsonl" || { kill "$qemu" 2>/dev/null; die "could not pulse the power button"; }
set +e
wait "$qemu"
qrc=$?
set -e
sleep 0.5
boot_s=$(since "$boot_t0")
rm -rf "$last" && mv "$run" "$last"
trap - EXIT
kill $(jobs -p) 2>/dev/null || true
[ "$qrc" = 0 ] || { cat "$last/qemu.stderr"; die "qemu-system-aarch64 exited $qrc after $boot_s s"; }
say "the VM ran $boot_s s"
mkdir -p "$last/out"
tar -xf "$last/out.img" -C "$last/out" 2>/dev/null || die "no results archive on the second disk (see $last/console.log)"
set +e
check "$last"
rc=$?
set -e
say "whole camera test $(since "$t0") s (VM $boot_s s); files in ${last#"$repo"/}"
exit $rc
