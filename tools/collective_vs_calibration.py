#!/usr/bin/env python3
"""Compares `masep collective` (NCCL model, --graph, and the phases model) with the NCCL comm
tables of a calibration file, point by point, and prints a Markdown table plus the median and
worst |error| above and below 64 KB. Nothing is fitted to CALIBRATION: it only checks the model
(the achieved-time constants of nccl_model.cpp were fitted on other hosts' tables).

Then the calibrated path (--calibration), out of sample two ways: (1) in size, every interior
point of a table predicted from a copy of the file without that point; (2) in GPU count, every
4-GPU point predicted from a copy holding only the 2-GPU tables (NCCL's model carries the
measured/model ratio across group sizes). The launch section's event overhead, which the
calibrated path adds for the executor's event pairs, is subtracted to compare with the tables.

usage: tools/collective_vs_calibration.py [CALIBRATION] [TOPOLOGY] [MASEP]
defaults: sim/calibration/h200.yaml host-4xh200 build-cpu/tools/masep
(docs/simulator-model.md, "Checked against masep's own NCCL measurements").
"""
import os
import statistics
import subprocess
import sys
import tempfile

import yaml

cal_path = sys.argv[1] if len(sys.argv) > 1 else "sim/calibration/h200.yaml"
topo = sys.argv[2] if len(sys.argv) > 2 else "host-4xh200"
masep = sys.argv[3] if len(sys.argv) > 3 else "build-cpu/tools/masep"
OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")


def run(op, n, size, extra):
    out = subprocess.run([masep, "collective", "-t", topo, "--op", op, "--gpus", str(n), "-b",
                          str(size), "-e", str(size)] + extra, capture_output=True, text=True,
                         check=True).stdout
    f = [l for l in out.splitlines() if l.strip().startswith(str(size))][0].split()
    return float(f[4]), (f[7] + " " + f[8]) if len(f) > 8 else ""


rows = []
for t in yaml.safe_load(open(cal_path))["comm"]:
    if t["op"] not in OPS:
        continue
    for size, ns in t["points"]:
        m = ns / 1e3
        g, choice = run(t["op"], t["ranks"], size, ["--graph"])
        ph, _ = run(t["op"], t["ranks"], size, ["--model", "phases"])
        rows.append((t["op"], t["ranks"], size, m, g, (g - m) / m * 100, choice, ph,
                     (ph - m) / m * 100))
print("| op | GPUs | size (B) | measured (µs) | NCCL model, graph (µs) | error | choice "
      "| phases model (µs) | error |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print("| %s | %d | %d | %.1f | %.1f | %+.0f%% | %s | %.1f | %+.0f%% |" % r)
for name, idx in (("nccl", 5), ("phases", 8)):
    big = [abs(r[idx]) for r in rows if r[2] >= 65536]
    small = [abs(r[idx]) for r in rows if r[2] < 65536]
    print("%s: >=64KB median |err| %.1f%% worst %.1f%%; <64KB median %.1f%% worst %.1f%%" %
          (name, statistics.median(big), max(big), statistics.median(small), max(small)))


def summary(name, rows):
    big = [abs(e) for s, e in rows if s >= 65536]
    small = [abs(e) for s, e in rows if s < 65536]
    print("%s: >=64KB median |err| %.1f%% worst %.1f%% (%d points); <64KB median %.1f%% worst "
          "%.1f%% (%d points)" % (name, statistics.median(big), max(big), len(big),
                                  statistics.median(small), max(small), len(small)))


cal = yaml.safe_load(open(cal_path))
overhead = cal.get("launch", {}).get("event_overhead_ns", 0) / 1e3
tmp = tempfile.mkdtemp()


def calibrated(c, op, n, size):
    path = os.path.join(tmp, "cal.yaml")
    yaml.safe_dump(c, open(path, "w"))
    t, choice = run(op, n, size, ["--graph", "--calibration", path])
    assert choice.startswith("calibrated"), (op, n, size, choice)
    return t - overhead


loo, by_n = [], []
for i, t in enumerate(cal["comm"]):
    if t["op"] not in OPS:
        continue
    for j in range(1, len(t["points"]) - 1):
        c = dict(cal)
        c["comm"] = [dict(u) for u in cal["comm"]]
        c["comm"][i]["points"] = t["points"][:j] + t["points"][j + 1:]
        size, ns = t["points"][j]
        loo.append((size, (calibrated(c, t["op"], t["ranks"], size) - ns / 1e3) / (ns / 1e3) * 100))
two = dict(cal)
two["comm"] = [u for u in cal["comm"] if u["ranks"] == 2]
for t in cal["comm"]:
    if t["op"] in OPS and t["ranks"] == 4:
        for size, ns in t["points"]:
            by_n.append((size, (calibrated(two, t["op"], 4, size) - ns / 1e3) / (ns / 1e3) * 100))
summary("calibrated, size left out", loo)
summary("calibrated, 4 GPUs from the 2-GPU tables", by_n)
