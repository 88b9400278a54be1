#!/usr/bin/env bash
# The virtual-board test: boots qemu-system-aarch64 -M virt with Debian's arm64
# kernel and an initramfs holding the aarch64 linesight, the aarch64 ONNX Runtime,
# the sim-flange model and board/qemu-virt/linesight.toml; linesight inspects a
# synthetic line and drives its reject output on PL061 line 5 through the kernel's
# GPIO character device. The host records QEMU's pl061_set_output trace, takes the
# results back out of the VM (a tar archive on a second disk) and checks that the
# line went high exactly for the rejected parts, with the configured pulse width
# and spacing (check.py).
#
#   board/qemu-virt/run-test.sh [--parts N] [--broken-line] [--active-low] [--expect-pulse-ms MS] [--recheck]
#                               [--drop-exit-edge]
#
#   --parts N            parts to inspect (default 30: about 2 minutes under TCG)
#   --active-low         the fail-safe wiring's config (reject.output.active_low): the
#                        line is held high, pulses low, and must be left low after exit
#   --broken-line        boot with the reject output on line 6 while the checker
#                        expects line 5: the test must FAIL
#   --expect-pulse-ms MS check against this pulse width instead of the config's:
#                        with a wrong one the test must FAIL
#   --recheck            no boot: check the last run's trace and results again
#                        (with --expect-pulse-ms, shows the width check can fail)
#   --drop-exit-edge     with --recheck: check the trace without its last GPIO edge
#                        (with --active-low, the line then stays at the pass level
#                        after exit: shows the exit check can fail)
#
# Needs the aarch64 build first:
#   cargo zigbuild --release --target aarch64-unknown-linux-gnu.2.31
# Installs qemu-system-arm and cpio with apt-get if missing; fetches the kernel,
# busybox and the arm64 runtime libraries with apt-get download into
# board/qemu-virt/.cache (git-ignored), so reruns need no network. The last run's
# files stay in .cache/last (or .cache/last-broken-line): console.log, trace.log,
# out/results.jsonl, out/run.log, initramfs.cpio.
# QEMU_CPU (default cortex-a76, the Jetson Orin's core class) and QEMU_SMP
# (default 2) choose the virtual CPU; QEMU another qemu-system-aarch64.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=$here/.cache

parts=30
broken_line=0
active_low=0
expect=()
recheck=0
drop_exit=0
while [ $# -gt 0 ]; do
    case "$1" in
        --parts) parts=$2; shift 2 ;;
        --broken-line) broken_line=1; shift ;;
        --active-low) active_low=1; shift ;;
        --expect-pulse-ms) expect+=(--expect-pulse-ms "$2"); shift 2 ;;
        --recheck) recheck=1; shift ;;
        --drop-exit-edge) drop_exit=1; shift ;;
        -h|--help) sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "qemu-virt: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

# shellcheck source=lib.sh
. "$here/lib.sh"
t0=$(date +%s.%N)

[ "$drop_exit" = 1 ] && [ "$recheck" = 0 ] && die "--drop-exit-edge checks an earlier run: give --recheck too"
case_name=last
[ "$broken_line" = 1 ] && case_name=last-broken-line
[ "$active_low" = 1 ] && case_name=last-active-low
last=$cache/$case_name
check() {  # against the run's own config where it has one (check.toml), else the board's
    local cfg=$here/linesight.toml
    [ -e "$1/check.toml" ] && cfg=$1/check.toml
    python3 "$here/check.py" --config "$cfg" --results "$1/out/results.jsonl" \
        --trace "$1/trace.log" --parts "$(cat "$1/parts")" ${expect[@]+"${expect[@]}"}
}
if [ "$recheck" = 1 ]; then
    [ -e "$last/trace.log" ] || die "no earlier run in ${last#"$repo"/} to check again"
    say "checking the run in ${last#"$repo"/} again (no boot)"
    if [ "$drop_exit" = 1 ]; then
        tampered=$(mktemp -d)
        trap 'rm -rf "$tampered"' EXIT
        cp -r "$last"/. "$tampered"/
        n=$(grep -n 'pl061_set_output' "$last/trace.log" | tail -1 | cut -d: -f1)
        sed -i "${n}d" "$tampered/trace.log"
        say "without the trace's last edge (line $n): $(sed -n "${n}p" "$last/trace.log")"
        check "$tampered"
        exit
    fi
    check "$last"
    exit
fi

# --- host tools --------------------------------------------------------------
qemu=${QEMU:-qemu-system-aarch64}
board_host_tools "$qemu"
"$qemu" -trace help 2>/dev/null | grep -qx pl061_set_output \
    || die "this $qemu ($("$qemu" --version | head -1)) has no pl061_set_output trace event"

