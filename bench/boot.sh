#!/usr/bin/env bash
# bench/boot.sh: time `v6build boot` to each console marker.
#
# Makes the netboot media with tests/boot/make-boot-media.sh (cached in
# fixtures-gen/boot-media), builds a release from them whose initrd has an
# online hook printing V6TEST-INITRD-ONLINE and whose stage2 has a unit
# printing V6TEST-STAGE2-MARKER (the recipe tests/it/boot.rs builds), then
# boots it REPS times under TCG and prints the median seconds from QEMU's
# start to each marker, as a Markdown table row.
#
# Usage: bench/boot.sh [--reps N] [--accel tcg|kvm]
# Environment: V6BUILD (binary; default: cargo build --release into
# $CARGO_TARGET_DIR, default /work/target-bench).
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
WORK=$BENCH/work/boot
REPS=3
ACCEL=tcg
while [ $# -gt 0 ]; do
    case $1 in
        --reps) REPS=$2; shift ;;
        --accel) ACCEL=$2; shift ;;
        -h|--help) sed -n 2,14p "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
if [ -z "${V6BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release -q -p v6build)
    V6BUILD=$CARGO_TARGET_DIR/release/v6build
fi
V6BUILD=$(realpath "$V6BUILD")

"$ROOT/tests/boot/make-boot-media.sh" >&2
MEDIA=$ROOT/fixtures-gen/boot-media
rm -rf "$WORK"
mkdir -p "$WORK/media/net/images/pxeboot" "$WORK/media/net/LiveOS" "$WORK/files"
for f in images/pxeboot/vmlinuz images/pxeboot/initrd.img LiveOS/squashfs.img; do
    ln "$MEDIA/$f" "$WORK/media/net/$f" 2>/dev/null || cp "$MEDIA/$f" "$WORK/media/net/$f"
done
cat >"$WORK/files/v6test-online.sh" <<'HOOK'
#!/bin/sh
echo "V6TEST-INITRD-ONLINE" >/dev/console
HOOK
cat >"$WORK/files/v6test-marker.service" <<'UNIT'
[Unit]
Description=v6build test marker

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo V6TEST-STAGE2-MARKER >/dev/console'

[Install]
WantedBy=multi-user.target
UNIT
base="http://[2001:db8::20]/boot/bench"
cat >"$WORK/bench.kdl" <<KDL
release "bench" {
    dir "boot/bench"
    epoch 1449187200
}
media "net" {
    initrd "media/net/images/pxeboot/initrd.img"
    stage2 "media/net/LiveOS/squashfs.img"
    kernel "media/net/images/pxeboot/vmlinuz"
}
layer "online-marker" {
    file "/usr/lib/dracut/hooks/initqueue/online/90-v6test.sh" src="files/v6test-online.sh" mode=0o755
}
layer "marker-unit" {
    file "/usr/lib/systemd/system/v6test-marker.service" src="files/v6test-marker.service"
    systemd-enable "v6test-marker.service"
}
initrd from="net" { layers "online-marker"; }
stage2 from="net" { layers "marker-unit"; }
boot base-url="$base" {
    cmdline "root=live:$base/LiveOS/squashfs.img rd.neednet=1 ip=auto6 rd.live.overlay.overlayfs=1"
    expect "V6TEST-INITRD-ONLINE"
    expect "V6TEST-STAGE2-MARKER"
    timeout 1200
}
KDL
cd "$WORK"
v6() { "$V6BUILD" --cache "$WORK/cache" --out "$WORK/out" "$@"; }
v6 -q pin bench.kdl
v6 -q build bench.kdl
for i in $(seq 1 "$REPS"); do
    v6 --json boot --accel "$ACCEL" out/boot/bench >"$WORK/run-$i.json"
done
python3 - "$WORK" "$REPS" "$ACCEL" "$(nproc)" <<'PY'
import json, statistics, sys
work, reps, accel, cores = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
runs = [json.load(open(f"{work}/run-{i}.json")) for i in range(1, reps + 1)]
cols = []
for k in range(len(runs[0]["markers"])):
    cols.append(statistics.median(r["markers"][k]["seconds"] for r in runs))
print("| accel | cores | runs | initrd online hook (s) | stage2 marker unit (s) |")
print("|---|---:|---:|---:|---:|")
print(f"| {accel} | {cores} | {reps} | " + " | ".join(f"{c:.1f}" for c in cols) + " |")
PY
