#!/usr/bin/env python3
"""Cross-tier error of the fluid network model against the flow (max-min) model.

Runs `masep sim --network flow` and `--network fluid` on every scenario under scenarios/
(not the sweeps; large-1024gpu with few layers) and on a generated family of MA-separation
and co-located deployments of deepseek-v3-like on DGX H100 nodes at 16, 64 and 256 GPUs
(with --with-1024: large-1024gpu, 768:256, with 2 layers x 2 steps and 1 layer x 10 steps),
and compares:
  - TPOT (mean over steps) and makespan: (fluid - flow) / flow;
  - per-op time: each op's duration (trace end - start) under both tiers, for the
    communication ops (the ones the tier times); median / p90 / max of |fluid - flow| / flow
    and, per op name, the mean durations under both tiers.
Raw output: OUT/<case>.<tier>.json (the metrics JSON), OUT/summary.csv, OUT/per_op.csv and
OUT/README.txt (command, machine, masep version). docs/simulator-model.md quotes the summary.

usage: tools/network_tiers.py [--masep build-cpu/tools/masep] [--out results/network_tiers]
                              [--with-1024] [--only NAME_SUBSTRING]
"""
import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def family():
    """(name, yaml text) of the generated deployments."""
    out = []
    for gpus in (16, 64, 256):
        nodes = gpus // 8
        attn = gpus * 3 // 4
        hp = 8 if attn % 8 == 0 else 4
        replicas = attn // hp
        out.append((f"gen-ma-{gpus}gpu", f"""name: gen-ma-{gpus}gpu
description: generated (tools/network_tiers.py) MA {attn}:{gpus - attn}
model: deepseek-v3-like
topology: cluster-128xdgx-h100
plan:
  kind: ma_separation
  attention: {{gpus: {attn}, head_parallel: {hp}, replicas: {replicas}}}
  moe: {{gpus: {gpus - attn}, placement: round_robin}}
  micro_batches: 2
workload:
  batch: {replicas * 2 * 16}
  context: 1024
  decode_steps: 4
  routing: {{kind: uniform}}
  seed: 1
""", [f"topology.nodes={nodes}", "model.layers=4"]))
        out.append((f"gen-co-{gpus}gpu", f"""name: gen-co-{gpus}gpu
description: generated (tools/network_tiers.py) co-located on {gpus} GPUs, TP 8
model: deepseek-v3-like
topology: cluster-128xdgx-h100
plan:
  kind: colocated
  colocated: {{gpus: {gpus}, tensor_parallel: 8, placement: round_robin, expert_replicas: 1}}
  micro_batches: 1
workload:
  batch: {gpus // 8 * 16}
  context: 1024
  decode_steps: 4
  routing: {{kind: uniform}}
  seed: 1
""", [f"topology.nodes={nodes}", "model.layers=4"]))
    return out


def cases(with_1024):
    """(name, scenario path, --set overrides)."""
    out = []
    for sub in ("", "examples", "validation"):
        d = os.path.join(ROOT, "scenarios", sub)
        for f in sorted(os.listdir(d)):
            if not f.endswith(".yaml"):
                continue
            name = f[:-5]
            sets = []
            if name == "large-1024gpu":
                if not with_1024:
                    continue
                out.append((name + "-1x10", os.path.join(d, f),
                            ["model.layers=1", "workload.decode_steps=10"]))
                sets = ["model.layers=2", "workload.decode_steps=2"]
            out.append((name, os.path.join(d, f), sets))
    return out


def run(masep, path, sets, tier, trace):
    cmd = [masep, "sim", path, "--json", "--network", tier, "--trace", trace]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        return None, wall, p.stderr.strip().splitlines()[-1] if p.stderr else "failed"
    return json.loads(p.stdout), wall, ""


def op_durations(trace):
    with open(trace) as f:
        d = json.load(f)
    ev = d["traceEvents"] if isinstance(d, dict) else d
    out = {}
    for e in ev:
        if e.get("ph") != "X" or "args" not in e or "op" not in e["args"]:
            continue
        out[e["args"]["op"]] = (e["name"], e.get("cat", ""), float(e["dur"]))
    return out


