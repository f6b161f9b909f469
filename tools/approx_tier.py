#!/usr/bin/env python3
"""Error of the approximate tier (masep sim --fidelity approx: layer sampling) against the exact run.

For every scenario under scenarios/ (not the sweeps; the deployments cut to 24 layers; the
paper-moe ones, 4 layers, also with 24: "-deep24"; large-1024gpu with --with-1024, cut to
LAYERS x 2 steps) and a generated family of deepseek-v3-like MA-separation and co-located
deployments on DGX H100 nodes at 16, 64 and 256 GPUs (61 layers, 3 decode steps), runs
  exact   masep sim --network flow                       (the reference)
  approx  masep sim --network flow --fidelity approx     (the sampling error alone)
  approx+auto  --network auto --fidelity approx          (what a user runs: fluid at scale)
and compares the mean TPOT ((approx - exact) / exact) and per op name the mean duration of
its ops (trace end - start; the approximate run's ops weighted by the layers each stands
for, read from the run's header line). Cases where the model has no more MoE layers than an
approximate step simulates run exactly (the header says so) and are listed as "exact".
Raw output: OUT/summary.csv, OUT/per_op.csv, OUT/README.txt (command, machine, date).

usage: tools/approx_tier.py [--masep build-cpu/tools/masep] [--out results/approx_tier]
                            [--with-1024] [--only NAME_SUBSTRING] [--approx-layers K]
"""
import argparse
import csv
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import network_tiers  # noqa: E402  (the generated family's YAML, the scenario list)


# Layers that fit the GPUs' memory where all 61 do not (deepseek-v3-like's 256 experts on 4
# MoE GPUs at 16 GPUs, on 16 at 64 GPUs / co-located 16).
FAMILY_LAYER_CAP = {"gen-ma-16gpu": 10, "gen-co-16gpu": 40, "gen-ma-64gpu": 40}


def family(layers, steps):
    out = []
    for name, text, sets in network_tiers.family():
        sets = [s for s in sets if not s.startswith("model.layers=")]
        n = min(layers, FAMILY_LAYER_CAP.get(name, layers))
        out.append((name, text, sets + [f"model.layers={n}", f"workload.decode_steps={steps}"]))
    return out


def run(masep, path, sets, network, approx, k, trace):
    cmd = [masep, "sim", path, "--json", "--network", network, "--trace", trace]
    if approx:
        cmd += ["--fidelity", "approx", "--approx-layers", str(k)]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        return None, wall, p.stderr.strip().splitlines()[-1] if p.stderr else "failed", ""
    note = ""
    for line in p.stderr.splitlines():
        if line.startswith("masep sim: fidelity "):
            note = line[len("masep sim: fidelity "):]
    return json.loads(p.stdout), wall, "", note


def weights(note):
    """layer -> weight from the header note ("layers A-B each stand for W layers")."""
    m = re.search(r"layers (\d+)-(\d+) each stand for ([0-9.eE+-]+) layers", note)
    if not m:
        return lambda layer: 1.0
    lo, hi, w = int(m.group(1)), int(m.group(2)), float(m.group(3))
    return lambda layer: w if lo <= layer <= hi else 1.0


def op_means(trace, wfn):
    """op name -> (weighted count, weighted mean duration in us); {} without a trace (runs with
    faults write none)."""
    if not os.path.exists(trace):
        return {}
    acc = {}
    with open(trace) as f:  # one event per line (plan::write_trace): large traces stream
        for line in f:
            line = line.strip().rstrip(",")
            if not line.startswith('{"name"') or '"ph":"X"' not in line:
                continue
            e = json.loads(line)
            if "args" not in e or "op" not in e["args"]:
                continue
            w = wfn(int(e["args"].get("layer", 0)))
            a = acc.setdefault(e["name"], [0.0, 0.0])
            a[0] += w
            a[1] += w * float(e["dur"])
    return {k: (n, s / n) for k, (n, s) in acc.items() if n > 0}


