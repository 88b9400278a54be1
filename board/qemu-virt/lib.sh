# For the qemu-virt camera test (sourced by camera-test.sh): host tools, the cached
# arm64 kernel/busybox/libraries with the media modules, and the base of an initramfs.
# run-test.sh carries the same steps inline and prunes its cache (.cache/root) to the
# modules it needs, so this keeps its own: .cache/camera-root.
# Expects: here (this folder), repo (the repository root), cache ($here/.cache).

say() { echo "qemu-virt: $*"; }
die() { echo "qemu-virt: FAIL — $*"; exit 1; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# qemu-system-aarch64, cpio, python3 (apt-get install if missing).
board_host_tools() {
    local need=()
    command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
    command -v cpio >/dev/null || need+=(cpio)
    command -v python3 >/dev/null || need+=(python3)
    if [ ${#need[@]} -gt 0 ]; then
        say "installing ${need[*]} with apt-get"
        local sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
}

# The Debian 12 arm64 kernel, busybox-static and the arm64 runtime libraries, with
# apt-get download into a private apt tree in the cache (nothing on the host changes).
board_fetch() {
    [ -e "$cache/camera-root/.complete" ] && return
    local apt=$cache/camera-apt debs=$cache/camera-debs
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
    local new=$cache/camera-root.new kv
    rm -rf "$new" && mkdir -p "$new"
    for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$new"; done
    # Keep what the initramfs takes: the kernel, the virtio disk and media modules,
    # busybox, the libraries.
    kv=$(ls "$new/lib/modules")
    mkdir -p "$new/keep/drivers/block"
    mv "$new/lib/modules/$kv/kernel/drivers/virtio" "$new/lib/modules/$kv/kernel/drivers/media" "$new/keep/drivers/"
    mv "$new/lib/modules/$kv/kernel/drivers/block/virtio_blk.ko" "$new/keep/drivers/block/"
    rm -rf "$new/lib/modules/$kv" "$new/usr/share" && mkdir -p "$new/lib/modules/$kv"
    mv "$new/keep" "$new/lib/modules/$kv/kernel"
    rm -rf "$cache/camera-root" "$debs" "$apt" && mv "$new" "$cache/camera-root"
    touch "$cache/camera-root/.complete"
}

# Sets kernel, kver and modules (the kernel's module tree) from the cache.
board_kernel() {
    root=$cache/camera-root
    kernel=$(ls "$root"/boot/vmlinuz-*-arm64 | head -1)
    kver=${kernel##*/vmlinuz-}
    modules=$root/lib/modules/$kver/kernel
}

# board_initramfs DIR: busybox, the arm64 runtime libraries, the virtio disk modules,
# the aarch64 linesight and ONNX Runtime and models/sim-flange under DIR/opt/linesight.
board_initramfs() {
    local ir=$1
    local bin=$repo/target/aarch64-unknown-linux-gnu/release/linesight
    [ -x "$bin" ] || die "no aarch64 linesight at $bin; build it first: cargo zigbuild --release --target aarch64-unknown-linux-gnu.2.31"
    local ort
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
    cp "$ort" "$ir/opt/linesight/libonnxruntime.so"
    cp "$repo"/models/sim-flange/model.{onnx,toml} "$ir/opt/linesight/models/sim-flange/"
}

board_cpio() { (cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet >"$2"); }
