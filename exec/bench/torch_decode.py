#!/usr/bin/env python3
"""A plain PyTorch decode step of an MoE transformer, co-located on one GPU: the reference
that `masep exec` must beat on the same card in the same run (issue 19). Not a dependency of
masep; it runs where PyTorch is installed (the GPU test hosts).

Per layer, as a PyTorch MoE layer does it (eager, bf16, no custom kernels):
  RMSNorm -> fused QKV linear -> RoPE (q, k) -> append K/V to a preallocated cache ->
  SDPA decode over the cache (flash / memory-efficient backends; cuDNN SDPA disabled: it
  re-plans for every KV length) -> output projection + residual -> RMSNorm -> router
  (softmax, top-k, renormalise) -> for every expert with tokens: gather rows, SwiGLU FFN
  (gate/up fused in one linear), scale by the gate weight, index_add into the output ->
  residual.
Times `--steps` decode steps after `--warmup` untimed ones with CUDA events (the KV length
grows by one each step, as in masep's runs: context = tokens cached before step 0) and prints
TPOT in ms. Models: the names of masep's built-in zoo with the fields copied from
models/zoo/*.yaml, or --hidden/--heads/... overrides.

  python3 exec/bench/torch_decode.py --model qwen3-30b-a3b --layers 12 --batch 64 --context 2048
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F

MODELS = {  # models/zoo/*.yaml
    "paper-moe": dict(layers=4, hidden=4096, heads=32, kv_heads=32, head_dim=128, experts=16,
                      top_k=2, ffn=14336),
    "qwen3-30b-a3b": dict(layers=48, hidden=2048, heads=32, kv_heads=4, head_dim=128,
                          experts=128, top_k=8, ffn=768),
    "mixtral-8x7b": dict(layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128, experts=8,
                         top_k=2, ffn=14336),
}


def rmsnorm(x, w, eps=1e-6):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def rope(x, pos, theta=10000.0):
    # x: [b, h, d]; rotate-half RoPE at positions pos [b].
    d = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d))
    ang = pos.float()[:, None] * inv[None, :]  # [b, d/2]
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
    x1, x2 = x[..., : d // 2].float(), x[..., d // 2 :].float()
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).to(x.dtype)


class Layer:
    def __init__(self, m, batch, max_len, dev, gen):
        h, hd = m["hidden"], m["head_dim"]
        qkv = (m["heads"] + 2 * m["kv_heads"]) * hd
        r = lambda *s: (torch.randn(*s, device=dev, dtype=torch.bfloat16, generator=gen) * 0.02)
        self.m = m
        self.n1 = torch.ones(h, device=dev, dtype=torch.bfloat16)
        self.n2 = torch.ones(h, device=dev, dtype=torch.bfloat16)
        self.wqkv = r(qkv, h)
        self.wo = r(h, m["heads"] * hd)
        self.wr = r(m["experts"], h)
        self.w_up = r(m["experts"], 2 * m["ffn"], h)  # gate rows then up rows
        self.w_down = r(m["experts"], h, m["ffn"])
        self.k = torch.zeros(batch, m["kv_heads"], max_len, hd, device=dev, dtype=torch.bfloat16)
        self.v = torch.zeros_like(self.k)

    def forward(self, x, pos, L):
        # pos: [b] positions of the new token (= L - 1 for every sequence); L: cached length
        # after the append (a Python int: no host sync).
        m = self.m
        b, hd, H, KV = x.shape[0], m["head_dim"], m["heads"], m["kv_heads"]
        y = rmsnorm(x, self.n1)
        qkv = F.linear(y, self.wqkv)
        q = qkv[:, : H * hd].view(b, H, hd)
        k = qkv[:, H * hd : (H + KV) * hd].view(b, KV, hd)
        v = qkv[:, (H + KV) * hd :].view(b, KV, hd)
        q, k = rope(q, pos), rope(k, pos)
        self.k[:, :, L - 1] = k
        self.v[:, :, L - 1] = v
        o = F.scaled_dot_product_attention(
            q[:, :, None, :], self.k[:, :, :L], self.v[:, :, :L], enable_gqa=(H != KV))
        x = x + F.linear(o.reshape(b, H * hd), self.wo)
        y = rmsnorm(x, self.n2)
        probs = F.softmax(F.linear(y, self.wr).float(), -1)
        w, ids = probs.topk(m["top_k"], -1)
        w = (w / w.sum(-1, keepdim=True)).to(x.dtype)
        out = torch.zeros_like(y)
        flat = ids.flatten()
        order = flat.argsort()
        counts = torch.bincount(flat, minlength=m["experts"]).tolist()  # host sync, as HF MoE
        tok = order // m["top_k"]
        start = 0
        for e, n in enumerate(counts):
            if n == 0:
                continue
            sel = order[start : start + n]
            rows = tok[start : start + n]
            start += n
            hgu = F.linear(y[rows], self.w_up[e])
            g, u = hgu.chunk(2, -1)
            he = F.linear(F.silu(g) * u, self.w_down[e])
            out.index_add_(0, rows, he * w.flatten()[sel][:, None])
        return x + out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="paper-moe", choices=sorted(MODELS))
    ap.add_argument("--layers", type=int, help="override the model's layer count")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--context", type=int, default=2048, help="KV tokens before step 0")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="one JSON line instead of text")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("MASEP_GPU_SKIP: no CUDA device")
        return 0
    torch.backends.cuda.enable_cudnn_sdp(False)
    m = dict(MODELS[a.model])
    if a.layers:
        m["layers"] = a.layers
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(1)
    max_len = a.context + a.warmup + a.steps + 1
    layers = [Layer(m, a.batch, max_len, dev, gen) for _ in range(m["layers"])]
    for ly in layers:  # a filled cache: attention reads real-looking data
        ly.k[:, :, : a.context].normal_(generator=gen)
        ly.v[:, :, : a.context].normal_(generator=gen)
    x0 = torch.randn(a.batch, m["hidden"], device=dev, dtype=torch.bfloat16, generator=gen)

    def step(t):
        pos = torch.full((a.batch,), a.context + t, device=dev, dtype=torch.int64)
        x = x0
        for ly in layers:
            x = ly.forward(x, pos, a.context + t + 1)
        return x

    with torch.inference_mode():
        for t in range(a.warmup):
            step(t)
        torch.cuda.synchronize()
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(a.steps + 1)]
        ev[0].record()
        for t in range(a.steps):
            step(a.warmup + t)
            ev[t + 1].record()
        torch.cuda.synchronize()
    per = [ev[i].elapsed_time(ev[i + 1]) for i in range(a.steps)]
    res = dict(model=a.model, layers=m["layers"], batch=a.batch, context=a.context,
               steps=a.steps, tpot_ms=sum(per) / len(per), torch=torch.__version__,
               device=torch.cuda.get_device_name())
    if a.json:
        print(json.dumps(res))
    else:
        print(f"torch {res['torch']} on {res['device']}: {a.model} ({m['layers']} layers) batch "
              f"{a.batch} context {a.context}: TPOT {res['tpot_ms']:.3f} ms "
              f"(mean of {a.steps} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
