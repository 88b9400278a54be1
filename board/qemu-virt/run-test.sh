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
#   board/qemu-virt/run-test.sh [--parts N] [--broken-line] [--expect-pulse-ms MS] [--recheck]
#
#   --parts N            parts to inspect (default 30: about 2 minutes under TCG)
#   --broken-line        boot with the reject output on line 6 while the checker
#                        expects line 5: the test must FAIL
#   --expect-pulse-ms MS check against this pulse width instead of the config's:
#                        with a wrong one the test must FAIL
#   --recheck            no boot: check the last run's trace and results again
#                        (with --expect-pulse-ms, shows the width check can fail)
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
expect=()
recheck=0
while [ $# -gt 0 ]; do
    case "$1" in
        --parts) parts=$2; shift 2 ;;
        --broken-line) broken_line=1; shift ;;
        --expect-pulse-ms) expect+=(--expect-pulse-ms "$2"); shift 2 ;;
        --recheck) recheck=1; shift ;;
        -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "qemu-virt: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "qemu-virt: $*"; }
die() { echo "qemu-virt: FAIL — $*"; exit 1; }
t0=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

case_name=last
[ "$broken_line" = 1 ] && case_name=last-broken-line
last=$cache/$case_name
check() {
    python3 "$here/check.py" --config "$here/linesight.toml" --results "$1/out/results.jsonl" \
        --trace "$1/trace.log" --parts "$(cat "$1/parts")" ${expect[@]+"${expect[@]}"}
}
if [ "$recheck" = 1 ]; then
    [ -e "$last/trace.log" ] || die "no earlier run in ${last#"$repo"/} to check again"
    say "checking the run in ${last#"$repo"/} again (no boot)"
    check "$last"
    exit
fi

# --- host tools --------------------------------------------------------------
qemu=${QEMU:-qemu-system-aarch64}
need=()
command -v "$qemu" >/dev/null || need+=(qemu-system-arm)
command -v cpio >/dev/null || need+=(cpio)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]} with apt-get"
    sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
"$qemu" -trace help 2>/dev/null | grep -qx pl061_set_output \
    || die "this $qemu ($("$qemu" --version | head -1)) has no pl061_set_output trace event"

# --- what goes into the VM ---------------------------------------------------
bin=$repo/target/aarch64-unknown-linux-gnu/release/linesight
[ -x "$bin" ] || die "no aarch64 linesight at $bin; build it first: cargo zigbuild --release --target aarch64-unknown-linux-gnu.2.31"
# build.rs fetched it from the onnxruntime wheel during the aarch64 build.
ort=$(ls -t "$repo"/target/aarch64-unknown-linux-gnu/release/build/linesight-*/out/onnxruntime-*-aarch64/libonnxruntime.so.* 2>/dev/null | head -1 || true)
[ -n "$ort" ] || die "no aarch64 ONNX Runtime library in target/aarch64-unknown-linux-gnu/release/build/linesight-*/out (build.rs fetches it during the aarch64 build)"

