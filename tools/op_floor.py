#!/usr/bin/env python3
"""Where a measured (or simulated) run loses time against its memory floor, per op name.

usage: tools/op_floor.py TRACE.json [--copy-gbps 3000] [--rank 0]

Reads a masep Chrome trace (`masep exec --trace` or `masep sim --trace`), sums each compute
op name's durations, bytes (the Program's hbm_bytes) and FLOPs over the run, and prints per
name: count, total time, share of the compute time, achieved GB/s and its share of the copy
bandwidth (the executor's roofline ceiling, printed by `masep exec` as "copy bandwidth"), and
the time lost against that floor. Communication ops are listed apart (no HBM floor).
"""
import argparse
import json
import sys
from collections import defaultdict


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("trace")
    ap.add_argument("--copy-gbps", type=float, default=3000.0,
                    help="copy bandwidth in GB/s (default 3000, an H100 SXM's measured copy)")
    ap.add_argument("--rank", type=int, default=None, help="only this rank (pid); default all")
    a = ap.parse_args()
    try:
        with open(a.trace) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"op_floor.py: {a.trace}: {e}")
    events = doc["traceEvents"] if isinstance(doc, dict) else doc
    agg = defaultdict(lambda: [0, 0.0, 0.0, 0.0])  # count, us, bytes, flops
    comm = defaultdict(lambda: [0, 0.0, 0.0])
    for e in events:
        if e.get("ph") != "X" or "args" not in e:
            continue
        if a.rank is not None and e.get("pid") != a.rank:
            continue
        args = e["args"]
        if e.get("cat") == "comm":
            c = comm[e["name"]]
            c[0] += 1
            c[1] += e.get("dur", 0.0)
            c[2] += args.get("bytes", 0)
            continue
        r = agg[e["name"]]
        r[0] += 1
        r[1] += e.get("dur", 0.0)
        r[2] += args.get("bytes", 0)
        r[3] += args.get("flops", 0.0)
    total = sum(r[1] for r in agg.values()) or 1.0
    print(f"{'op':<18}{'count':>7}{'ms':>10}{'share':>8}{'GB/s':>9}{'% copy':>8}{'lost ms':>9}")
    lost_all = 0.0
    for name, (n, us, by, fl) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        gbps = by / (us * 1e3) if us > 0 else 0.0
        floor_us = by / (a.copy_gbps * 1e3)
        lost = max(0.0, us - floor_us) / 1e3
        lost_all += lost
        print(f"{name:<18}{n:>7}{us / 1e3:>10.3f}{100 * us / total:>7.1f}%{gbps:>9.0f}"
              f"{100 * gbps / a.copy_gbps:>7.1f}%{lost:>9.3f}")
    print(f"{'compute total':<18}{'':>7}{total / 1e3:>10.3f}{'':>8}{'':>9}{'':>8}{lost_all:>9.3f}")
    for name, (n, us, by) in sorted(comm.items(), key=lambda kv: -kv[1][1]):
        print(f"{name:<18}{n:>7}{us / 1e3:>10.3f}  (communication, {by / 1e9:.3f} GB)")


if __name__ == "__main__":
    main()