def rel(a, b):
    return (a - b) / b if b else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--masep", default=os.path.join(ROOT, "build-cpu", "tools", "masep"))
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "network_tiers"))
    ap.add_argument("--with-1024", action="store_true",
                    help="also large-1024gpu (2 layers x 2 steps, 1 layer x 10 steps; minutes on the flow tier)")
    ap.add_argument("--only", default="", help="run only cases whose name contains this")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    gen_dir = os.path.join(args.out, "generated")
    os.makedirs(gen_dir, exist_ok=True)
    all_cases = cases(args.with_1024)
    for name, text, sets in family():
        path = os.path.join(gen_dir, name + ".yaml")
        with open(path, "w") as f:
            f.write(text)
        all_cases.append((name, path, sets))
    rows, op_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, sets in all_cases:
            if args.only and args.only not in name:
                continue
            res = {}
            for tier in ("flow", "fluid"):
                trace = os.path.join(tmp, f"{name}.{tier}.trace.json")
                m, wall, err = run(args.masep, path, sets, tier, trace)
                if m is None:
                    print(f"{name} {tier}: {err}", file=sys.stderr)
                    res = None
                    break
                with open(os.path.join(args.out, f"{name}.{tier}.json"), "w") as f:
                    json.dump(m, f, indent=1)
                res[tier] = (m, wall, op_durations(trace))
            if res is None:
                rows.append({"case": name, "error": err})
                continue
            (mf, wf, of), (mq, wq, oq) = res["flow"], res["fluid"]
            errs, by_name = [], {}
            for op, (nm, cat, d_flow) in of.items():
                if cat == "compute" or op not in oq:
                    continue
                d_fluid = oq[op][2]
                if d_flow > 0:
                    errs.append(abs(d_fluid - d_flow) / d_flow)
                s = by_name.setdefault(nm, [0, 0.0, 0.0])
                s[0] += 1
                s[1] += d_flow
                s[2] += d_fluid
            errs.sort()
            row = {
                "case": name,
                "sets": " ".join(sets),
                "steps": mf["steps"],
                "tpot_flow_ms": mf["tpot_mean_ms"],
                "tpot_fluid_ms": mq["tpot_mean_ms"],
                "tpot_diff_pct": 100 * rel(mq["tpot_mean_ms"], mf["tpot_mean_ms"]),
                "makespan_diff_pct": 100 * rel(mq["makespan_ns"], mf["makespan_ns"]),
                "comm_ops": len(errs),
                "comm_op_abs_diff_median_pct": 100 * errs[len(errs) // 2] if errs else 0,
                "comm_op_abs_diff_p90_pct": 100 * errs[int(len(errs) * 0.9)] if errs else 0,
                "comm_op_abs_diff_max_pct": 100 * errs[-1] if errs else 0,
                "wall_flow_s": round(wf, 3),
                "wall_fluid_s": round(wq, 3),
                "error": "",
            }
            rows.append(row)
            for nm, (n, a, b) in sorted(by_name.items()):
                op_rows.append({"case": name, "op": nm, "count": n,
                                "mean_flow_us": round(a / n, 3), "mean_fluid_us": round(b / n, 3),
                                "diff_pct": round(100 * rel(b, a), 3)})
            print(f"{name:34s} TPOT {row['tpot_flow_ms']:.4f} -> {row['tpot_fluid_ms']:.4f} ms "
                  f"({row['tpot_diff_pct']:+.3f}%), comm ops |d| median "
                  f"{row['comm_op_abs_diff_median_pct']:.2f}% max "
                  f"{row['comm_op_abs_diff_max_pct']:.1f}%, wall {wf:.2f} / {wq:.2f} s",
                  flush=True)
    keys = ["case", "sets", "steps", "tpot_flow_ms", "tpot_fluid_ms", "tpot_diff_pct",
            "makespan_diff_pct", "comm_ops", "comm_op_abs_diff_median_pct",
            "comm_op_abs_diff_p90_pct", "comm_op_abs_diff_max_pct", "wall_flow_s",
            "wall_fluid_s", "error"]
    suffix = "" if not args.only else "." + args.only
    with open(os.path.join(args.out, f"summary{suffix}.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in keys})
    with open(os.path.join(args.out, f"per_op{suffix}.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["case", "op", "count", "mean_flow_us", "mean_fluid_us",
                                          "diff_pct"])
        w.writeheader()
        w.writerows(op_rows)
    ok = [abs(r["tpot_diff_pct"]) for r in rows if not r.get("error")]
    if ok:
        print(f"|TPOT diff| over {len(ok)} cases: median {statistics.median(ok):.3f}%, "
              f"worst {max(ok):.3f}%")
    with open(os.path.join(args.out, f"README{suffix}.txt"), "w") as f:
        f.write(f"tools/network_tiers.py {' '.join(sys.argv[1:])}\n")
        f.write(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
                f"{os.cpu_count()} CPUs\n")
        f.write(time.strftime("%Y-%m-%d %H:%M UTC\n", time.gmtime()))
        if ok:
            f.write(f"|TPOT diff| over {len(ok)} cases: median {statistics.median(ok):.3f}%, "
                    f"worst {max(ok):.3f}%\n")


if __name__ == "__main__":
    main()
