#!/usr/bin/env bash
# make-demo-media.sh -- build the small demo "vendor media" under demo/.
#
# recipes/demo.kdl edits these files the way recipes/7.2.kdl edits real
# CentOS 7.2 media.  They are made here with the classic tools (find, cpio,
# xz, mkfs.ext4, mksquashfs) and deliberately NOT with v6build, so that the
# demo exercises v6build's readers on images it did not write itself.
#
# Output (all committed):
#   demo/images/pxeboot/initrd.img  newc cpio, xz --check=crc32: a small
#                                   dracut-shaped initramfs
#   demo/LiveOS/squashfs.img        xz squashfs holding LiveOS/rootfs.img,
#                                   an ext4 with EL7's feature set holding a
#                                   small Anaconda-stage2-shaped root
#   demo/.treeinfo                  productmd .treeinfo with sha256 checksums
#
# Usage: recipes/media/make-demo-media.sh     (run as root for /dev/console
#        and the security.selinux labels; the script says what it skips)
#
# Determinism: every input that the tools would otherwise take from the
# environment is pinned -- locale, time zone, umask, mtimes (touch -d),
# file owners (cpio -R 0:0, mkfs.ext4 root_owner, mksquashfs -all-root),
# inode numbers (cpio --reproducible), ext4 UUID, hash seed and clock
# (E2FSPROGS_FAKE_TIME), ext4 ctimes (rewritten with debugfs), squashfs times (-mkfs-time/-all-time) and the
# mke2fs profile (MKE2FS_CONFIG points at a file that does not exist, so the
# built-in defaults of this e2fsprogs version apply, not /etc/mke2fs.conf).
# With the same versions of the tools, a re-run gives the same bytes.

set -euo pipefail

export LC_ALL=C TZ=UTC
umask 022

# 2015-12-04 00:00:00 UTC, the day CentOS 7.2 (1511) was announced.
readonly EPOCH=1449187200
export SOURCE_DATE_EPOCH=$EPOCH
export E2FSPROGS_FAKE_TIME=$EPOCH
export MKE2FS_CONFIG=/nonexistent/mke2fs.conf

# Fixed identities, so that mkfs.ext4 does not draw them at random.
readonly EXT4_UUID=7b1a5e0c-6b2e-4c52-9d1a-0e5c0ffee0c7
readonly EXT4_HASH_SEED=3c8f1f5e-2d4b-4a7e-8b9c-6a1d2e3f4a5b
# Size of rootfs.img.  It is sparse and almost empty, so it costs little
# once squashed.
readonly EXT4_SIZE=16M

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$here/demo-src
out=$here/demo

die() { echo "make-demo-media.sh: $*" >&2; exit 1; }
note() { echo "make-demo-media.sh: $*" >&2; }

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found (install $2)"
}
need cpio cpio
need xz xz-utils
need mkfs.ext4 e2fsprogs
need e2fsck e2fsprogs
need debugfs e2fsprogs
need mksquashfs squashfs-tools
need sha256sum coreutils

as_root=no
[ "$(id -u)" = 0 ] && as_root=yes
have_setfattr=no
command -v setfattr >/dev/null 2>&1 && have_setfattr=yes
[ "$have_setfattr" = yes ] || note "setfattr not found (package attr): building without xattrs"
[ "$as_root" = yes ] || note "not root: building without /dev/console and security.selinux labels"

