#!/usr/bin/env bash
# Inspects the Jetson .deb: prints `dpkg-deb --info` and `--contents`, then fails unless
# it is an arm64 package whose /usr/bin/linesight is an aarch64 ELF executable and it
# carries the systemd unit, the config (as a conffile), the model and the udev rule.
#   board/jetson-orin-nano/check-deb.sh target/debian/linesight_*_arm64.deb
set -euo pipefail
deb=${1:?usage: check-deb.sh PACKAGE.deb}
[ -f "$deb" ] || { echo "check-deb: $deb: no such file"; exit 1; }

echo "== dpkg-deb --info $deb"
dpkg-deb --info "$deb"
echo "== dpkg-deb --contents $deb"
contents=$(dpkg-deb --contents "$deb")
echo "$contents"
echo "== checks"

problems=0
fail() { echo "check-deb: FAIL: $*"; problems=$((problems + 1)); }
ok() { echo "check-deb: ok: $*"; }

arch=$(dpkg-deb --field "$deb" Architecture)
[ "$arch" = arm64 ] && ok "Architecture: arm64" || fail "Architecture is '$arch', expected arm64"

# Paths in the data archive (./usr/bin/linesight -> /usr/bin/linesight).
paths=$(awk '{ print $6 }' <<<"$contents" | sed 's|^\./|/|')
need() {
    if grep -qx -- "$1" <<<"$paths"; then ok "$2: $1"; else fail "$2 missing: $1"; fi
}
need /usr/bin/linesight "binary"
need /usr/lib/systemd/system/linesight.service "systemd unit"
need /etc/linesight/linesight.toml "config"
need /usr/share/linesight/models/sim-flange/model.onnx "model"
need /usr/share/linesight/models/sim-flange/model.toml "model manifest"
need /lib/udev/rules.d/99-linesight-gpio.rules "udev rule"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb --control "$deb" "$work/control"
if grep -qx /etc/linesight/linesight.toml "$work/control/conffiles" 2>/dev/null; then
    ok "conffile: /etc/linesight/linesight.toml"
else
    fail "/etc/linesight/linesight.toml is not a conffile (an upgrade would overwrite the field's edits)"
fi
for script in postinst prerm postrm; do
    [ -x "$work/control/$script" ] || fail "maintainer script $script missing"
done
grep -qs 'adduser --system' "$work/control/postinst" && ok "postinst creates the linesight system user" \
    || fail "postinst does not create the linesight user"

# The ELF header itself: magic, 64-bit, little-endian, e_machine 183 (EM_AARCH64), e_type EXEC or DYN.
dpkg-deb -x "$deb" "$work/root"
bin="$work/root/usr/bin/linesight"
if [ -f "$bin" ]; then
    header=$(od -An -tx1 -N20 "$bin" | tr -d ' \n')
    magic=${header:0:8} class=${header:8:2} data=${header:10:2}
    e_type=$((16#${header:34:2}${header:32:2})) e_machine=$((16#${header:38:2}${header:36:2}))
    if [ "$magic" = 7f454c46 ] && [ "$class" = 02 ] && [ "$data" = 01 ] && [ "$e_machine" = 183 ] \
        && { [ "$e_type" = 2 ] || [ "$e_type" = 3 ]; }; then
        described=""
        command -v file >/dev/null && described=" ($(file -b "$bin" | cut -d, -f1-2))"
        ok "/usr/bin/linesight is an aarch64 ELF executable$described"
    else
        fail "/usr/bin/linesight is not a 64-bit little-endian aarch64 ELF executable (header $header, e_machine $e_machine)"
    fi
    [ -x "$bin" ] || fail "/usr/bin/linesight is not executable"
fi

size=$(stat -c %s "$deb")
if [ "$problems" -gt 0 ]; then
    echo "check-deb: $problems problem(s) in $deb"
    exit 1
fi
echo "check-deb: ok: $deb ($((size / 1024)) KiB)"
