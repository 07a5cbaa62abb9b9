#!/usr/bin/env python3
"""bench/report.py: turn bench/run.sh's raw timings into a Markdown table.

    report.py RESULTS_DIR                 print the table
    report.py --splice BOOK MACHINE TABLE replace the text between the bench
                                          markers of BOOK with MACHINE+TABLE

RESULTS_DIR holds one file per input and scenario (INPUT.SCENARIO), one line
per repetition: "wall user sys maxrss_kib" as written by /usr/bin/time -f
'%e %U %S %M'; INPUT.SCENARIO.fail for failed runs; INPUT.SCENARIO.json
for the --json summary of v6build's last run.
"""
import json
import os
import statistics
import sys

INPUTS = [
    ("di-gz", "d-i netboot initrd, gzip -9"),
    ("di-xz", "d-i netboot initrd, xz"),
    ("dracut", "dracut initrd, xz"),
    ("el7", "EL7-shaped stage2 (ext4 in squashfs, xz)"),
    ("plain", "plain squashfs stage2 (xz)"),
    ("el7-xfs", "EL7-shaped stage2, everything on XFS (loop, reflink=1)"),
    ("plain-xfs", "plain squashfs stage2, everything on XFS (loop, reflink=1)"),
    ("rewrite", "plain squashfs stage2, full rewrite (xz, 256 KiB blocks)"),
]
# Inputs whose classic row is not the unpack/add/repack pipeline.
CLASSIC_LABEL = {
    "rewrite": "mksquashfs -comp xz -b 256K of the extracted tree",
}
SCENARIOS = [
    ("classic", "classic pipeline (unpack, add, repack)"),
    ("floor", "floor: `cp` + `sha256sum` of the input image (issue 20)"),
    ("cold", "v6build cold build (empty cache)"),
    ("cold-tree", "v6build cold build, the base being the same tree stored uncompressed (mksquashfs -noI -noD -noF -noX), empty cache"),
    ("noop", "v6build no-op rebuild"),
    ("change", "v6build rebuild after changing one src file"),
    ("add", "v6build add a 1 KiB file, cold cache"),
    ("append", "v6build append mode, cold cache"),
    ("append-warm", "v6build append mode after changing one src file (base already unpacked)"),
    ("remote-warm", "v6build remote warm: empty local cache, every pack a hit in a remote cache (nginx on ::1) that a cold build pushed"),
]
INITRD = {"di-gz", "di-xz", "dracut"}


def target(inp, scen):
    """The speed targets of issues 4/5/6/20 for this row, as (text, check);
    check(wall, ratio to classic, ratio to the floor) says whether all are met
    (a ratio is None when its reference was not measured in this run)."""
    if scen in ("classic", "floor", "remote-warm"):
        return "", None
    if scen == "noop":
        if inp.startswith("el7"):
            return "≤ 0.2 s (issue 20)", lambda wall, ratio, fl: wall <= 0.2
        return "", None
    if inp in INITRD:
        if scen in ("append", "append-warm"):
            return "< 1 s (issue 4)", lambda wall, ratio, fl: wall < 1.0
        return "≤ 0.5× (issue 4)", lambda wall, ratio, fl: None if ratio is None else ratio <= 0.5
    if inp == "rewrite":
        return "≤ 1.0× mksquashfs (issue 5)", lambda wall, ratio, fl: None if ratio is None else ratio <= 1.0
    base = inp.removesuffix("-xfs")
    issue = "issue 6" if base == "el7" else "issue 5"
    floor_row = (base == "el7" and scen == "cold") or (base == "plain" and scen == "add")
    if floor_row:
        def check(wall, ratio, fl):
            oks = [r <= lim for r, lim in ((ratio, 0.1), (fl, 2.0)) if r is not None]
            return all(oks) if oks else None
        return f"≤ 0.1× ({issue}); ≤ 2× floor (issue 20)", check
    return f"≤ 0.1× ({issue})", lambda wall, ratio, fl: None if ratio is None else ratio <= 0.1


def load(res, inp, scen):
    path = os.path.join(res, f"{inp}.{scen}")
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                w, u, s, m = line.split()
                rows.append((float(w), float(u) + float(s), int(m) / 1024.0))
    fails = 0
    fpath = path + ".fail"
    if os.path.exists(fpath):
        with open(fpath) as f:
            fails = sum(1 for _ in f)
    return rows, fails


def fmt(x, unit=""):
    if x >= 100:
        return f"{x:.0f}{unit}"
    if x >= 10:
        return f"{x:.1f}{unit}"
    return f"{x:.2f}{unit}"


def top_nodes(res, inp, scen, n=3):
    path = os.path.join(res, f"{inp}.{scen}.json")
    if not os.path.exists(path):
        return ""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return ""
    data = (data.get("builds") or [{}])[0]
    remote = data.get("remote")
    if isinstance(remote, dict) and "downloaded" in remote:
        cold = load(res, inp, "cold")[0]
        vs = f" (cold local build: {fmt(statistics.median(r[0] for r in cold))} s)" if cold else ""
        return (f"{remote['downloaded'] / 1048576:.1f} MiB downloaded, "
                f"{data.get('nodes_run')} nodes run{vs}")
    ns = data.get("node_seconds")
    if isinstance(ns, dict):
        items = sorted(ns.items(), key=lambda kv: -float(kv[1]))[:n]
        return ", ".join(f"{k} {float(v):.1f} s" for k, v in items if float(v) >= 0.05)
    return ""


