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

# board_fetch NAME MODULE...: the Debian 12 arm64 kernel, busybox-static and the arm64
# runtime libraries into $cache/NAME (once), with apt-get download into a private apt
# tree (nothing on the host changes). Of the kernel's modules only the MODULEs (files or
# folders under kernel/, e.g. drivers/block/virtio_blk.ko) are kept.
board_fetch() {
    local name=$1; shift
    [ -e "$cache/$name/.complete" ] && return
    local apt=$cache/$name-apt debs=$cache/$name-debs
    mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/etc/preferences.d" "$apt/etc/sources.list.d" "$debs"
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
    local kpkg
    kpkg=$(apt-cache "${o[@]}" depends linux-image-arm64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-arm64\)$/\1/p' | head -1)
    [ -n "$kpkg" ] || die "cannot find the kernel package behind linux-image-arm64"
    local pkgs=("$kpkg" busybox-static libc6-arm64-cross libstdc++6-arm64-cross libgcc-s1-arm64-cross)
    say "apt-get download ${pkgs[*]}"
    (cd "$debs" && rm -f ./*.deb && apt-get "${o[@]}" download "${pkgs[@]}")
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
    touch "$cache/$name/.complete"
}

# board_kernel NAME: sets root, kernel, kver and modules (the kernel's module tree) from
# $cache/NAME.
board_kernel() {
    root=$cache/$1
    kernel=$(ls "$root"/boot/vmlinuz-*-arm64 | head -1)
    kver=${kernel##*/vmlinuz-}
    modules=$root/lib/modules/$kver/kernel
}

# board_initramfs DIR: busybox, the arm64 runtime libraries, the virtio disk modules,
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
    local xlib=$root/usr/aarch64-linux-gnu/lib l m
    for l in ld-linux-aarch64.so.1 libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 libstdc++.so.6 libgcc_s.so.1; do
        cp -L "$xlib/$l" "$ir/lib/$l"
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