work=$(mktemp -d "${TMPDIR:-/tmp}/v6build-demo-media.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---------------------------------------------------------------- helpers

# put PATH MODE: write stdin to PATH (creating parents) with MODE.
put() {
    mkdir -p "$(dirname "$1")"
    cat > "$1"
    chmod "$2" "$1"
}

# placeholder PATH WHAT: a tiny executable standing in for a real binary;
# the demo never runs anything, it only has to look like a root file system.
placeholder() {
    printf '#!/bin/sh\n# placeholder for %s in the v6build demo media\nexit 0\n' "$2" \
        | put "$1" 0755
}

# tzif_utc PATH: a minimal valid TZif (version 1) file for UTC: a 44-byte
# header declaring one local time type and 4 bytes of abbreviations, the
# type (offset 0, not DST, abbreviation index 0), and "UTC\0".  Written
# byte by byte so the media do not depend on the host's tzdata.
tzif_utc() {
    mkdir -p "$(dirname "$1")"
    {
        printf 'TZif'
        printf '\000%.0s' {1..16}                       # version 1, reserved
        printf '\000\000\000\000\000\000\000\000'       # isutcnt, isstdcnt
        printf '\000\000\000\000\000\000\000\000'       # leapcnt, timecnt
        printf '\000\000\000\001\000\000\000\004'       # typecnt 1, charcnt 4
        printf '\000\000\000\000\000\000'               # utoff 0, isdst 0, idx 0
        printf 'UTC\000'
    } > "$1"
    chmod 0644 "$1"
}

# pyc PATH: a stale Python 2.7 bytecode file.  Only the header is real
# (magic 03 f3 0d 0a, then the source mtime, little endian); what matters
# for the demo is that it exists beside the .py the patch edits, so the build
# must remove it or Python would keep running the unpatched code.
pyc() {
    {
        printf '\003\363\015\012'
        # 1449187200 = 0x5660d780, little endian
        printf '\200\327\140\126'
        printf 'c\000\000\000\000stale bytecode for the v6build demo\n'
    } > "$1"
    chmod 0644 "$1"
}

# xattr PATH NAME VALUE: set an extended attribute, when the host allows.
xattr() {
    [ "$have_setfattr" = yes ] || return 0
    case "$2" in
        user.*) ;;
        *) [ "$as_root" = yes ] || return 0 ;;
    esac
    setfattr -h -n "$2" -v "$3" "$1"
}

# selinux PATH CONTEXT: an SELinux label as the kernel stores it, with the
# trailing NUL, hence the hex form.
selinux() {
    local hex
    hex=$(printf '%s\000' "$2" | od -An -tx1 | tr -d ' \n')
    xattr "$1" security.selinux "0x$hex"
}

# pin_times DIR: every entry (symlinks themselves included) gets the epoch
# as mtime.  Run last, after all writes, since writing into a directory
# changes its mtime.
pin_times() {
    find "$1" -depth -exec touch -h -d "@$EPOCH" {} +
}

# ---------------------------------------------------------------- initrd

