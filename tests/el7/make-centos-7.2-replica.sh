#!/usr/bin/env bash
# make-centos-7.2-replica.sh -- a CentOS 7.2 (1511) network-install tree whose
# Anaconda is the real one, for testing `v6build build recipes/7.2.kdl`.
#
# Usage: tests/el7/make-centos-7.2-replica.sh [OUT_DIR]
#
#   OUT_DIR   where the tree goes (default: fixtures-gen/centos-7.2 in the
#             repository, which git ignores).  It is replaced.
#   EL7_SRC   (environment) the Anaconda 21.48.22.56 extract; default
#             ../shared/el7/anaconda-21.48.22.56 from the repository root.
#
# Output, laid out as on the DVD or a vault mirror's 7.2.1511/os/x86_64/:
#
#   .treeinfo                   the [general]/[stage2]/[images-*] .treeinfo
#                               that CentOS 7 trees ship (no [checksums])
#   images/pxeboot/initrd.img   a real initramfs made by dracut, with
#                               Anaconda's dracut module installed at the
#                               paths its module-setup.sh gives; newc cpio
#                               in ONE xz stream (--check=crc32, one block)
#   images/pxeboot/vmlinuz      a stand-in file (NOT a kernel): the recipe
#                               only pins and copies it
#   LiveOS/squashfs.img         squashfs (xz) holding LiveOS/rootfs.img, an
#                               ext4 with EL7's feature profile holding the
#                               real pyanaconda and Anaconda's systemd units
#
# What is real and what is not:
#   - pyanaconda/**/*.py, data/systemd/*.service|*.target, the
#     anaconda-generator and every dracut/ file named below are the
#     unmodified Anaconda 21.48.22.56 files.  version.py is made from
#     version.py.in the way the RPM build makes it.
#   - Each .py has a .pyc and a .pyo beside it, as on the media.  Python 2.7
#     is not available here to compile them, so they are stand-ins: a real
#     Python 2.7 header (magic 03 f3 0d 0a, then the source mtime) followed
#     by bytes that are not valid marshal data.  They exist so that a build
#     has to remove the stale ones beside a file it patches.
#   - The initrd is made by the host's dracut (Debian's, not EL7's 033)
#     with only its `base` module and a module, generated here, that
#     installs Anaconda's dracut files with the very inst_hook/inst/
#     inst_simple lines of the real module-setup.sh (the lines that install
#     host binaries, rpmrc and python dependencies are left out: they are
#     not on this host).  The hook directory is /lib/dracut/hooks, as in
#     dracut 033, and /lib is a symlink to usr/lib, so the hooks sit in
#     /usr/lib/dracut/hooks/... in the archive.
#   - The stage2's /usr/bin/bash (and sh -> bash, as on EL7) and a few
#     coreutils, with their shared libraries, are copied from this host so
#     that a test can run the recipe's fix script in a chroot of the built
#     stage2.  The glade files, compiled modules (_isys.so) and every other
#     package of the real stage2 are not included.
#   - The .treeinfo follows the layout, key order and spacing of CentOS 7
#     trees (two independent copies agree: 7.4's and 7.6's); its timestamp
#     is this script's epoch, written as Python 2's str(float) writes it,
#     not the value of the real 7.2.1511 tree, which I could not find.
#
# Determinism: every time, owner, UUID, hash seed and the mke2fs profile is
# pinned (the same tricks as recipes/media/make-demo-media.sh), dracut runs
# with --reproducible and SOURCE_DATE_EPOCH, xz runs single-threaded.  A
# re-run on the same host gives the same bytes.  Host binaries are copied,
# so another host gives other bytes.
#
# Needs: dracut (dracut-core), cpio, xz (xz-utils), mkfs.ext4, e2fsck,
# debugfs (e2fsprogs), mksquashfs (squashfs-tools), ldd.  Run as root, so
# that dracut and mkfs.ext4 record files as owned by root.

set -euo pipefail

export LC_ALL=C TZ=UTC
umask 022

