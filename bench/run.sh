#!/usr/bin/env bash
# bench/run.sh: time v6build against the classic tools on realistic inputs.
#
# Builds its inputs with the classic tools into bench/work/ (kept between
# runs), then, for each input, alternates the classic pipeline with the
# v6build scenarios for REPS repetitions and reports medians of wall time,
# CPU time (user+sys) and peak RSS, with the ratio v6build/classic. The
# table is printed and written between the bench markers of
# book/src/performance.md.
#
# Usage: bench/run.sh [--quick] [--reps N] [--only LIST] [--scenarios LIST]
#                     [--inputs-only] [--no-book]
#   --quick     one repetition, no padding of the stage2 tree (minbase only)
#   --reps N    repetitions per scenario (default 3)
#   --only L    comma-separated inputs: di-gz,di-xz,dracut,el7,plain,rewrite
#   --scenarios L  comma-separated scenarios to run (default: all), e.g.
#               floor,cold,noop,add for the floor rows of issue 20 without
#               the classic pipeline; also V6BENCH_SCENARIOS
#   --inputs-only  make the inputs and stop
#   --xfs       also run the el7/plain stage2 scenarios with the media, the
#               cache, the output and the scratch dir on XFS (a loop-mounted
#               image under bench/work; rows el7-xfs, plain-xfs)
#   --no-book   do not rewrite book/src/performance.md
# Needs root (loop mount for the classic EL7 pipeline, debootstrap).
# Environment: V6BUILD (binary; default built with cargo into
# $CARGO_TARGET_DIR, default /work/target-bench).
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
WORK=$BENCH/work
REPS=3
QUICK=0
ONLY="di-gz,di-xz,dracut,el7,plain,rewrite"
BOOK=1
SCENS=${V6BENCH_SCENARIOS:-all}
INPUTS_ONLY=0
XFS=0
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1; REPS=1 ;;
        --reps) REPS=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --scenarios) SCENS=$2; shift ;;
        --inputs-only) INPUTS_ONLY=1 ;;
        --xfs) XFS=1 ;;
        --no-book) BOOK=0 ;;
        -h|--help) sed -n 2,26p "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }
scen() { [ "$SCENS" = all ] || [[ ",$SCENS," == *",$1,"* ]]; }
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

[ "$(id -u)" = 0 ] || { echo "bench/run.sh needs root (loop mount, debootstrap)" >&2; exit 1; }
for t in /usr/bin/time cpio gzip xz mksquashfs unsquashfs mkfs.ext4 python3; do
    command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done

mkdir -p "$WORK"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
if [ $INPUTS_ONLY = 1 ]; then V6BUILD=/bin/true
elif [ -z "${V6BUILD:-}" ]; then
    log "building v6build (release) into $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release -q -p v6build)
    V6BUILD=$CARGO_TARGET_DIR/release/v6build
fi
V6BUILD=$(realpath "$V6BUILD")
JOBS=$(nproc)

# ---------------------------------------------------------------- inputs
MEDIA=$WORK/media
SUFFIX=$([ $QUICK = 1 ] && echo -quick || echo "")
DI_GZ=/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64/initrd.gz
mkdir -p "$MEDIA"/{di-gz,di-xz,dracut,el7$SUFFIX,plain$SUFFIX}
SKIPPED=()

if want di-gz || want di-xz; then
    [ -f "$DI_GZ" ] || { echo "missing $DI_GZ (apt-get install debian-installer-12-netboot-amd64)" >&2; exit 1; }
    [ -f "$MEDIA/di-gz/initrd.img" ] || cp "$DI_GZ" "$MEDIA/di-gz/initrd.img"
    if want di-xz && [ ! -f "$MEDIA/di-xz/initrd.img" ]; then
        log "making the xz variant of the d-i initrd"
        gzip -dc "$DI_GZ" | xz --check=crc32 --lzma2=dict=1MiB > "$MEDIA/di-xz/initrd.img.tmp"
        mv "$MEDIA/di-xz/initrd.img.tmp" "$MEDIA/di-xz/initrd.img"
    fi
fi