def rel(a, b):
    return (a - b) / b if b else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--masep", default=os.path.join(ROOT, "build-cpu", "tools", "masep"))
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "approx_tier"))
    ap.add_argument("--with-1024", action="store_true")
    ap.add_argument("--layers-1024", type=int, default=12)
    ap.add_argument("--family-layers", type=int, default=61)
    ap.add_argument("--family-steps", type=int, default=3)
    ap.add_argument("--approx-layers", type=int, default=6)
    ap.add_argument("--only", default="", help="only cases whose name contains one of these "
                    "comma-separated strings")
    ap.add_argument("--no-auto", action="store_true", help="skip the approx+auto runs")
    ap.add_argument("--no-family", action="store_true", help="skip the generated family")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    gen_dir = os.path.join(args.out, "generated")
    os.makedirs(gen_dir, exist_ok=True)
    cases = []
    for name, path, sets in network_tiers.cases(False):
        cases.append((name, path, sets))
    d = os.path.join(ROOT, "scenarios", "deployments")
    for f in sorted(os.listdir(d)):
        if f.endswith(".yaml"):
            # 144 GPUs, 9,216 sequences: an exchange has ~20,000 transfers, which the flow tier
            # takes hours for; the exact run is the fluid tier's (the sampling error alone;
            # fluid vs flow is measured by tools/network_tiers.py).
            cases.append((f[:-5], os.path.join(d, f), [], "fluid"))
    # The paper-moe scenarios have 4 layers (nothing to sample): the same with 24 layers.
    for name in ("paper", "paper-colocated", "paper-zipf"):
        cases.append((name + "-deep24", os.path.join(ROOT, "scenarios", name + ".yaml")
                      if os.path.exists(os.path.join(ROOT, "scenarios", name + ".yaml"))
                      else os.path.join(ROOT, "scenarios", "examples", name + ".yaml"),
                      ["model.layers=24"]))
    if args.with_1024:
        # All 61 layers, 3 steps: the exact run on the fluid tier (flow: hours).
        cases.append(("large-1024gpu-61x3",
                      os.path.join(ROOT, "scenarios", "examples", "large-1024gpu.yaml"),
                      ["workload.decode_steps=3"], "fluid"))
        cases.append((f"large-1024gpu-{args.layers_1024}x2",
                      os.path.join(ROOT, "scenarios", "examples", "large-1024gpu.yaml"),
                      [f"model.layers={args.layers_1024}", "workload.decode_steps=2"]))
    for name, text, sets in ([] if args.no_family else
                             family(args.family_layers, args.family_steps)):
        path = os.path.join(gen_dir, name + ".yaml")
        with open(path, "w") as f:
            f.write(text)
        cases.append((name, path, sets))
    variants = [("exact", "flow", False), ("approx", "flow", True)]
    if not args.no_auto:
        variants.append(("approx_auto", "auto", True))
    rows, op_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            name, path, sets = case[:3]
            base = case[3] if len(case) > 3 else "flow"  # the exact (and approx) run's tier
            if args.only and not any(o in name for o in args.only.split(",")):
                continue
            res, err = {}, ""
            for label, network, approx in variants:
                if network == "flow":
                    network = base
                trace = os.path.join(tmp, f"{name}.{label}.trace.json")
                m, wall, err, note = run(args.masep, path, sets, network, approx,
                                         args.approx_layers, trace)
                if m is None:
                    print(f"{name} {label}: {err}", file=sys.stderr)
                    break
                res[label] = (m, wall, note, op_means(trace, weights(note)))
                if os.path.exists(trace):
                    os.remove(trace)
            if len(res) != len(variants):
                rows.append({"case": name, "error": err})
                continue
            me, we, _, oe = res["exact"]
            ma, wa, note, oa = res["approx"]
            sampled = note.startswith("approx")
            row = {"case": name, "sets": " ".join(sets), "tier": base, "steps": me["steps"],
                   "sampled": "yes" if sampled else "exact",
                   "tpot_exact_ms": me["tpot_mean_ms"], "tpot_approx_ms": ma["tpot_mean_ms"],
                   "tpot_diff_pct": 100 * rel(ma["tpot_mean_ms"], me["tpot_mean_ms"]),
                   "wall_exact_s": round(we, 3), "wall_approx_s": round(wa, 3), "error": ""}
            if "approx_auto" in res:
                mq, wq, _, _ = res["approx_auto"]
                row["tpot_approx_auto_ms"] = mq["tpot_mean_ms"]
                row["tpot_auto_diff_pct"] = 100 * rel(mq["tpot_mean_ms"], me["tpot_mean_ms"])
                row["wall_approx_auto_s"] = round(wq, 3)
            diffs = []
            for nm, (n, mean_e) in sorted(oe.items()):
                if nm not in oa:
                    continue
                mean_a = oa[nm][1]
                dp = 100 * rel(mean_a, mean_e)
                diffs.append(abs(dp))
                op_rows.append({"case": name, "op": nm, "count_exact": round(n),
                                "mean_exact_us": round(mean_e, 3),
                                "mean_approx_us": round(mean_a, 3), "diff_pct": round(dp, 3)})
            row["op_mean_abs_diff_median_pct"] = statistics.median(diffs) if diffs else 0
            row["op_mean_abs_diff_max_pct"] = max(diffs) if diffs else 0
            rows.append(row)
            print(f"{name:34s} {base:5s} {row['sampled']:5s} TPOT {row['tpot_exact_ms']:.4f} -> "
                  f"{row['tpot_approx_ms']:.4f} ms ({row['tpot_diff_pct']:+.3f}%)"
                  + (f", auto {row['tpot_auto_diff_pct']:+.3f}%" if "tpot_auto_diff_pct" in row
                     else "")
                  + f"; op means |d| max {row['op_mean_abs_diff_max_pct']:.2f}%; wall "
                  f"{we:.2f} / {wa:.2f} s", flush=True)
    keys = ["case", "sets", "tier", "steps", "sampled", "tpot_exact_ms", "tpot_approx_ms",
            "tpot_diff_pct", "tpot_approx_auto_ms", "tpot_auto_diff_pct",
            "op_mean_abs_diff_median_pct", "op_mean_abs_diff_max_pct", "wall_exact_s",
            "wall_approx_s", "wall_approx_auto_s", "error"]
    suffix = "" if not args.only else "." + args.only.replace(",", "_")
    with open(os.path.join(args.out, f"summary{suffix}.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in keys})
    with open(os.path.join(args.out, f"per_op{suffix}.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["case", "op", "count_exact", "mean_exact_us",
                                          "mean_approx_us", "diff_pct"])
        w.writeheader()
        w.writerows(op_rows)
    lines = []
    for label, key in (("approx (flow)", "tpot_diff_pct"), ("approx+auto", "tpot_auto_diff_pct")):
        for which, pick in (("all", lambda r: True), ("sampled", lambda r: r["sampled"] == "yes")):
            v = [abs(r[key]) for r in rows if not r.get("error") and key in r and pick(r)]
            if v:
                lines.append(f"{label}, {which} ({len(v)} cases): |TPOT diff| median "
                             f"{statistics.median(v):.3f}%, worst {max(v):.3f}%")
    for line in lines:
        print(line)
    with open(os.path.join(args.out, f"README{suffix}.txt"), "w") as f:
        f.write(f"tools/approx_tier.py {' '.join(sys.argv[1:])}\n")
        f.write(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
                f"{os.cpu_count()} CPUs\n")
        f.write(time.strftime("%Y-%m-%d %H:%M UTC\n", time.gmtime()))
        for line in lines:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