# A dracut-shaped EL7 initramfs: merged /usr with /bin, /sbin, /lib and
# /lib64 as symlinks, the dracut hook directories, stand-ins for Anaconda's
# initqueue/online hooks under their real names (00-anaconda-ifcfg.sh,
# 11-fetch-kickstart-net.sh, 80-anaconda-netroot.sh, as installed by
# Anaconda 21.48's dracut/module-setup.sh; the recipe's hook at 10 sorts
# between the first two), a hardlink pair and a device node.
make_initrd_tree() {
    local r=$1
    mkdir -p "$r"
    ln -s usr/bin "$r/bin"
    ln -s usr/sbin "$r/sbin"
    ln -s usr/lib "$r/lib"
    ln -s usr/lib64 "$r/lib64"
    mkdir -p "$r/usr/bin" "$r/usr/sbin" "$r/usr/lib64" \
        "$r/proc" "$r/sys" "$r/run" "$r/var" "$r/dev" "$r/root" "$r/tmp"
    chmod 0700 "$r/root"
    chmod 1777 "$r/tmp"

    put "$r/init" 0755 <<'EOF'
#!/usr/bin/sh
# /init of the v6build demo initramfs.  It only mirrors the order in which
# dracut's real /init runs its hooks; nothing here is meant to boot.
export PATH=/usr/sbin:/usr/bin
hookdir=/usr/lib/dracut/hooks

# As dracut 033's source_all: each hook is sourced (an exit in one would
# end the caller), with the caller's remaining arguments.
source_all() {
    _dir=$1; shift
    for f in "$hookdir/$_dir"/*.sh; do
        [ -e "$f" ] && . "$f" "$@"
    done
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

for hook in cmdline pre-udev pre-trigger; do
    source_all "$hook"
done

# The initqueue: network interfaces come up, then initqueue/online runs
# once per interface with $netif set.
for netif in $(ls /sys/class/net); do
    [ "$netif" = lo ] && continue
    source_all initqueue/online "$netif"
done
source_all initqueue/settled
source_all initqueue/finished

for hook in pre-mount mount pre-pivot cleanup; do
    source_all "$hook"
done
exec switch_root /sysroot /usr/lib/systemd/systemd
EOF
    placeholder "$r/usr/bin/sh" "bash"
    placeholder "$r/usr/sbin/ip" "iproute's ip"

    local h=$r/usr/lib/dracut/hooks
    local d
    for d in cmdline pre-udev pre-trigger initqueue initqueue/settled \
        initqueue/online initqueue/finished initqueue/timeout pre-mount \
        mount pre-pivot cleanup emergency shutdown shutdown-emergency; do
        mkdir -p "$h/$d"
    done
    put "$h/initqueue/online/00-anaconda-ifcfg.sh" 0755 <<'EOF'
#!/bin/sh
# 00-anaconda-ifcfg.sh -- stand-in for anaconda's dracut online hook that
# writes /tmp/ifcfg/ifcfg-$netif for stage2.  In the demo it only records
# that it ran.
[ -n "${netif:-}" ] || return 0
echo "anaconda-ifcfg: $netif" > "/tmp/anaconda-ifcfg.$netif"
EOF
    put "$h/initqueue/online/11-fetch-kickstart-net.sh" 0755 <<'EOF'
#!/bin/sh
# 11-fetch-kickstart-net.sh -- stand-in for anaconda's dracut online hook
# that fetches inst.ks= over the network.  In the demo it only records that
# it ran.
[ -n "${netif:-}" ] || return 0
echo "fetch-kickstart-net: $netif" > "/tmp/fetch-kickstart-net.$netif"
EOF
    put "$h/initqueue/online/80-anaconda-netroot.sh" 0755 <<'EOF'
#!/bin/sh
# 80-anaconda-netroot.sh -- stand-in for anaconda's dracut online hook,
# which fetches stage2 (inst.stage2=/inst.repo=) once $netif is online.
# In the demo it only records that it ran.
[ -n "${netif:-}" ] || return 0
echo "anaconda-netroot: $netif is online" > "/tmp/anaconda-netroot.$netif"
EOF
    put "$h/cmdline/25-parse-anaconda-options.sh" 0755 <<'EOF'
#!/bin/sh
# Stand-in for anaconda's command line parser hook (inst.* options).
:
EOF

    put "$r/etc/os-release" 0644 <<'EOF'
NAME="CentOS Linux"
VERSION="7 (Core) dracut-033-359.el7"
ID="centos"
ID_LIKE="rhel fedora"
VERSION_ID="7"
PRETTY_NAME="CentOS Linux 7 (Core) dracut-033-359.el7 (Initramfs)"
ANSI_COLOR="0;31"
EOF
    ln -s os-release "$r/etc/initrd-release"
    put "$r/etc/cmdline.d/README" 0644 <<'EOF'
Extra kernel command line fragments (*.conf) read by dracut.
EOF

    # Hardlink pair: EL7 ships these two names as one inode.
    tzif_utc "$r/usr/share/zoneinfo/UTC"
    mkdir -p "$r/usr/share/zoneinfo/Etc"
    ln "$r/usr/share/zoneinfo/UTC" "$r/usr/share/zoneinfo/Etc/UTC"

    if [ "$as_root" = yes ]; then
        mknod -m 0600 "$r/dev/console" c 5 1
    fi
}

make_initrd() {
    local r=$work/initrd
    make_initrd_tree "$r"
    pin_times "$r"
    mkdir -p "$out/images/pxeboot"
    # newc with "." first, names sorted bytewise; --reproducible renumbers
    # inodes and drops the host's device numbers, -R 0:0 the owners.  The
    # kernel's xz decoder wants CRC32 checks and a modest dictionary.
    # -T1: single-threaded xz writes one block, like older xz did.
    (cd "$r" && find . | sort | cpio -o -H newc -R 0:0 --reproducible --quiet) \
        | xz --check=crc32 --lzma2=dict=1MiB -T1 \
        > "$out/images/pxeboot/initrd.img"
}

# ---------------------------------------------------------------- stage2

# An Anaconda-stage2-shaped EL7 root: systemd units, the pyanaconda
# packaging module the demo patch edits (with stale .pyc/.pyo beside it),
# /usr/libexec for fix-ipv6-only.sh, xattrs, a hardlink pair, a multi-block
# file and a symlink too long to be a "fast" ext4 symlink.  There is no
# /etc/systemd/system/basic.target.wants: enabling fix-ipv6.service has to
# create it.
make_stage2_tree() {
    local r=$1
    mkdir -p "$r"
    ln -s usr/bin "$r/bin"
    ln -s usr/sbin "$r/sbin"
    ln -s usr/lib "$r/lib"
    ln -s usr/lib64 "$r/lib64"
    mkdir -p "$r/usr/sbin" "$r/proc" "$r/sys" "$r/run" "$r/dev" "$r/root" \
        "$r/tmp" "$r/var/tmp" "$r/etc/sysconfig/network-scripts"
    chmod 0550 "$r/root"
    chmod 1777 "$r/tmp" "$r/var/tmp"

    placeholder "$r/usr/bin/bash" "bash"
    ln -s bash "$r/usr/bin/sh"
    placeholder "$r/usr/bin/python2.7" "python2.7"
    ln -s python2.7 "$r/usr/bin/python2"
    ln -s python2 "$r/usr/bin/python"
    placeholder "$r/usr/bin/anaconda" "anaconda"
    placeholder "$r/usr/sbin/NetworkManager" "NetworkManager"
    placeholder "$r/usr/libexec/anaconda/dd_list" "anaconda's dd_list"

    local u=$r/usr/lib/systemd/system
    put "$u/basic.target" 0644 <<'EOF'
#  This file is part of systemd.
#
#  systemd is free software; you can redistribute it and/or modify it
#  under the terms of the GNU Lesser General Public License as published by
#  the Free Software Foundation; either version 2.1 of the License, or
#  (at your option) any later version.

[Unit]
Description=Basic System
Documentation=man:systemd.special(7)
Requires=sysinit.target
Wants=sockets.target timers.target paths.target slices.target
After=sysinit.target sockets.target timers.target paths.target slices.target
EOF
    put "$u/anaconda.target" 0644 <<'EOF'
[Unit]
Description=Anaconda System Services
Requires=basic.target
After=basic.target
AllowIsolate=yes
Wants=anaconda.service NetworkManager.service
EOF
    put "$u/anaconda.service" 0644 <<'EOF'
[Unit]
Description=Anaconda
Wants=anaconda-noshell.service
After=NetworkManager.service NetworkManager-wait-online.service

[Service]
Type=forking
Environment=HOME=/root MALLOC_CHECK_=2 MALLOC_PERTURB_=204 PATH=/usr/bin:/bin:/sbin:/usr/sbin:/mnt/sysimage/bin:/mnt/sysimage/usr/bin:/mnt/sysimage/usr/sbin:/mnt/sysimage/sbin LANG=en_US.UTF-8 GDK_BACKEND=x11 XDG_RUNTIME_DIR=/tmp GIO_USE_VFS=local
WorkingDirectory=/root
ExecStart=/usr/bin/anaconda
KillMode=process
EOF
    put "$u/NetworkManager.service" 0644 <<'EOF'
[Unit]
Description=Network Manager
Wants=network.target
Before=network.target network.service

[Service]
Type=dbus
BusName=org.freedesktop.NetworkManager
ExecStart=/usr/sbin/NetworkManager --no-daemon
# NM doesn't want systemd to kill its children for it
KillMode=process

[Install]
WantedBy=multi-user.target
Alias=dbus-org.freedesktop.NetworkManager.service
Also=NetworkManager-dispatcher.service
EOF
    put "$u/NetworkManager-wait-online.service" 0644 <<'EOF'
[Unit]
Description=Network Manager Wait Online
Requisite=NetworkManager.service
After=NetworkManager.service
Wants=network.target
Before=network.target network-online.target

[Service]
Type=oneshot
ExecStart=/usr/bin/nm-online -s -q --timeout=30

[Install]
WantedBy=multi-user.target
EOF
    put "$u/multi-user.target" 0644 <<'EOF'
[Unit]
Description=Multi-User System
Documentation=man:systemd.special(7)
Requires=basic.target
Conflicts=rescue.service rescue.target
After=basic.target rescue.service rescue.target
AllowIsolate=yes
EOF

    local e=$r/etc/systemd/system
    mkdir -p "$e/multi-user.target.wants"
    ln -s /usr/lib/systemd/system/anaconda.target "$e/default.target"
    ln -s /usr/lib/systemd/system/NetworkManager.service \
        "$e/multi-user.target.wants/NetworkManager.service"
    ln -s /usr/lib/systemd/system/NetworkManager.service \
        "$e/dbus-org.freedesktop.NetworkManager.service"

    # Real stage2 media carry a .pyc and a .pyo beside every .py; the patch
    # must remove the two beside packaging/__init__.py and no other.
    local py=$r/usr/lib64/python2.7/site-packages/pyanaconda
    put "$py/__init__.py" 0644 <<'EOF'
# pyanaconda package (v6build demo stand-in)
EOF
    pyc "$py/__init__.pyc"
    pyc "$py/__init__.pyo"
    mkdir -p "$py/packaging"
    put "$py/packaging/__init__.py" 0644 < "$src/stage2/pyanaconda-packaging-__init__.py"
    pyc "$py/packaging/__init__.pyc"
    pyc "$py/packaging/__init__.pyo"
    put "$py/packaging/yumpayload.py" 0644 <<'EOF'
# pyanaconda.packaging.yumpayload (v6build demo stand-in)
EOF
    pyc "$py/packaging/yumpayload.pyc"
    pyc "$py/packaging/yumpayload.pyo"

    put "$r/etc/os-release" 0644 <<'EOF'
NAME="CentOS Linux"
VERSION="7 (Core)"
ID="centos"
ID_LIKE="rhel fedora"
VERSION_ID="7"
PRETTY_NAME="CentOS Linux 7 (Core)"
ANSI_COLOR="0;31"
CPE_NAME="cpe:/o:centos:centos:7"
HOME_URL="https://www.centos.org/"
BUG_REPORT_URL="https://bugs.centos.org/"

CENTOS_MANTISBT_PROJECT="CentOS-7"
CENTOS_MANTISBT_PROJECT_VERSION="7"
REDHAT_SUPPORT_PRODUCT="centos"
REDHAT_SUPPORT_PRODUCT_VERSION="7"

EOF
    ln -s centos-release "$r/etc/redhat-release"
    put "$r/etc/centos-release" 0644 <<'EOF'
CentOS Linux release 7.2.1511 (Core) 
EOF
    put "$r/etc/sysconfig/network-scripts/ifcfg-lo" 0644 <<'EOF'
DEVICE=lo
IPADDR=127.0.0.1
NETMASK=255.0.0.0
ONBOOT=yes
NAME=loopback
EOF

    # Hardlink pair, as in EL7's tzdata.
    tzif_utc "$r/usr/share/zoneinfo/UTC"
    mkdir -p "$r/usr/share/zoneinfo/Etc"
    ln "$r/usr/share/zoneinfo/UTC" "$r/usr/share/zoneinfo/Etc/UTC"

    # A file of many blocks (~290 KB, compresses to little) and a symlink
    # whose target does not fit in the inode (ext4 "slow" symlink, > 59 bytes).
    mkdir -p "$r/usr/share/v6build-demo"
    seq 1 50000 | put "$r/usr/share/v6build-demo/numbers.txt" 0644
    ln -s /usr/lib64/python2.7/site-packages/pyanaconda/packaging/__init__.py.the-long-way-round \
        "$r/usr/share/v6build-demo/long-symlink"

    # Extended attributes: user.* anywhere; SELinux labels as root.  The
    # patched file carries both, so the build must keep xattrs when it
    # rewrites a file.  The hardlinked pair shares one inode, hence one set.
    xattr "$py/packaging/__init__.py" user.v6build.demo "patch target"
    xattr "$r/etc/os-release" user.v6build.demo "stage2"
    xattr "$r/usr/share/zoneinfo/UTC" user.v6build.demo "hardlinked"
    selinux "$r" system_u:object_r:root_t:s0
    selinux "$r/etc/os-release" system_u:object_r:etc_t:s0
    selinux "$r/usr/bin/bash" system_u:object_r:shell_exec_t:s0
    selinux "$r/usr/bin/anaconda" system_u:object_r:bin_t:s0
    selinux "$u/anaconda.service" system_u:object_r:systemd_unit_file_t:s0
    selinux "$u/basic.target" system_u:object_r:systemd_unit_file_t:s0
    selinux "$py/packaging/__init__.py" system_u:object_r:lib_t:s0
    selinux "$r/usr/libexec/anaconda/dd_list" system_u:object_r:bin_t:s0
}

make_stage2() {
    local r=$work/stage2-root
    local s=$work/stage2-squash
    make_stage2_tree "$r"
    pin_times "$r"

    mkdir -p "$s/LiveOS"
    # EL7's rootfs.img feature set (mke2fs 1.42.9's ext4): no metadata_csum
    # but uninit_bg (group descriptor checksums), no 64bit, no
    # metadata_csum_seed, and no orphan_file where this mke2fs knows it
    # (1.47+).  New mke2fs versions do not turn uninit_bg on by themselves
    # when metadata_csum is off, so it is asked for.  Inode size and count
    # are given explicitly rather than left to the profile.
    local features=^metadata_csum,^64bit,^metadata_csum_seed,uninit_bg
    # Probe: an mke2fs that does not know a feature refuses to clear it.
    truncate -s 4M "$work/probe.img"
    if mkfs.ext4 -q -n -F -O ^orphan_file "$work/probe.img" >/dev/null 2>&1; then
        features=$features,^orphan_file
    fi
    rm -f "$work/probe.img"
    mkfs.ext4 -q -F -L Anaconda -b 4096 -I 256 -N 1024 \
        -O "$features" -U "$EXT4_UUID" \
        -E "hash_seed=$EXT4_HASH_SEED,root_owner=0:0" \
        -d "$r" "$s/LiveOS/rootfs.img" "$EXT4_SIZE" >/dev/null
    # mkfs.ext4 -d copies each file's ctime, which no tool can set on the
    # host (the kernel stamps it with the current time), so the image would
    # carry today's date.  Rewrite every copied inode's ctime to the epoch
    # with debugfs; E2FSPROGS_FAKE_TIME keeps the superblock write time.
    (cd "$r" && find . | sort) \
        | sed -e 's|^\.||' -e 's|^$|/|' \
        | while read -r p; do
            printf 'sif "%s" ctime @%s\n' "$p" "$EPOCH"
        done > "$work/ctime.debugfs"
    debugfs -w -f "$work/ctime.debugfs" "$s/LiveOS/rootfs.img" >/dev/null 2>"$work/debugfs.err" \
        || die "debugfs failed: $(cat "$work/debugfs.err")"
    local fsck
    fsck=$(e2fsck -fn "$s/LiveOS/rootfs.img" 2>&1) \
        || die "e2fsck does not accept the rootfs.img just made:"$'\n'"$fsck"
    pin_times "$s"

    mkdir -p "$out/LiveOS"
    rm -f "$out/LiveOS/squashfs.img"
    # mksquashfs refuses SOURCE_DATE_EPOCH together with explicit times;
    # the explicit options say the same thing and also cover old versions.
    env -u SOURCE_DATE_EPOCH \
        mksquashfs "$s" "$out/LiveOS/squashfs.img" -comp xz -noappend \
        -all-root -mkfs-time "$EPOCH" -all-time "$EPOCH" \
        -no-progress -quiet >/dev/null
}

# ---------------------------------------------------------------- treeinfo

sha256() { sha256sum "$1" | cut -d' ' -f1; }

make_treeinfo() {
    local initrd_sum stage2_sum
    initrd_sum=$(sha256 "$out/images/pxeboot/initrd.img")
    stage2_sum=$(sha256 "$out/LiveOS/squashfs.img")
    # productmd 1.x layout; [general] repeats the old keys that EL7's
    # Anaconda and older tools still read.
    cat > "$out/.treeinfo" <<EOF
[header]
type = productmd.treeinfo
version = 1.2

[release]
name = CentOS
short = CentOS
version = 7

[tree]
arch = x86_64
build_timestamp = $EPOCH
platforms = x86_64
variants = 

[general]
arch = x86_64
family = CentOS
name = CentOS 7
packagedir = 
platforms = x86_64
timestamp = $EPOCH
variant = 
version = 7

[stage2]
mainimage = LiveOS/squashfs.img

[images-x86_64]
initrd = images/pxeboot/initrd.img

[checksums]
LiveOS/squashfs.img = sha256:$stage2_sum
images/pxeboot/initrd.img = sha256:$initrd_sum
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
    printf '%10d  %s  %s\n' "$(stat -c %s "$f")" "$(sha256 "$f")" "${f#./}"
done) >&2