if want dracut && [ ! -f "$MEDIA/dracut/initrd.img" ]; then
    if ! command -v dracut >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q dracut-core >/dev/null 2>&1 || true
    fi
    if command -v dracut >/dev/null; then
        log "making a dracut initrd (xz, no early microcode)"
        if dracut --no-kernel --no-hostonly --no-early-microcode --xz --force \
            "$MEDIA/dracut/initrd.img.tmp" >"$WORK/dracut.log" 2>&1; then
            mv "$MEDIA/dracut/initrd.img.tmp" "$MEDIA/dracut/initrd.img"
        else
            SKIPPED+=("dracut: dracut failed, see bench/work/dracut.log")
        fi
    else
        SKIPPED+=("dracut: dracut could not be installed")
    fi
fi
want dracut && [ ! -f "$MEDIA/dracut/initrd.img" ] && ONLY=${ONLY//dracut/}

# The stage2 tree: debootstrap minbase, or the host's /usr as a fallback,
# padded with real files from the host's /usr to PAD_MIB.
PAD_MIB=$([ $QUICK = 1 ] && echo 0 || echo 320)
TREE=$WORK/tree$SUFFIX
if (want el7 || want plain) && [ ! -f "$TREE.done" ]; then
    rm -rf "$TREE"
    if [ -d "$WORK/tree.base" ]; then :
    else
        command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null 2>&1 || true
        # The machine's own mirror: a `deb` line or a deb822 `URIs:` field,
        # never a comment (Debian's images name a snapshot.debian.org URL
        # in one, which may be unreachable).
        MIRROR=$(grep -hvE '^[[:space:]]*#' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
            grep -oE 'https?://[^ ]*debian/?' | grep -v security | head -1 || true)
        MIRROR=${MIRROR:-http://deb.debian.org/debian}
        log "debootstrap --variant=minbase bookworm from $MIRROR"
        if debootstrap --variant=minbase bookworm "$WORK/tree.base.tmp" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
            mv "$WORK/tree.base.tmp" "$WORK/tree.base"
        else
            # Not all of /usr: on a build host it is gigabytes, and the
            # tree is meant to be a minbase-sized system before padding.
            log "debootstrap failed (bench/work/debootstrap.log); using a copy of the host's /etc, /usr/bin, /usr/sbin, /usr/lib/systemd"
            rm -rf "$WORK/tree.base.tmp"; mkdir -p "$WORK/tree.base/usr/lib"
            cp -a /etc "$WORK/tree.base/"
            cp -a /usr/bin /usr/sbin "$WORK/tree.base/usr/"
            cp -a /usr/lib/systemd "$WORK/tree.base/usr/lib/"
            BASE_KIND="copy of the host's /etc, /usr/bin, /usr/sbin, /usr/lib/systemd (debootstrap failed)"
            echo "$BASE_KIND" > "$WORK/tree.base.kind"
        fi
    fi
    cp -a "$WORK/tree.base" "$TREE"
    if [ "$PAD_MIB" -gt 0 ]; then
        # Real files from the host, in a stable order, until the tree
        # holds PAD_MIB (tar keeps their modes, owners and hardlinks).
        need=$(( (PAD_MIB - $(du -sm "$TREE" | cut -f1)) * 1048576 ))
        if [ "$need" -gt 0 ]; then
            mkdir -p "$TREE/usr/share/v6bench-pad"
            find /usr/share/locale /usr/share/doc /usr/lib/python3 /usr/share/perl /usr/share -xdev -type f -printf '%s %p\n' 2>/dev/null \
                | awk -v need="$need" '!seen[$2]++ { print substr($0, index($0, " ") + 1); sum += $1; if (sum >= need) exit }' \
                > "$WORK/pad.list" || true  # find gets SIGPIPE when awk has enough
            tar -cf - -P -T "$WORK/pad.list" 2>/dev/null | tar -xf - -C "$TREE/usr/share/v6bench-pad"
        fi
    fi
    touch "$TREE.done"
fi
[ -f "$WORK/tree.base.kind" ] && BASE_KIND=$(cat "$WORK/tree.base.kind")
TREE_MIB=$( [ -d "$TREE" ] && du -sm "$TREE" | cut -f1 || echo 0)
TREE_FILES=$( [ -d "$TREE" ] && find "$TREE" | wc -l || echo 0)

if want el7 && [ ! -f "$MEDIA/el7$SUFFIX/squashfs.img" ]; then
    # Image size: the tree plus a third, rounded up to 64 MiB, at least 1 GiB
    # for the full run: mostly empty, like EL7's sparse 2 GiB rootfs.img.
    SZ=$(( (TREE_MIB * 4 / 3 / 64 + 1) * 64 ))
    [ $QUICK = 0 ] && [ $SZ -lt 1024 ] && SZ=1024
    log "mkfs.ext4 -d ($SZ MiB) and mksquashfs -comp xz of LiveOS/rootfs.img"
    rm -rf "$WORK/el7-stage" && mkdir -p "$WORK/el7-stage/LiveOS"
    mkfs.ext4 -q -F -L Anaconda -b 4096 -d "$TREE" -O ^metadata_csum,^64bit,^metadata_csum_seed,^orphan_file \
        -E root_owner=0:0 "$WORK/el7-stage/LiveOS/rootfs.img" "${SZ}M"
    mksquashfs "$WORK/el7-stage" "$MEDIA/el7$SUFFIX/squashfs.img.tmp" -comp xz -noappend -quiet -no-progress
    mv "$MEDIA/el7$SUFFIX/squashfs.img.tmp" "$MEDIA/el7$SUFFIX/squashfs.img"
    rm -rf "$WORK/el7-stage"
fi
if want plain && [ ! -f "$MEDIA/plain$SUFFIX/squashfs.img" ]; then
    log "mksquashfs -comp xz of the tree (plain stage2)"
    mksquashfs "$TREE" "$MEDIA/plain$SUFFIX/squashfs.img.tmp" -comp xz -noappend -quiet -no-progress
    mv "$MEDIA/plain$SUFFIX/squashfs.img.tmp" "$MEDIA/plain$SUFFIX/squashfs.img"
fi

[ $INPUTS_ONLY = 1 ] && { log "inputs made under $MEDIA"; exit 0; }

# --------------------------------------------------------------- recipes
# One recipe per input and variant, generated here; the layers are the
# demo's (recipes/common.kdl) with their files copied from recipes/files,
# so that the "change one src file" scenario never touches the repository.
RCP=$WORK/recipes
mkdir -p "$RCP/files"
cp "$ROOT"/recipes/files/* "$RCP/files/"
head -c 1024 /usr/share/common-licenses/GPL-3 > "$RCP/files/added-1k"

initrd_recipe() { # name media-file compress variant
    local name=$1 img=$2 comp=$3 variant=$4 layers='"v6-sleep-hook"' extra=""
    [ "$variant" = add ] && layers='"v6-sleep-hook" "bench-add"'
    [ "$variant" = append ] && extra="    append"
    cat > "$RCP/$name-$variant.kdl" <<EOF
// Generated by bench/run.sh.
allow-outside "$(dirname "$img")"
release "bench-$name-$variant" {
    dir "$name-$variant"
    epoch 1449187200
}
media "m" {
    initrd "$img"
}
layer "v6-sleep-hook" {
    file "/usr/lib/dracut/hooks/initqueue/online/10-network-sleep-fix.sh" src="files/10-network-sleep-fix.sh" mode=0o755
}
layer "bench-add" {
    file "/usr/share/v6bench/added-1k" src="files/added-1k"
}
initrd from="m" {
    layers $layers
    $comp
$extra
}
EOF
    "$V6BUILD" -q pin "$RCP/$name-$variant.kdl" >/dev/null
}

stage2_recipe() { # name media-file variant
    local name=$1 img=$2 variant=$3 layers='"nm-v6-only" "bench-symlink"' extra=""
    [ "$variant" = add ] && layers='"nm-v6-only" "bench-symlink" "bench-add"'
    # Another block size: nothing of the base can be copied, every block
    # is compressed (issue 5's "cold full rewrite").
    [ "$variant" = rewrite ] && extra='    compress "xz"
    block-size "256K"'
    cat > "$RCP/$name-$variant.kdl" <<EOF
// Generated by bench/run.sh. The demo's stage2 layer nm-v6-only; the
// treeinfo patch does not apply to a Debian tree, so a symlink stands in.
allow-outside "$(dirname "$img")"
release "bench-$name-$variant" {
    dir "$name-$variant"
    epoch 1449187200
}
media "m" {
    stage2 "$img"
}
layer "nm-v6-only" {
    file "/usr/lib/systemd/system/fix-ipv6.service" src="files/fix-ipv6.service"
    file "/usr/libexec/fix-ipv6-only.sh" src="files/fix-ipv6-only.sh" mode=0o755
    systemd-enable "fix-ipv6.service"
}
layer "bench-symlink" {
    symlink "/usr/libexec/fix-ipv6" target="fix-ipv6-only.sh"
}
layer "bench-add" {
    file "/usr/share/v6bench/added-1k" src="files/added-1k"
}
stage2 from="m" {
    layers $layers
$extra
}
EOF
    "$V6BUILD" -q pin "$RCP/$name-$variant.kdl" >/dev/null
}

WANTED_BY=$(sed -n 's/^WantedBy=//p' "$RCP/files/fix-ipv6.service" | head -1)

# ------------------------------------------------------------ measuring
# Results of inputs not run this time are kept, so that a partial run
# (--only) updates its rows and leaves the others as last measured.
RES=$WORK/results
mkdir -p "$RES"
rm -f "$RES/.t" "$RES/.out" "$RES/.err"
for i in ${ONLY//,/ }; do rm -f "$RES/$i".*; [ $XFS = 1 ] && rm -f "$RES/$i-xfs".*; done
SCR=$WORK/scratch
OUT=$WORK/out
CACHE=$WORK/cache

# measure INPUT SCENARIO CMD...: one timed run; appends "wall user sys rss"
measure() {
    local input=$1 scen=$2; shift 2
    local tf=$RES/.t
    local rc=0
    /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$RES/.out" 2>"$RES/.err" || rc=$?
    if [ $rc != 0 ]; then
        log "FAILED ($rc): $input / $scen: $(tail -3 "$RES/.err" | tr '\n' ' ')"
        echo "FAIL $(tail -c 600 "$RES/.err" | tr '\n' ' ')" >> "$RES/$input.$scen.fail"
        return 0
    fi
    tail -1 "$tf" >> "$RES/$input.$scen"
    if [ "${1##*/}" = v6build ]; then
        cp "$RES/.out" "$RES/$input.$scen.json"
    fi
    log "$input / $scen: $(tail -1 "$tf")"
}