readonly EPOCH=1449187200 # 2015-12-04 00:00:00 UTC
export SOURCE_DATE_EPOCH=$EPOCH
export E2FSPROGS_FAKE_TIME=$EPOCH
export MKE2FS_CONFIG=/nonexistent/mke2fs.conf
readonly EXT4_UUID=5ee0c7a2-1511-4c70-8e2a-c3a70572c0de
readonly EXT4_HASH_SEED=0b5e6c2e-7f1d-4a08-9c3b-2d7e11c7a2f0
readonly EXT4_SIZE=64M

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
src=${EL7_SRC:-$repo/../shared/el7/anaconda-21.48.22.56}
out=${1:-$repo/fixtures-gen/centos-7.2}

die() { echo "make-centos-7.2-replica.sh: $*" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found (install $2)"; }
need dracut dracut-core
need cpio cpio
need xz xz-utils
need mkfs.ext4 e2fsprogs
need e2fsck e2fsprogs
need debugfs e2fsprogs
need mksquashfs squashfs-tools
need ldd libc-bin
[ "$(id -u)" = 0 ] || die "run as root (dracut and mkfs.ext4 must see root-owned files)"
[ -f "$src/pyanaconda/packaging/__init__.py" ] || die "no Anaconda sources at $src (set EL7_SRC)"
[ -f "$src/dracut/module-setup.sh" ] || die "no $src/dracut/module-setup.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/v6build-el7-replica.XXXXXX")
trap 'rm -rf "$work"' EXIT

pin_times() { find "$1" -depth -exec touch -h -d "@$EPOCH" {} +; }

# ---------------------------------------------------------------- initrd

make_initrd() {
    local base=$work/dracut mod
    # A private copy of the host's dracut, so the extra module is not
    # installed into the host's /usr/lib/dracut.
    cp -a /usr/lib/dracut "$base"
    mod=$base/modules.d/99anaconda
    mkdir -p "$mod"
    local f
    for f in "$src"/dracut/*; do
        case "${f##*/}" in
            module-setup.sh | Makefile.am | README*) continue ;;
        esac
        cp "$f" "$mod/"
    done
    # The sources are read-only in ../shared; give them the modes the
    # Anaconda RPM gives them (dracut copies modes into the image).
    chmod 0755 "$mod"/*
    chmod 0644 "$mod/anaconda-lib.sh" "$mod/driver-updates@.service"
    {
        echo '#!/bin/bash'
        echo '# Generated by make-centos-7.2-replica.sh from Anaconda 21.48.22.56'
        echo '# dracut/module-setup.sh: its inst_hook/inst/inst_simple lines that'
        echo '# install files of this module, unchanged and in order.'
        echo 'check() { return 255; }'
        echo 'depends() { echo base; return 0; }'
        echo 'install() {'
        grep -E '^[[:space:]]*(inst_hook|inst|inst_simple)[[:space:]].*"\$moddir/' \
            "$src/dracut/module-setup.sh"
        echo '}'
    } > "$mod/module-setup.sh"
    chmod 0755 "$mod/module-setup.sh"

    mkdir -p "$out/images/pxeboot"
    # --no-kernel: no kernel is installed here, and the recipe does not
    # touch modules.  dracut complains that it cannot install /usr/bin/python
    # (the interpreter of parse-kickstart and driver-updates); the scripts
    # themselves are installed.
    dracutbasedir=$base dracut --quiet --force --no-kernel --no-compress \
        --no-hostonly --no-hostonly-cmdline --nomdadmconf --nolvmconf \
        --no-early-microcode --reproducible -m "base anaconda" \
        "$work/initrd.cpio" 2> "$work/dracut.log" \
        || die "dracut failed: $(cat "$work/dracut.log")"
    grep -v "failed to install '/usr/bin/python'" "$work/dracut.log" >&2 || true
    # One xz stream, one block (-T1), the CRC32 check and the dictionary
    # size the kernel's decoder wants.
    xz --check=crc32 --lzma2=dict=1MiB -T1 < "$work/initrd.cpio" \
        > "$out/images/pxeboot/initrd.img"

    printf 'v6build CentOS 7.2 replica: stand-in for images/pxeboot/vmlinuz (not a kernel)\n' \
        > "$out/images/pxeboot/vmlinuz"
    chmod 0644 "$out/images/pxeboot/initrd.img" "$out/images/pxeboot/vmlinuz"
}

# ---------------------------------------------------------------- stage2

# stale_pyc PATH: a Python 2.7 header and bytes that are not bytecode.
stale_pyc() {
    {
        printf '\003\363\015\012'
        printf '\200\327\140\126' # 1449187200 = 0x5660d780, little endian
        printf 'v6build replica: stale bytecode stand-in\n'
    } > "$1"
    chmod 0644 "$1"
}

# copy_host_binary ROOT PATH...: each host binary, at the same path in ROOT,
# with the shared libraries ldd names (at their real paths, plus a symlink
# where ldd's path differs, such as /lib64/ld-linux-x86-64.so.2).
copy_host_binary() {
    local r=$1 b p lib real
    shift
    for b in "$@"; do
        p=$(type -P "$b") || die "no $b on this host"
        real=$(readlink -f "$p")
        install -D -m 0755 "$real" "$r/usr/bin/$b"
        ldd "$real" | grep -oE '/[^ ]+' | while read -r lib; do
            real=$(readlink -f "$lib")
            [ -e "$r$real" ] || install -D -m 0755 "$real" "$r$real"
            # Where the name ldd printed resolves to inside ROOT (through its
            # merged-/usr symlinks), link it to the real file.
            local dir
            dir=$(dirname "$lib")
            case "$dir" in
                /lib64* | /lib/* | /lib) dir=/usr$dir ;;
            esac
            if [ "$dir/${lib##*/}" != "$real" ] && [ ! -e "$r$dir/${lib##*/}" ]; then
                mkdir -p "$r$dir"
                ln -s "$real" "$r$dir/${lib##*/}"
            fi
        done
    done
}

