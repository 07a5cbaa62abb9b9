#!/usr/bin/env bash
# Makes a small media set that really boots over the network, for
# `v6build boot` tests (tests/it/boot.rs) and the boot bench row:
#
#   OUT/images/pxeboot/vmlinuz     Debian 12's kernel (linux-image-6.1.*-amd64),
#                                  taken out of the .deb with dpkg-deb -x,
#                                  not installed
#   OUT/images/pxeboot/initrd.img  a dracut 059 initrd with the network
#                                  (network-legacy), livenet and dmsquash-live
#                                  modules, plus the kernel modules they need
#                                  from the extracted kernel (--kmoddir)
#   OUT/LiveOS/squashfs.img        a small stage2: squashfs holding
#                                  LiveOS/rootfs.img (ext4), like Anaconda's.
#                                  Its root is the host's systemd (binary and
#                                  the libraries it links, copied in) with a
#                                  few hand-written units: it prints
#                                  V6BUILD-STAGE2-UP once multi-user.target
#                                  is reached and then powers the machine off,
#                                  so a boot that misses a marker ends at once
#                                  instead of waiting for a timeout.
#
# Usage: tests/boot/make-boot-media.sh [OUT]   (default: fixtures-gen/boot-media)
#
# Needs (test oracles, never used by v6build itself): apt-get, dpkg-deb,
# depmod, dracut (dracut-core, dracut-network, dracut-live), dhclient,
# arping, curl, mkfs.ext4, mksquashfs, systemd. No root: nothing is
# installed or mounted. OUT/.stamp records the script's hash and the kernel
# package; a second run with both unchanged does nothing, so CI can cache OUT.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$repo/fixtures-gen/boot-media}

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "make-boot-media: needs $1 (apt-get install $2)" >&2
        exit 3
    }
}
need apt-get apt
need dpkg-deb dpkg
need depmod kmod
need dracut "dracut-core dracut-network dracut-live"
need dhclient isc-dhcp-client
need arping iputils-arping
need curl curl
need mkfs.ext4 e2fsprogs
need mksquashfs squashfs-tools
[ -x /usr/lib/systemd/systemd ] || { echo "make-boot-media: needs systemd" >&2; exit 3; }
for m in livenet dmsquash-live network-legacy; do
    [ -d "/usr/lib/dracut/modules.d/"*"$m" ] 2>/dev/null || ls -d /usr/lib/dracut/modules.d/*"$m" >/dev/null 2>&1 || {
        echo "make-boot-media: dracut module $m missing (apt-get install dracut-network dracut-live)" >&2
        exit 3
    }
done

# The kernel package linux-image-amd64 points at today.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
[ -n "$kpkg" ] || { echo "make-boot-media: cannot resolve linux-image-amd64 (run apt-get update)" >&2; exit 3; }

stamp="$(sha256sum "$0" | cut -d' ' -f1) $kpkg"
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ] \
    && [ -f "$out/images/pxeboot/vmlinuz" ] && [ -f "$out/images/pxeboot/initrd.img" ] \
    && [ -f "$out/LiveOS/squashfs.img" ]; then
    echo "make-boot-media: $out is up to date"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/v6build-boot-media.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- the kernel -------------------------------------------------------------
dl="$repo/fixtures-gen/boot-dl"
mkdir -p "$dl"
if ! ls "$dl/${kpkg}_"*.deb >/dev/null 2>&1; then
    rm -f "$dl"/linux-image-*.deb
    (cd "$dl" && apt-get download "$kpkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
fi
deb=$(ls "$dl/${kpkg}_"*.deb | head -n1)
dpkg-deb -x "$deb" "$work/k"
kver=$(ls "$work/k/lib/modules" | head -n1)
depmod -b "$work/k" "$kver"

# --- the initrd -------------------------------------------------------------
# --no-hostonly: a generic initrd, nothing from this host's hardware.
# --modules lists exactly what is wanted, so dracut's default (host-
# dependent) module set does not creep in; dependencies are added by dracut.
# The kernel modules come from the extracted package through --kmoddir.
mkdir -p "$out/images/pxeboot" "$out/LiveOS"
mkdir -p "$work/noconf"
dracut --quiet --force --no-hostonly --no-hostonly-cmdline --reproducible \
    --no-early-microcode --gzip \
    --kver "$kver" --kmoddir "$work/k/lib/modules/$kver" \
    --modules "bash network-legacy network url-lib livenet dmsquash-live dm rootfs-block img-lib" \
    --omit "systemd plymouth i18n" --conf /dev/null --confdir "$work/noconf" \
    --drivers "virtio_pci virtio_net net_failover failover squashfs loop overlay ext4 dm_mod dm_snapshot" \
    --tmpdir "$work" \
    "$work/initrd.img"
cp "$work/initrd.img" "$out/images/pxeboot/initrd.img"
cp "$work/k/boot/vmlinuz-$kver" "$out/images/pxeboot/vmlinuz"

# --- the stage2 -------------------------------------------------------------
r="$work/root"
mkdir -p "$r"/usr/{bin,sbin,lib,lib64} "$r"/{etc,proc,sys,dev,run,tmp,var,root}
ln -s usr/bin "$r/bin"
ln -s usr/sbin "$r/sbin"
ln -s usr/lib "$r/lib"
ln -s usr/lib64 "$r/lib64"

# copy_bin FILE...: each file with every library ldd says it links.
copy_bin() {
    local f lib
    for f in "$@"; do
        f=$(readlink -f "$f")
        mkdir -p "$r$(dirname "$f")"
        cp -L "$f" "$r$f"
        for name in $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*'); do
            lib=$(readlink -f "$name")
            if [ ! -e "$r$lib" ]; then
                mkdir -p "$r$(dirname "$lib")"
                cp -L "$lib" "$r$lib"
            fi
            # The name the binary asks for (the loader's /lib64 path).
            if [ "$name" != "$lib" ] && [ ! -e "$r$name" ]; then
                mkdir -p "$r$(dirname "$name")"
                ln -s "$lib" "$r$name"
            fi
        done
    done
}
copy_bin /usr/lib/systemd/systemd /usr/bin/dash /usr/bin/cat /usr/bin/echo /usr/sbin/ip
ln -s ../lib/systemd/systemd "$r/usr/sbin/init"
ln -s ../run "$r/var/run"
ln -s dash "$r/usr/bin/sh"

u="$r/usr/lib/systemd/system"
mkdir -p "$u/multi-user.target.wants"
# The targets systemd's own default dependencies name, copied from the
# host (their Wants= on units this root lacks are harmless).
for t in basic sysinit local-fs local-fs-pre sockets timers paths slices \
    shutdown umount final poweroff multi-user emergency rescue; do
    cp "/usr/lib/systemd/system/$t.target" "$u/"
done
# default.target: multi-user.target, then the unit that reports and
# powers off (ordered after everything multi-user.target pulls in).
cat >"$u/v6build-test.target" <<'EOF'
[Unit]
Description=v6build boot test
Requires=multi-user.target
After=multi-user.target
Wants=v6build-stage2-up.service
AllowIsolate=yes
EOF
ln -s v6build-test.target "$u/default.target"
printf 'NAME="v6build boot test stage2"\nID=v6build-test\n' >"$r/usr/lib/os-release"
ln -s ../usr/lib/os-release "$r/etc/os-release"
: >"$r/etc/machine-id"

cat >"$u/v6build-stage2-up.service" <<'EOF'
[Unit]
Description=v6build test stage2: say it is up, then power off
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo V6BUILD-STAGE2-UP >/dev/console; echo o >/proc/sysrq-trigger'
EOF

mkdir -p "$work/s/LiveOS"
export MKE2FS_CONFIG=/nonexistent
export E2FSPROGS_FAKE_TIME=1449187200
mkfs.ext4 -q -F -L Anaconda -b 4096 -I 256 -O ^metadata_csum_seed,^orphan_file \
    -U 7b1a5e0c-6b2e-4c52-9d1a-0e5c0ffee0c8 \
    -E "hash_seed=3c8f1f5e-2d4b-4a7e-8b9c-6a1d2e3f4a5c,root_owner=0:0" \
    -d "$r" "$work/s/LiveOS/rootfs.img" 96M >/dev/null 2>&1 ||
    mkfs.ext4 -q -F -L Anaconda -b 4096 -I 256 \
        -E "root_owner=0:0" -d "$r" "$work/s/LiveOS/rootfs.img" 96M >/dev/null
mksquashfs "$work/s" "$work/squashfs.img" -quiet -no-progress -all-root \
    -comp xz -noappend -mkfs-time 1449187200 -all-time 1449187200 >/dev/null
cp "$work/squashfs.img" "$out/LiveOS/squashfs.img"

echo "$stamp" >"$out/.stamp"
echo "make-boot-media: wrote $out (kernel $kver)"