v6() { # recipe [cold]
    [ "${2:-}" = cold ] && rm -rf "$CACHE"
    measure "$CUR" "$SCEN" "$V6BUILD" -j "$JOBS" --json build "$1" --cache "$CACHE" --out "$OUT"
}

# Classic initrd: unpack, add the demo hook, repack with the same compressor.
classic_initrd() { # media comp(gz|xz)
    local dec=$([ "$2" = gz ] && echo "gzip -dc" || echo "xz -dc")
    local enc=$([ "$2" = gz ] && echo "gzip -9 -n" || echo "xz --check=crc32 --lzma2=dict=1MiB")
    cat > "$WORK/classic-initrd.sh" <<EOF
set -euo pipefail
rm -rf "$SCR" && mkdir -p "$SCR/root" && cd "$SCR/root"
$dec "$1" | cpio -id --quiet
install -D -m 0755 "$RCP/files/10-network-sleep-fix.sh" usr/lib/dracut/hooks/initqueue/online/10-network-sleep-fix.sh
find . | cpio -o -H newc --quiet | $enc > "$SCR/initrd.img"
EOF
    measure "$CUR" classic bash "$WORK/classic-initrd.sh"
}

# Classic stage2: unsquashfs, (loop-mount rootfs.img,) copy in, mksquashfs.
classic_stage2() { # media el7|plain
    cat > "$WORK/classic-stage2.sh" <<EOF
set -euo pipefail
rm -rf "$SCR" && mkdir -p "$SCR"
unsquashfs -q -n -d "$SCR/sq" "$1" >/dev/null
if [ "$2" = el7 ]; then
    mkdir -p "$SCR/mnt"
    mount -o loop "$SCR/sq/LiveOS/rootfs.img" "$SCR/mnt"
    T="$SCR/mnt"
else
    T="$SCR/sq"
fi
install -D -m 0644 "$RCP/files/fix-ipv6.service" "\$T/usr/lib/systemd/system/fix-ipv6.service"
install -D -m 0755 "$RCP/files/fix-ipv6-only.sh" "\$T/usr/libexec/fix-ipv6-only.sh"
mkdir -p "\$T/etc/systemd/system/$WANTED_BY.wants"
ln -sf /usr/lib/systemd/system/fix-ipv6.service "\$T/etc/systemd/system/$WANTED_BY.wants/fix-ipv6.service"
ln -sf fix-ipv6-only.sh "\$T/usr/libexec/fix-ipv6"
if [ "$2" = el7 ]; then umount "$SCR/mnt"; fi
mksquashfs "$SCR/sq" "$SCR/squashfs.img" -comp xz -noappend -quiet -no-progress
EOF
    measure "$CUR" classic bash "$WORK/classic-stage2.sh"
}

