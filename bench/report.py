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
    ("rewrite", "plain squashfs stage2, full rewrite (xz, 256 KiB blocks)"),
]
# Inputs whose classic row is not the unpack/add/repack pipeline.
CLASSIC_LABEL = {
    "rewrite": "mksquashfs -comp xz -b 256K of the extracted tree",
}
SCENARIOS = [
    ("classic", "classic pipeline (unpack, add, repack)"),
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
    """The speed target of issues 4/5/6 for this row, as (text, check)."""
    if scen in ("classic", "noop", "remote-warm"):
        return "", None
    if inp in INITRD:
        if scen in ("append", "append-warm"):
            return "< 1 s (issue 4)", lambda wall, ratio: wall < 1.0
        return "≤ 0.5× (issue 4)", lambda wall, ratio: ratio <= 0.5
    if inp == "rewrite":
        return "≤ 1.0× mksquashfs (issue 5)", lambda wall, ratio: ratio <= 1.0
    if inp == "el7":
        return "≤ 0.1× (issue 6)", lambda wall, ratio: ratio <= 0.1
    return "≤ 0.1× (issue 5)", lambda wall, ratio: ratio <= 0.1


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
        "| Input | Scenario | Wall (s) | CPU user+sys (s) | Peak RSS (MiB) | v6build/classic (wall) | v6build/classic (CPU) | Target (wall) | Met | Slowest nodes (last run) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for inp, iname in INPUTS:
        classic, _ = load(res, inp, "classic")
        if not classic and not os.path.exists(os.path.join(res, f"{inp}.cold")) \
                and not os.path.exists(os.path.join(res, f"{inp}.cold.fail")):
            continue
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
                out.append(f"| {iname} | {sname} | FAILED ({fails}×) | | | | | {ttext} | no | |")
                continue
            wall = statistics.median(r[0] for r in rows)
            cpu = statistics.median(r[1] for r in rows)
            rss = statistics.median(r[2] for r in rows)
            ratio = wall / cwall if cwall else None
            rtext = "1" if scen == "classic" else (f"{ratio:.3f}×" if ratio is not None else "")
            cratio = cpu / ccpu if ccpu else None
            ctext = "1" if scen == "classic" else (f"{cratio:.3f}×" if cratio is not None else "")
            met = ""
            if check and ratio is not None:
                met = "yes" if check(wall, ratio) else "**no**"
            note = top_nodes(res, inp, scen) if scen != "classic" else ""
            if fails:
                note = f"{fails} run(s) failed; " + note
            n = len(rows)
            out.append(
                f"| {iname} | {sname} | {fmt(wall)} (n={n}) | {fmt(cpu)} | {rss:.0f} | {rtext} | {ctext} | {ttext} | {met} | {note} |"
            )
    runs = []
    for inp, iname in INPUTS:
        mp = os.path.join(res, f"{inp}.meta")
        if os.path.exists(mp):
            with open(mp) as f:
                runs.append(f"- {iname}: measured {f.read().strip()}.")
    return "\n".join(out) + "\n\n" + "\n".join(runs) + "\n"


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