# --- the arm64 kernel, busybox and runtime libraries (cached) ----------------
# The second disk (virtio-mmio + virtio-blk: modules in Debian's kernel) carries the
# results out.
if [ ! -e "$cache/root/.complete-glibc-$BOARD_GLIBC" ]; then
    board_fetch root drivers/virtio/virtio_mmio.ko drivers/block/virtio_blk.ko
    say "fetched and unpacked in $(since "$t0") s"
fi
board_kernel root
say "from ${cache#"$repo"/}: $(sed 's/_.*//' "$root/packages.txt" | tr '\n' ' ')"

# --- the initramfs -----------------------------------------------------------
run=$cache/run.$$
rm -rf "$run" && mkdir -p "$run"
trap 'rm -rf "$run"' EXIT
ir=$run/initramfs
# The repository's layout under /opt/linesight, so the config's relative paths hold.
board_initramfs "$ir"
cp "$here/init" "$ir/init" && chmod 755 "$ir/init"
config=board/qemu-virt/linesight.toml
cp "$here/linesight.toml" "$ir/opt/linesight/$config"
if [ "$broken_line" = 1 ]; then
    config=board/qemu-virt/linesight-broken-line.toml
    sed 's/^line = 5$/line = 6/' "$here/linesight.toml" >"$ir/opt/linesight/$config"
    grep -q '^line = 6$' "$ir/opt/linesight/$config" || die "could not write the broken-line config"
    say "BROKEN ON PURPOSE: the board's config drives line 6; the checker expects line 5"
fi
if [ "$active_low" = 1 ]; then
    config=board/qemu-virt/linesight-active-low.toml
    sed 's/^line = 5$/line = 5\nactive_low = true/' "$here/linesight.toml" >"$run/check.toml"
    grep -q '^active_low = true$' "$run/check.toml" || die "could not write the active-low config"
    cp "$run/check.toml" "$ir/opt/linesight/$config"
    say "active low: the reject line is held high and pulses low, and must end low"
fi
board_cpio "$ir" "$run/initramfs.cpio"
rm -rf "$ir"
say "initramfs $(du -m "$run/initramfs.cpio" | cut -f1) MiB: linesight $(git -C "$repo" describe --always --dirty 2>/dev/null || true) (aarch64, glibc 2.31), ${ort##*/}, models/sim-flange, busybox"

# --- boot ----------------------------------------------------------------------
echo "$parts" >"$run/parts"
truncate -s 16M "$run/out.img"
say "booting qemu-system-aarch64 -M virt -cpu ${QEMU_CPU:-cortex-a76} -smp ${QEMU_SMP:-2} ($("$qemu" --version | head -1 | sed 's/.*version \([^ ]*\).*/QEMU \1/')): $parts parts"
boot_t0=$(date +%s.%N)
set +e
timeout 600 "$qemu" -M virt -cpu "${QEMU_CPU:-cortex-a76}" -smp "${QEMU_SMP:-2}" -m 1024 \
    -nodefaults -no-reboot -display none -serial stdio \
    -kernel "$kernel" -initrd "$run/initramfs.cpio" \
    -append "console=ttyAMA0 rdinit=/init quiet loglevel=3 panic=-1 linesight.config=$config linesight.parts=$parts" \
    -drive if=none,id=out,format=raw,file="$run/out.img" -device virtio-blk-device,drive=out \
    -trace enable=pl061_set_output -msg timestamp=on -D "$run/trace.log" \
    </dev/null 2>"$run/qemu.stderr" | tee "$run/console.log" | sed -u 's/^/  vm| /'
qrc=${PIPESTATUS[0]}
set -e
boot_s=$(since "$boot_t0")
rm -rf "$last" && mv "$run" "$last" && trap - EXIT
[ "$qrc" = 0 ] || { cat "$last/qemu.stderr"; die "qemu-system-aarch64 exited $qrc after $boot_s s"; }
say "the VM ran $boot_s s"

# --- the results come out; the check -------------------------------------------
mkdir -p "$last/out"
tar -xf "$last/out.img" -C "$last/out" 2>/dev/null || die "no results archive on the second disk (see the console above)"
grep -q "board: glibc: .*release version $BOARD_GLIBC\." "$last/console.log" \
    || die "the board did not run on glibc $BOARD_GLIBC: $(grep 'board: glibc' "$last/console.log")"
say "userland: $(sed -n 's/.*board: glibc: //p' "$last/console.log" | head -1)"
[ "$(cat "$last/out/run.rc" 2>/dev/null)" = 0 ] || die "linesight run exited $(cat "$last/out/run.rc" 2>/dev/null || echo '?') in the VM"
set +e
check "$last"
rc=$?
set -e
say "whole test $(since "$t0") s (VM $boot_s s); files in ${last#"$repo"/}"
exit $rc