# The physical floor of issue 20: `cp` of the image plus `sha256sum` of
# the copy (what publishing it takes at least), in one timed script.
floor() { # media
    mkdir -p "$SCR"
    cat > "$WORK/floor.sh" <<EOF
set -euo pipefail
cp "$1" "$SCR/floor.img"
sha256sum "$SCR/floor.img" >/dev/null
EOF
    measure "$CUR" floor bash "$WORK/floor.sh"
    rm -f "$SCR/floor.img"
}

bump() { # file: a real one-line change, different on every call
    echo "# bench edit $(date +%s%N)" >> "$1"
}

meta() { # input: when, which binary, load average at the start
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), v6build binary built $(date -u -r "$V6BUILD" '+%H:%M UTC') (HEAD was $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && [ -n "$(git status --porcelain --untracked-files=no)" ] && echo ' with uncommitted changes') at the run; others commit concurrently), load average $(cut -d' ' -f1-3 /proc/loadavg) at start" > "$RES/$1.meta"
}

run_initrd() { # name media comp-kind(gz|xz)
    CUR=$1; meta "$1"
    local comp
    if [ "$3" = gz ]; then comp='compress "gzip" level=9 threads='"$JOBS"
    else comp='compress "xz" level=6 threads='"$JOBS"; fi
    for v in base add append; do initrd_recipe "$1" "$2" "$comp" $v; done
    for r in $(seq "$REPS"); do
        log "== $1 repetition $r/$REPS"
        SCEN=classic; classic_initrd "$2" "$3"
        cp "$ROOT/recipes/files/10-network-sleep-fix.sh" "$RCP/files/"
        SCEN=cold; v6 "$RCP/$1-base.kdl" cold
        SCEN=noop; v6 "$RCP/$1-base.kdl"
        bump "$RCP/files/10-network-sleep-fix.sh"
        SCEN=change; v6 "$RCP/$1-base.kdl"
        SCEN=append; v6 "$RCP/$1-append.kdl" cold
        bump "$RCP/files/10-network-sleep-fix.sh"
        SCEN=append-warm; v6 "$RCP/$1-append.kdl"
    done
    cp "$ROOT/recipes/files/10-network-sleep-fix.sh" "$RCP/files/"
    rm -rf "$CACHE" "$OUT" "$SCR"
}