# --- the arm64 kernel, busybox and runtime libraries (cached) ----------------
# A private apt tree for arm64 (Debian 12 "bookworm") in the cache, so nothing on
# the host changes: apt-get update and apt-get download only.
fetch() {
    local apt=$cache/apt
    mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/etc/preferences.d" "$apt/etc/sources.list.d" "$cache/debs"
    cat >"$apt/etc/sources.list" <<SOURCES
deb [arch=arm64] http://deb.debian.org/debian bookworm main
deb [arch=arm64] http://deb.debian.org/debian bookworm-updates main
deb [arch=arm64] http://deb.debian.org/debian-security bookworm-security main
SOURCES
    : >"$apt/status"
    local o=(-qq -o APT::Architecture=arm64 -o APT::Architectures::=arm64
        -o Dir::State="$apt" -o Dir::State::Lists="$apt/lists" -o Dir::State::status="$apt/status"
        -o Dir::Cache="$apt" -o Dir::Etc::SourceList="$apt/etc/sources.list"
        -o Dir::Etc::SourceParts="$apt/etc/sources.list.d" -o Dir::Etc::Preferences=/dev/null
        -o Dir::Etc::PreferencesParts="$apt/etc/preferences.d" -o APT::Sandbox::User="$(id -un)")
    say "fetching the Debian 12 arm64 package lists"
    apt-get "${o[@]}" update
    # The kernel that the linux-image-arm64 meta-package points at today.
    local kpkg
    kpkg=$(apt-cache "${o[@]}" depends linux-image-arm64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-arm64\)$/\1/p' | head -1)
    [ -n "$kpkg" ] || die "cannot find the kernel package behind linux-image-arm64"
    local pkgs=("$kpkg" busybox-static libc6-arm64-cross libstdc++6-arm64-cross libgcc-s1-arm64-cross)
    say "apt-get download ${pkgs[*]}"
    (cd "$cache/debs" && rm -f ./*.deb && apt-get "${o[@]}" download "${pkgs[@]}")
    local new=$cache/root.new
    rm -rf "$new" && mkdir -p "$new"
    for d in "$cache"/debs/*.deb; do dpkg-deb -x "$d" "$new"; done
    # Keep what the initramfs takes: the kernel, two modules, busybox, the libraries.
    local kv
    kv=$(ls "$new/lib/modules")
    mkdir -p "$new/keep/drivers/virtio" "$new/keep/drivers/block"
    mv "$new/lib/modules/$kv/kernel/drivers/virtio/virtio_mmio.ko" "$new/keep/drivers/virtio/"
    mv "$new/lib/modules/$kv/kernel/drivers/block/virtio_blk.ko" "$new/keep/drivers/block/"
    rm -rf "$new/lib/modules/$kv" "$new/usr/share" && mkdir -p "$new/lib/modules/$kv"
    mv "$new/keep" "$new/lib/modules/$kv/kernel"
    (cd "$cache/debs" && ls) >"$new/packages.txt"
    rm -rf "$cache/root" "$cache/debs" "$apt" && mv "$new" "$cache/root"
    touch "$cache/root/.complete"
}
if [ ! -e "$cache/root/.complete" ]; then
    fetch
    say "fetched and unpacked in $(since "$t0") s"
fi
root=$cache/root
kernel=$(ls "$root"/boot/vmlinuz-*-arm64 | head -1)
kver=${kernel##*/vmlinuz-}
modules=$root/lib/modules/$kver/kernel
say "from ${cache#"$repo"/}: $(sed 's/_.*//' "$root/packages.txt" | tr '\n' ' ')"

# --- the initramfs -----------------------------------------------------------
run=$cache/run.$$
rm -rf "$run" && mkdir -p "$run"
trap 'rm -rf "$run"' EXIT
ir=$run/initramfs
mkdir -p "$ir"/{bin,lib/modules,proc,sys,dev,tmp,out} "$ir"/opt/linesight/{board/qemu-virt,models/sim-flange}
cp "$root/bin/busybox" "$ir/bin/busybox"
cp "$here/init" "$ir/init" && chmod 755 "$ir/init"
xlib=$root/usr/aarch64-linux-gnu/lib
for l in ld-linux-aarch64.so.1 libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 libstdc++.so.6 libgcc_s.so.1; do
    cp -L "$xlib/$l" "$ir/lib/$l"
done
# The second disk (virtio-mmio + virtio-blk: modules in Debian's kernel) carries the results out.
for m in drivers/virtio/virtio_mmio.ko drivers/block/virtio_blk.ko; do
    cp "$modules/$m" "$ir/lib/modules/"
done
# The repository's layout under /opt/linesight, so the config's relative paths hold.
cp "$bin" "$ir/opt/linesight/linesight"
# "Beside the executable" is where linesight looks when neither the config nor
# ORT_DYLIB_PATH names a library (as the .deb and board images ship it).
cp "$ort" "$ir/opt/linesight/libonnxruntime.so"
cp "$repo"/models/sim-flange/model.{onnx,toml} "$ir/opt/linesight/models/sim-flange/"
config=board/qemu-virt/linesight.toml
cp "$here/linesight.toml" "$ir/opt/linesight/$config"
if [ "$broken_line" = 1 ]; then
    config=board/qemu-virt/linesight-broken-line.toml
    sed 's/^line = 5$/line = 6/' "$here/linesight.toml" >"$ir/opt/linesight/$config"
    grep -q '^line = 6$' "$ir/opt/linesight/$config" || die "could not write the broken-line config"
    say "BROKEN ON PURPOSE: the board's config drives line 6; the checker expects line 5"
fi
(cd "$ir" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet >"$run/initramfs.cpio")
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
[ "$(cat "$last/out/run.rc" 2>/dev/null)" = 0 ] || die "linesight run exited $(cat "$last/out/run.rc" 2>/dev/null || echo '?') in the VM"
set +e
check "$last"
rc=$?
set -e
say "whole test $(since "$t0") s (VM $boot_s s); files in ${last#"$repo"/}"
exit $rc
