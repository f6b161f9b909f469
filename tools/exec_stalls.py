#!/usr/bin/env python3
"""First-use stalls in `masep exec` measurements (docs/where-ma-pays.md, measured points).

For each measured trace (`masep exec --trace`, Chrome JSON, times in µs) lists the compute ops
that took more than 3x, and over 300 µs more than, the median of the same op (rank, name,
layer, micro-batch) over the run's decode steps: the executor's first-use GEMM stalls of runs
made before its warm-up covered every GEMM shape (docs/executor.md). With --steps LOG, reads
`"step_ms": [...]` arrays from a `masep exec --json` log (results/exec/*/run-all.log) and
prints, per run, the mean TPOT, the median step (nearest rank) and the steps over 1.15x the
fastest.

    tools/exec_stalls.py TRACE.json ...
    tools/exec_stalls.py --steps results/exec/h100x4-2026-11-27/run-all.log
"""
import collections
import json
import re
import statistics
import sys


def trace_stalls(path):
    with open(path) as f:
        d = json.load(f)
    groups = collections.defaultdict(list)
    for e in d["traceEvents"]:
        if e.get("ph") != "X" or e.get("cat") != "compute":
            continue
        a = e.get("args", {})
        groups[(e["pid"], e["name"], a.get("layer"), a.get("mb"))].append((a.get("step"), e["dur"]))
    stalls = []
    for (rank, name, layer, _), v in groups.items():
        med = statistics.median(x[1] for x in v)
        for step, dur in v:
            if dur > 3 * med and dur - med > 300:
                stalls.append((step, rank, name, layer, dur, med))
    return sorted(stalls)


def step_table(path):
    text = open(path).read()
    pat = re.compile(r'===== (\S+): .*?"tpot_mean_ms": ([\d.]+).*?"step_ms": \[([^\]]*)\]', re.S)
    print("| run | mean TPOT ms | median step ms | steps > 1.15x fastest |")
    print("|---|---:|---:|---:|")
    for m in pat.finditer(text):
        steps = [float(x) for x in m.group(3).split(",")]
        if len(steps) < 2:
            continue
        s = sorted(steps)
        med = s[(len(s) + 1) // 2 - 1]  # nearest rank, as masep's p50
        slow = sum(1 for x in steps if x > 1.15 * s[0])
        print("| %s | %.3f | %.3f | %d of %d |" % (m.group(1), float(m.group(2)), med, slow, len(s)))


def main(argv):
    if len(argv) >= 2 and argv[0] == "--steps":
        for p in argv[1:]:
            step_table(p)
        return 0
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for p in argv:
        st = trace_stalls(p)
        print("%s: %d stalled compute ops" % (p, len(st)))
        for step, rank, name, layer, dur, med in st:
            print("  step %d rank %d %s layer %s: %.0f us (median of its steps %.0f us)" %
                  (step, rank, name, layer, dur, med))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