# The remote cache of issue 18: an nginx (WebDAV PUT) on ::1 with its
# files in $WORK/nginx, started for the EL7 row and stopped on exit.
NGINX_PID=""
start_nginx() {
    local d=$WORK/nginx port
    rm -rf "$d" && mkdir -p "$d/www/cache" "$d/body" "$d/keys"
    port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1",0)); print(s.getsockname()[1])')
    cat > "$d/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1;
pid $d/nginx.pid; error_log $d/error.log;
events { worker_connections 256; }
http {
    access_log off; client_body_temp_path $d/body; client_max_body_size 0;
    proxy_temp_path $d/p; fastcgi_temp_path $d/f; uwsgi_temp_path $d/u; scgi_temp_path $d/s;
    server { listen [::1]:$port; root $d/www;
        location /cache/ { dav_methods PUT; create_full_put_path on; } }
}
EOF
    nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" & NGINX_PID=$!
    trap '[ -n "$NGINX_PID" ] && kill $NGINX_PID 2>/dev/null || true' EXIT
    REMOTE=http://[::1]:$port/cache
    "$V6BUILD" key generate bench --dir "$d/keys" > "$d/keys/public"
    sleep 1
}

run_stage2() { # name media el7|plain
    CUR=$1; meta "$1"
    for v in base add; do stage2_recipe "$1" "$2" $v; done
    local remote=0
    if [ "$1" = el7 ] && command -v nginx >/dev/null; then start_nginx; remote=1; fi
    for r in $(seq "$REPS"); do
        log "== $1 repetition $r/$REPS"
        if scen classic; then SCEN=classic; classic_stage2 "$2" "$3"; fi
        rm -rf "$SCR"
        # Issue 20's physical floor: copy the image once and hash it once.
        if scen floor; then SCEN=floor; floor "$2"; fi
        cp "$ROOT/recipes/files/fix-ipv6-only.sh" "$RCP/files/"
        if scen cold || scen noop || scen change || scen remote-warm; then
            SCEN=cold; v6 "$RCP/$1-base.kdl" cold
        fi
        if scen noop; then SCEN=noop; v6 "$RCP/$1-base.kdl"; fi
        if scen change; then
            bump "$RCP/files/fix-ipv6-only.sh"
            SCEN=change; v6 "$RCP/$1-base.kdl"
        fi
        if scen add; then SCEN=add; v6 "$RCP/$1-add.kdl" cold; fi
        if [ $remote = 1 ] && scen remote-warm; then
            # Push what the cold build made (untimed), then build from an
            # empty cache with the remote alone. Own out dir: the no-op
            # row's release (and its identity records) stay untouched.
            "$V6BUILD" -q build --cache "$CACHE" --out "$OUT.remote" --remote "$REMOTE" --remote-push \
                --sign-key "$WORK/nginx/keys/bench.secret" "$RCP/$1-base.kdl"
            rm -rf "$CACHE.remote"
            SCEN=remote-warm; measure "$CUR" "$SCEN" "$V6BUILD" -j "$JOBS" --json build "$RCP/$1-base.kdl" \
                --cache "$CACHE.remote" --out "$OUT.remote" --remote "$REMOTE" \
                --trusted-key "$(cat "$WORK/nginx/keys/public")"
            rm -rf "$CACHE.remote" "$OUT.remote"
        fi
    done
    cp "$ROOT/recipes/files/fix-ipv6-only.sh" "$RCP/files/"
    rm -rf "$CACHE" "$OUT" "$SCR"
}

