#!/usr/bin/env python3
"""PyTorch side-by-side baseline for masep-bench-kernels (same shapes, same card, same run).

Times with CUDA events after warm-up (eager back-to-back calls; SDPA also replayed from a
CUDA graph, as the bench's graph column): copy bandwidth, 8192^3 bf16 GEMM, SDPA decode
attention (cuDNN SDPA disabled: it re-plans for every KV length), matmul SwiGLU expert FFN
(loop over experts, as a PyTorch MoE layer does), router (softmax + topk) and permute
(sort-based gather) / combine. Prints the table in the bench's column layout; --csv FILE.
"""
import argparse
import csv
import sys

import torch
import torch.nn.functional as F


def time_us(fn, iters, warmup=5):
    for _ in range(warmup):
        fn()
    a = torch.cuda.Event(enable_timing=True)
    b = torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(iters):
        fn()
    b.record()
    b.synchronize()
    return a.elapsed_time(b) * 1e3 / iters


def graph_us(fn, iters, repeats=5):
    """Per-call GPU time with the host launch path out of the way: `iters` calls captured
    into one CUDA graph, replayed `repeats` times after a warm replay; median replay / iters
    (the same method as masep-bench-kernels' graph column)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(iters):
            fn()
    g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / iters)
    del g
    return sorted(times)[len(times) // 2]


def iters_for(nbytes):
    return 10 if nbytes > 1e9 else 30 if nbytes > 1e8 else 200


rows = []


def report(kernel, model, shape, us, nbytes, flops, ceil):
    gbps = nbytes / (us * 1e3)
    tflops = flops / (us * 1e6)
    pct = 100.0 * gbps / ceil
    print(f"{kernel:<22} {model:<8} {shape:<34} {us:10.2f} {gbps:9.1f} {tflops:8.2f} {pct:6.1f}% copy",
          flush=True)
    rows.append([kernel, model, shape, f"{us:.3f}", f"{gbps:.1f}", f"{tflops:.3f}", f"{pct:.1f}"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv")
    ap.add_argument("--only", choices=["attention"], help="ceilings and decode attention only")
    args = ap.parse_args()
    torch.backends.cuda.enable_cudnn_sdp(False)
    dev = torch.device("cuda")
    torch.manual_seed(0)
    print(f"# torch {torch.__version__} on {torch.cuda.get_device_name(0)}")

    n = 1 << 29
    a = torch.empty(n, dtype=torch.bfloat16, device=dev)
    bb = torch.empty_like(a)
    us = time_us(lambda: bb.copy_(a), 20, 3)
    copy = 2 * 2 * n / (us * 1e3)
    del a, bb
    x = torch.randn(8192, 8192, dtype=torch.bfloat16, device=dev)
    y = torch.randn(8192, 8192, dtype=torch.bfloat16, device=dev)
    us = time_us(lambda: x @ y, 10, 3)
    print(f"# ceiling: torch copy {copy:.1f} GB/s; torch bf16 GEMM 8192^3 {2 * 8192**3 / (us * 1e6):.1f} TFLOP/s")
    del x, y

    # Router / permute / combine (256 tokens, 16 experts, top-2; hidden 4096).
    routing = [] if args.only else [("paper", 256, 16, 2), ("mixtral", 256, 8, 2), ("paper", 32, 16, 2),
                                      ("paper", 1024, 16, 2), ("paper", 2048, 16, 2)]
    for model, tokens, experts, k in routing:
        logits = torch.randn(tokens, experts, device=dev)

        def router():
            p = torch.softmax(logits, dim=-1)
            w, ids = torch.topk(p, k, dim=-1)
            w = w / w.sum(-1, keepdim=True)
            counts = torch.bincount(ids.flatten(), minlength=experts)
            return w, ids, counts

        us = time_us(router, 500)
        report("router_topk", model, f"tokens={tokens} experts={experts} k={k}", us,
               tokens * (experts * 4 + k * 8), 0, copy)
        w, ids, _ = router()
        xh = torch.randn(tokens, 4096, dtype=torch.bfloat16, device=dev)

        def permute():
            order = torch.argsort(ids.flatten(), stable=True)
            return xh.index_select(0, order // k), order

        us = time_us(permute, 500)
        shape = f"tokens={tokens} experts={experts} k={k} h=4096"
        report("permute", model, shape, us, (tokens * k + tokens) * 4096 * 2, 0, copy)
        px, order = permute()
        inv = torch.empty_like(order)
        inv[order] = torch.arange(order.numel(), device=dev)

        def combine():
            eo = px.index_select(0, inv).view(tokens, k, 4096).float()
            return (xh.float() + (eo * w.unsqueeze(-1)).sum(1)).to(torch.bfloat16)

        us = time_us(combine, 500)
        report("combine", model, shape, us, (tokens * k + 2 * tokens) * 4096 * 2, 2 * tokens * k * 4096, copy)

    # Decode attention: SDPA with one query token.
    for batch in (1, 8, 32, 128):
        for ctx in (2048, 8192):
            for model, heads, kvh in (("paper", 32, 32), ("mixtral", 32, 8)):
                nbytes = 2 * batch * kvh * ctx * 128 * 2
                if nbytes > 40e9:
                    continue
                q = torch.randn(batch, heads, 1, 128, dtype=torch.bfloat16, device=dev)
                kc = torch.randn(batch, kvh, ctx, 128, dtype=torch.bfloat16, device=dev)
                vc = torch.randn_like(kc)
                fn = lambda: F.scaled_dot_product_attention(q, kc, vc, enable_gqa=(kvh != heads))
                # Replayed from a CUDA graph (compare with the bench's graph column), then
                # eager (its eager column); graph first, as the bench does, so that both
                # eager loops run on a warmed-up GPU.
                g_us = graph_us(fn, iters_for(nbytes))
                us = time_us(fn, iters_for(nbytes))
                report("sdpa_decode", model, f"b={batch} ctx={ctx} h={heads}/{kvh}", us,
                       nbytes + 2 * batch * heads * 128 * 2, 4 * batch * heads * ctx * 128, copy)
                report("sdpa_decode_graph", model, f"b={batch} ctx={ctx} h={heads}/{kvh}", g_us,
                       nbytes + 2 * batch * heads * 128 * 2, 4 * batch * heads * ctx * 128, copy)
                del q, kc, vc

    # Expert FFN (SwiGLU), loop of matmuls over experts.
    ffn_shapes = () if args.only else (("paper", 16, (1, 8, 16, 32, 64, 128)), ("mixtral", 8, (1, 16, 64)))
    for model, experts, tpes in ffn_shapes:
        hidden, ffn = 4096, 14336
        w_up = torch.randn(experts, 2 * ffn, hidden, dtype=torch.bfloat16, device=dev) * 0.02
        w_dn = torch.randn(experts, hidden, ffn, dtype=torch.bfloat16, device=dev) * 0.02
        for tpe in tpes:
            x = torch.randn(experts, tpe, hidden, dtype=torch.bfloat16, device=dev)

            def ffn_loop():
                outs = []
                for e in range(experts):
                    h = x[e] @ w_up[e].t()
                    g, u = h.split(ffn, dim=-1)
                    outs.append((F.silu(g) * u) @ w_dn[e].t())
                return outs

            nbytes = (w_up.numel() + w_dn.numel()) * 2 + 2 * experts * tpe * hidden * 2
            us = time_us(ffn_loop, iters_for(nbytes), 3)
            report("torch_ffn_swiglu", model, f"E={experts} tok/exp={tpe} h={hidden} f={ffn}", us, nbytes,
                   2 * experts * tpe * hidden * ffn * 3, copy)
        del w_up, w_dn

    if args.csv:
        with open(args.csv, "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["kernel", "model", "shape", "time_us", "GBps", "TFLOPs", "pct_of_copy"])
            wr.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