make_stage2_tree() {
    local r=$1
    mkdir -p "$r"
    ln -s usr/bin "$r/bin"
    ln -s usr/sbin "$r/sbin"
    ln -s usr/lib "$r/lib"
    ln -s usr/lib64 "$r/lib64"
    mkdir -p "$r/usr/bin" "$r/usr/sbin" "$r/usr/lib64" "$r/usr/libexec" \
        "$r/proc" "$r/sys" "$r/run" "$r/dev" "$r/root" "$r/tmp" "$r/var/tmp" \
        "$r/etc/sysconfig/network-scripts" "$r/etc/systemd/system"
    chmod 0550 "$r/root"
    chmod 1777 "$r/tmp" "$r/var/tmp"

    # The shell and tools a fix script may use (EL7's /bin/sh is bash).
    copy_host_binary "$r" bash cat mv rm cp ln mkdir mktemp chmod ls grep sed \
        sort head tail tr cut touch sleep env true false
    ln -s bash "$r/usr/bin/sh"

    # pyanaconda: every .py of the extract, with a stale .pyc and .pyo.
    local py=$r/usr/lib64/python2.7/site-packages/pyanaconda f rel
    (cd "$src/pyanaconda" && find . -name '*.py' -type f | sort) | while read -r rel; do
        rel=${rel#./}
        install -D -m 0644 "$src/pyanaconda/$rel" "$py/$rel"
        stale_pyc "$py/${rel}c"
        stale_pyc "$py/${rel}o"
    done
    sed -e 's/@PACKAGE_VERSION@/21.48.22.56/' -e 's/@PACKAGE_RELEASE@/1/' \
        "$src/pyanaconda/version.py.in" > "$py/version.py"
    chmod 0644 "$py/version.py"
    stale_pyc "$py/version.pyc"
    stale_pyc "$py/version.pyo"

    # Anaconda's systemd units and generator.
    local u=$r/usr/lib/systemd/system
    mkdir -p "$u" "$r/usr/lib/systemd/system-generators"
    for f in "$src"/data/systemd/*.service "$src"/data/systemd/*.target; do
        install -m 0644 "$f" "$u/${f##*/}"
    done
    install -m 0755 "$src/data/systemd/anaconda-generator" \
        "$r/usr/lib/systemd/system-generators/anaconda-generator"
    # lorax makes anaconda.target the stage2's default target.
    ln -s /usr/lib/systemd/system/anaconda.target "$r/etc/systemd/system/default.target"

    cat > "$r/etc/sysconfig/network-scripts/ifcfg-lo" <<'EOF'
DEVICE=lo
IPADDR=127.0.0.1
NETMASK=255.0.0.0
NETWORK=127.0.0.0
# If you're having problems with gated making 127.0.0.0/8 a martian,
# you can change this to something else (255.255.255.255, for example)
BROADCAST=127.255.255.255
ONBOOT=yes
NAME=loopback
EOF
    printf 'CentOS Linux release 7.2.1511 (Core) \n' > "$r/etc/centos-release"
    ln -s centos-release "$r/etc/redhat-release"
    ln -s centos-release "$r/etc/system-release"
    chmod 0644 "$r/etc/sysconfig/network-scripts/ifcfg-lo" "$r/etc/centos-release"
}