# Issue 5: a cold full rewrite against mksquashfs alone, same tree, same
# block size, all cores. The tree is extracted once, untimed.
run_rewrite() { # media
    CUR=rewrite; meta rewrite
    stage2_recipe rewrite "$1" rewrite
    rm -rf "$SCR" && mkdir -p "$SCR"
    unsquashfs -q -n -d "$SCR/sq" "$1" >/dev/null
    # The same tree as mksquashfs gets it, but as an image: stored with
    # no compression at all (untimed), so that v6build's input costs what
    # reading a directory costs mksquashfs.
    mksquashfs "$SCR/sq" "$SCR/tree.img" -noI -noD -noF -noX -noappend -quiet -no-progress
    stage2_recipe rewritetree "$SCR/tree.img" rewrite
    # At most two repetitions whatever --reps says: one takes ~125 s
    # (three full xz compressions of the tree), and three would break the
    # 20-minute budget of issue 8. Each is within a few percent of
    # mksquashfs, so one alone would say little.
    local r
    for r in $(seq "$(( REPS < 2 ? REPS : 2 ))"); do
        log "== rewrite repetition $r"
        SCEN=classic; measure rewrite classic mksquashfs "$SCR/sq" "$SCR/out.img" -comp xz -b 256K -noappend -quiet -no-progress
        rm -f "$SCR/out.img"
        SCEN=cold; v6 "$RCP/rewrite-rewrite.kdl" cold
        SCEN=cold-tree; v6 "$RCP/rewritetree-rewrite.kdl" cold
    done
    rm -rf "$CACHE" "$OUT" "$SCR"
}