def table(res):
    out = [
        "| Input | Scenario | Wall (s) | CPU user+sys (s) | Peak RSS (MiB) | v6build/classic (wall) | v6build/classic (CPU) | v6build/floor (wall) | Target (wall) | Met | Slowest nodes (last run) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for inp, iname in INPUTS:
        classic, _ = load(res, inp, "classic")
        if not classic and not os.path.exists(os.path.join(res, f"{inp}.cold")) \
                and not os.path.exists(os.path.join(res, f"{inp}.cold.fail")):
            continue
        floor, _ = load(res, inp, "floor")
        fwall = statistics.median(r[0] for r in floor) if floor else None
        cwall = statistics.median(r[0] for r in classic) if classic else None
        ccpu = statistics.median(r[1] for r in classic) if classic else None
        for scen, sname in SCENARIOS:
            if scen == "classic":
                sname = CLASSIC_LABEL.get(inp, sname)
            rows, fails = load(res, inp, scen)
            if not rows and not fails:
                continue
            ttext, check = target(inp, scen)
            if not rows:
                out.append(f"| {iname} | {sname} | FAILED ({fails}×) | | | | | | {ttext} | no | |")
                continue
            wall = statistics.median(r[0] for r in rows)
            cpu = statistics.median(r[1] for r in rows)
            rss = statistics.median(r[2] for r in rows)
            ratio = wall / cwall if cwall else None
            rtext = "1" if scen == "classic" else "" if scen == "floor" else (f"{ratio:.3f}×" if ratio is not None else "")
            cratio = cpu / ccpu if ccpu else None
            ctext = "1" if scen == "classic" else "" if scen == "floor" else (f"{cratio:.3f}×" if cratio is not None else "")
            fratio = wall / fwall if fwall and scen not in ("classic", "floor") else None
            ftext = "1" if scen == "floor" else (f"{fratio:.2f}×" if fratio is not None else "")
            met = ""
            if check:
                ok = check(wall, ratio, fratio)
                met = "n/a (reference not run)" if ok is None else "yes" if ok else "**no**"
            note = top_nodes(res, inp, scen) if scen != "classic" else ""
            if fails:
                note = f"{fails} run(s) failed; " + note
            n = len(rows)
            out.append(
                f"| {iname} | {sname} | {fmt(wall)} (n={n}) | {fmt(cpu)} | {rss:.0f} | {rtext} | {ctext} | {ftext} | {ttext} | {met} | {note} |"
            )
    out.append("")
    out.extend(phases(res))
    runs = []
    for inp, iname in INPUTS:
        mp = os.path.join(res, f"{inp}.meta")
        if os.path.exists(mp):
            with open(mp) as f:
                runs.append(f"- {iname}: measured {f.read().strip()}.")
    return "\n".join(out) + "\n\n" + "\n".join(runs) + "\n"


PHASE_ROWS = [("el7", "cold"), ("el7", "noop"), ("plain", "add"), ("el7-xfs", "cold")]


def phases(res):
    """Per-phase breakdown (issue 20) of the last run of a few rows, from
    the `phases` of `node_stats` in v6build's --json summary."""
    out = []
    for inp, scen in PHASE_ROWS:
        path = os.path.join(res, f"{inp}.{scen}.json")
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        data = (data.get("builds") or [{}])[0]
        stats = data.get("node_stats") or {}
        secs = data.get("node_seconds") or {}
        rows = []
        for node in sorted(set(stats) | set(secs)):
            ph = (stats.get(node) or {}).get("phases")
            s = secs.get(node)
            if ph is None and (s is None or float(s) < 0.01):
                continue
            ph = ph or {}
            mib = lambda k: f"{ph[k] / 1048576:.1f}" if k in ph else ""
            sec = lambda k: f"{ph[k]:.3f}" if k in ph else ""
            rows.append(
                f"| {node} | {float(s):.3f} | " if s is not None else f"| {node} | | "
            )
            rows[-1] += f"{mib('bytes_read')} | {mib('bytes_decompressed')} | {mib('bytes_compressed')} | {mib('bytes_written')} | {sec('hash_seconds')} | {sec('copy_seconds')} | {sec('sync_seconds')} |"
        if not rows:
            continue
        total = data.get("seconds")
        head = f"Per-phase breakdown, {inp} / {scen} (last run"
        head += f", {float(total):.2f} s in all):" if total is not None else "):"
        out += [head, "",
                "| Node | Seconds | Read (MiB) | Decompressed (MiB) | Compressed (MiB) | Written (MiB) | Hashing (s) | Copying (s) | fsync (s) |",
                "|---|---|---|---|---|---|---|---|---|"]
        out += rows
        out.append("")
    return out


BEGIN = "<!-- bench:begin (written by bench/run.sh; do not edit by hand) -->"
END = "<!-- bench:end -->"


def splice(book, machine, tab):
    with open(book) as f:
        text = f.read()
    with open(machine) as f:
        m = f.read()
    with open(tab) as f:
        t = f.read()
    block = f"{BEGIN}\n{m}\n{t}{END}"
    if BEGIN in text and END in text:
        pre = text[: text.index(BEGIN)]
        post = text[text.index(END) + len(END):]
        text = pre + block + post
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = book + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, book)


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--splice":
        splice(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 2:
        sys.stdout.write(table(sys.argv[1]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