make_stage2() {
    local r=$work/stage2-root s=$work/stage2-squash
    make_stage2_tree "$r"
    pin_times "$r"
    mkdir -p "$s/LiveOS"
    # EL7's rootfs.img profile (mke2fs 1.42.9): uninit_bg instead of
    # metadata_csum, no 64bit, no metadata_csum_seed, no orphan_file.
    local features=^metadata_csum,^64bit,^metadata_csum_seed,uninit_bg
    truncate -s 4M "$work/probe.img"
    if mkfs.ext4 -q -n -F -O ^orphan_file "$work/probe.img" >/dev/null 2>&1; then
        features=$features,^orphan_file
    fi
    rm -f "$work/probe.img"
    mkfs.ext4 -q -F -L Anaconda -b 4096 -I 256 -N 4096 \
        -O "$features" -U "$EXT4_UUID" \
        -E "hash_seed=$EXT4_HASH_SEED,root_owner=0:0" \
        -d "$r" "$s/LiveOS/rootfs.img" "$EXT4_SIZE" >/dev/null
    # ctimes: mkfs.ext4 -d copies the host's (today's); set them to the epoch.
    (cd "$r" && find . | sort) \
        | sed -e 's|^\.||' -e 's|^$|/|' \
        | while read -r p; do printf 'sif "%s" ctime @%s\n' "$p" "$EPOCH"; done \
        > "$work/ctime.debugfs"
    debugfs -w -f "$work/ctime.debugfs" "$s/LiveOS/rootfs.img" >/dev/null 2>"$work/debugfs.err" \
        || die "debugfs failed: $(cat "$work/debugfs.err")"
    local fsck
    fsck=$(e2fsck -fn "$s/LiveOS/rootfs.img" 2>&1) \
        || die "e2fsck does not accept the rootfs.img just made:"$'\n'"$fsck"
    pin_times "$s"
    mkdir -p "$out/LiveOS"
    env -u SOURCE_DATE_EPOCH \
        mksquashfs "$s" "$out/LiveOS/squashfs.img" -comp xz -noappend \
        -all-root -mkfs-time "$EPOCH" -all-time "$EPOCH" \
        -no-progress -quiet >/dev/null
    chmod 0644 "$out/LiveOS/squashfs.img"
}

# ---------------------------------------------------------------- .treeinfo

# As CentOS 7 trees have it: pylorax's Python 2 ConfigParser output (its key
# order, "key = value" with a space even before an empty value, a blank line
# after every section), no [checksums].
make_treeinfo() {
    cat > "$out/.treeinfo" <<EOF
[general]
name = CentOS-7
family = CentOS
timestamp = $EPOCH.0
variant = 
version = 7
packagedir = 
arch = x86_64

[stage2]
mainimage = LiveOS/squashfs.img

[images-x86_64]
kernel = images/pxeboot/vmlinuz
initrd = images/pxeboot/initrd.img
boot.iso = images/boot.iso

[images-xen]
kernel = images/pxeboot/vmlinuz
initrd = images/pxeboot/initrd.img

EOF
    chmod 0644 "$out/.treeinfo"
}

# ---------------------------------------------------------------- main

rm -rf "$out"
mkdir -p "$out"
make_initrd
make_stage2
make_treeinfo

(cd "$out" && find . -type f | sort | while read -r f; do
    printf '%10d  %s  %s\n' "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -d' ' -f1)" "${f#./}"
done) >&2