START=$(date -u +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
want di-gz && run_initrd di-gz "$MEDIA/di-gz/initrd.img" gz
want di-xz && run_initrd di-xz "$MEDIA/di-xz/initrd.img" xz
want dracut && [ -f "$MEDIA/dracut/initrd.img" ] && run_initrd dracut "$MEDIA/dracut/initrd.img" xz
want el7 && run_stage2 el7 "$MEDIA/el7$SUFFIX/squashfs.img" el7
want plain && run_stage2 plain "$MEDIA/plain$SUFFIX/squashfs.img" plain
if [ $XFS = 1 ] && (want el7 || want plain); then
    # The same scenarios with every file they touch on XFS (reflink=1):
    # copy_file_range may share blocks there instead of copying them.
    command -v mkfs.xfs >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q xfsprogs >/dev/null 2>&1 || true
    XMNT=$WORK/xfs-mnt
    mkdir -p "$XMNT"
    mountpoint -q "$XMNT" || {
        rm -f "$WORK/xfs.img"; truncate -s 4G "$WORK/xfs.img"
        mkfs.xfs -q -f -m reflink=1 "$WORK/xfs.img"
        mount -o loop "$WORK/xfs.img" "$XMNT"
    }
    trap 'umount "$XMNT" 2>/dev/null || true' EXIT
    SCR=$XMNT/scratch OUT=$XMNT/out CACHE=$XMNT/cache
    mkdir -p "$XMNT/media" "$XMNT/recipes"
    cp -r "$RCP/files" "$XMNT/recipes/"
    RCP_EXT4=$RCP; RCP=$XMNT/recipes
    for i in el7 plain; do
        want $i || continue
        mkdir -p "$XMNT/media/$i"
        cp "$MEDIA/$i$SUFFIX/squashfs.img" "$XMNT/media/$i/squashfs.img"
        run_stage2 "$i-xfs" "$XMNT/media/$i/squashfs.img" "$i"
    done
    RCP=$RCP_EXT4
    umount "$XMNT"; trap - EXIT
fi
want rewrite && run_rewrite "$MEDIA/plain$SUFFIX/squashfs.img"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(( $(date -u +%s) - START ))

# -------------------------------------------------------------- report
size_of() { [ -f "$1" ] && du -m --apparent-size "$1" | cut -f1 || echo "-"; }
{
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); total run time ${ELAPSED} s; $REPS repetition(s) per scenario$([ $QUICK = 1 ] && echo ' (--quick)')."
    echo "- Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/{print $2}') GiB memory; load average before/after: $LOAD_BEFORE / $LOAD_AFTER."
    echo "- v6build: $("$V6BUILD" --version), release binary built $(date -u -r "$V6BUILD" '+%Y-%m-%d %H:%M UTC') from the working tree, \`-j $JOBS\`."
    echo "- Tools: $(mksquashfs -version 2>&1 | head -1), $(cpio --version | head -1), $(gzip --version | head -1), $(xz --version | head -1), $(mkfs.ext4 -V 2>&1 | head -1), kernel $(uname -r)."
    echo "- Inputs: d-i netboot initrd.gz $(size_of "$MEDIA/di-gz/initrd.img") MiB (gzip) and its xz recompression $(size_of "$MEDIA/di-xz/initrd.img") MiB; dracut initrd $(size_of "$MEDIA/dracut/initrd.img") MiB (xz);"
    echo "  stage2 tree ${TREE_MIB} MiB, ${TREE_FILES} entries (${BASE_KIND:-debootstrap minbase bookworm}, padded with host files from /usr); EL7-shaped squashfs.img $(size_of "$MEDIA/el7$SUFFIX/squashfs.img") MiB; plain squashfs.img $(size_of "$MEDIA/plain$SUFFIX/squashfs.img") MiB."
    for s in "${SKIPPED[@]}"; do echo "- Skipped: $s"; done
} > "$RES/machine.md"
python3 "$BENCH/report.py" "$RES" > "$RES/table.md"
cat "$RES/machine.md"; echo; cat "$RES/table.md"

if [ $BOOK = 1 ]; then
    python3 "$BENCH/report.py" --splice "$ROOT/book/src/performance.md" "$RES/machine.md" "$RES/table.md"
    log "wrote book/src/performance.md"
fi
