# Shared by the qemu-virt tests (sourced by run-test.sh and camera-test.sh): host
# tools, the cached arm64 kernel/busybox/libraries, and the base of an initramfs.
# Each test keeps its own cache (.cache/root, .cache/camera-root) pruned to the kernel
# modules it needs.
# Expects: here (this folder), repo (the repository root), cache ($here/.cache).

say() { echo "qemu-virt: $*"; }
die() { echo "qemu-virt: FAIL — $*"; exit 1; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# board_host_tools [QEMU]: qemu-system-aarch64 (or QEMU), cpio, python3 (apt-get
# install if missing).
board_host_tools() {
    local need=()
    command -v "${1:-qemu-system-aarch64}" >/dev/null || need+=(qemu-system-arm)
    command -v cpio >/dev/null || need+=(cpio)
    command -v python3 >/dev/null || need+=(python3)
    if [ ${#need[@]} -gt 0 ]; then
        say "installing ${need[*]} with apt-get"
        local sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
}

# apt_tree TREE SUITE...: a private apt tree for the arm64 packages of Debian's SUITEs
# under TREE (nothing on the host changes); sets o, apt-get's options for it, and
# fetches the lists.
apt_tree() {
    local tree=$1 suite; shift
    mkdir -p "$tree/lists/partial" "$tree/archives/partial" "$tree/etc/preferences.d" "$tree/etc/sources.list.d"
    for suite in "$@"; do
        case $suite in
            *-security) echo "deb [arch=arm64] http://deb.debian.org/debian-security $suite main" ;;
            *) echo "deb [arch=arm64] http://deb.debian.org/debian $suite main" ;;
        esac
    done >"$tree/etc/sources.list"
    : >"$tree/status"
    o=(-qq -o APT::Architecture=arm64 -o APT::Architectures::=arm64
        -o Dir::State="$tree" -o Dir::State::Lists="$tree/lists" -o Dir::State::status="$tree/status"
        -o Dir::Cache="$tree" -o Dir::Etc::SourceList="$tree/etc/sources.list"
        -o Dir::Etc::SourceParts="$tree/etc/sources.list.d" -o Dir::Etc::Preferences=/dev/null
        -o Dir::Etc::PreferencesParts="$tree/etc/preferences.d" -o APT::Sandbox::User="$(id -un)")
    say "fetching the arm64 package lists of Debian $*"
    apt-get "${o[@]}" update
}

# The board's userland is JetPack 5's glibc: Debian 11's arm64 libc6 (glibc 2.31),
# libstdc++6 and libgcc-s1, so that linesight and ONNX Runtime run on the glibc the
# binary is built for. The kernel and busybox are Debian 12's (any kernel will do).
# Debian 11's own suite only: its point release is fixed, and its security updates
# have left the mirror's pool.
BOARD_LIBC_SUITE=bullseye
BOARD_GLIBC=2.31

# board_fetch NAME MODULE...: the Debian 12 arm64 kernel and busybox-static and the
# Debian 11 arm64 runtime libraries into $cache/NAME (once), with apt-get download into
# private apt trees. Of the kernel's modules only the MODULEs (files or folders under
# kernel/, e.g. drivers/block/virtio_blk.ko) are kept.
board_fetch() {
    local name=$1; shift
    [ -e "$cache/$name/.complete-glibc-$BOARD_GLIBC" ] && return
    local apt=$cache/$name-apt debs=$cache/$name-debs o=()
    rm -rf "$apt" && mkdir -p "$debs" && (cd "$debs" && rm -f ./*.deb)
    apt_tree "$apt/bookworm" bookworm bookworm-updates bookworm-security
    local kpkg
    kpkg=$(apt-cache "${o[@]}" depends linux-image-arm64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-arm64\)$/\1/p' | head -1)
    [ -n "$kpkg" ] || die "cannot find the kernel package behind linux-image-arm64"
    say "apt-get download $kpkg busybox-static (bookworm)"
    (cd "$debs" && apt-get "${o[@]}" download "$kpkg" busybox-static)
    apt_tree "$apt/$BOARD_LIBC_SUITE" "$BOARD_LIBC_SUITE"
    say "apt-get download libc6 libstdc++6 libgcc-s1 ($BOARD_LIBC_SUITE)"
    (cd "$debs" && apt-get "${o[@]}" download libc6 libstdc++6 libgcc-s1)
    local new=$cache/$name.new kv m
    rm -rf "$new" && mkdir -p "$new"
    for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$new"; done
    # Keep what an initramfs takes: the kernel, the named modules, busybox, the libraries.
    kv=$(ls "$new/lib/modules")
    for m in "$@"; do
        mkdir -p "$new/keep/$(dirname "$m")"
        mv "$new/lib/modules/$kv/kernel/$m" "$new/keep/$m"
    done
    rm -rf "$new/lib/modules/$kv" "$new/usr/share" && mkdir -p "$new/lib/modules/$kv"
    mv "$new/keep" "$new/lib/modules/$kv/kernel"
    (cd "$debs" && ls) >"$new/packages.txt"
    rm -rf "$cache/$name" "$debs" "$apt" && mv "$new" "$cache/$name"
    touch "$cache/$name/.complete-glibc-$BOARD_GLIBC"
}

# board_lib FILE: the real file behind /lib/FILE (or /lib/aarch64-linux-gnu/FILE, or
# /usr/lib/aarch64-linux-gnu/FILE) in $root, its symlinks followed inside $root.
board_lib() {
    local p d t
    for d in lib/aarch64-linux-gnu usr/lib/aarch64-linux-gnu lib; do
        p=$root/$d/$1
        [ -e "$p" ] || [ -L "$p" ] || continue
        while [ -L "$p" ]; do
            t=$(readlink "$p")
            case $t in /*) p=$root$t ;; *) p=$(dirname "$p")/$t ;; esac
        done
        [ -f "$p" ] && { echo "$p"; return; }
    done
    die "no $1 in ${root#"$repo"/} (Debian $BOARD_LIBC_SUITE's libc6, libstdc++6, libgcc-s1)"
}

# board_kernel NAME: sets root, kernel, kver and modules (the kernel's module tree) from
# $cache/NAME.
board_kernel() {
    root=$cache/$1
    kernel=$(ls "$root"/boot/vmlinuz-*-arm64 | head -1)
    kver=${kernel##*/vmlinuz-}
    modules=$root/lib/modules/$kver/kernel
}

# board_initramfs DIR: busybox, Debian 11's arm64 runtime libraries (glibc 2.31), the virtio disk modules,
# the aarch64 linesight and ONNX Runtime and models/sim-flange under DIR/opt/linesight.
# Sets ort (the ONNX Runtime library it took; build.rs fetched it during the aarch64 build).
board_initramfs() {
    local ir=$1
    local bin=$repo/target/aarch64-unknown-linux-gnu/release/linesight
    [ -x "$bin" ] || die "no aarch64 linesight at $bin; build it first: cargo zigbuild --release --target aarch64-unknown-linux-gnu.2.31"
    ort=$(ls -t "$repo"/target/aarch64-unknown-linux-gnu/release/build/linesight-*/out/onnxruntime-*-aarch64/libonnxruntime.so.* 2>/dev/null | head -1 || true)
    [ -n "$ort" ] || die "no aarch64 ONNX Runtime library in target/aarch64-unknown-linux-gnu/release/build/linesight-*/out"
    mkdir -p "$ir"/{bin,lib/modules,proc,sys,dev,tmp,out} "$ir"/opt/linesight/{board/qemu-virt,models/sim-flange}
    cp "$root/bin/busybox" "$ir/bin/busybox"
    local l m
    for l in ld-linux-aarch64.so.1 libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 libstdc++.so.6 libgcc_s.so.1; do
        cp "$(board_lib "$l")" "$ir/lib/$l"
    done
    for m in drivers/virtio/virtio_mmio.ko drivers/block/virtio_blk.ko; do
        cp "$modules/$m" "$ir/lib/modules/"
    done
    cp "$bin" "$ir/opt/linesight/linesight"
    # "Beside the executable" is where linesight looks when neither the config nor
    # ORT_DYLIB_PATH names a library (as the .deb and board images ship it).
    cp "$ort" "$ir/opt/linesight/libonnxruntime.so"
    cp "$repo"/models/sim-flange/model.{onnx,toml} "$ir/opt/linesight/models/sim-flange/"
}

board_cpio() { (cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet >"$2"); }
