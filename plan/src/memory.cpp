// Memory per plan rank. All figures are bytes. Formats: w = precision.weights matrices
// (models::matrix_bytes, scales counted), kv = precision.kv_cache vectors, e = bytes per element
// of precision.activations, disp / comb = bytes of one hidden-wide dispatch / combine row
// (models::vector_bytes). Norm vectors and the router gate are 16-bit (2 B). They are upper
// bounds where the true figure depends on routing or on kernel choices, so a plan that passes
// here is expected to fit; a plan that fails shows where the bytes go.
//
// Notation (per layer unless marked):
//   p      attention split of heads: head_parallel (MA) or tensor_parallel (co-located)
//   sp     sequence_parallel (MA; 1 for co-located)      t = p · sp, one replica group
//   q_r    query heads per rank = ceil(heads / p)         kv_r = ceil(kv_heads / p)
//          (kv_r = 1 when p > kv_heads: a GQA KV head is then replicated, not split)
//   S_r    sequences per replica group = ceil(batch / replicas); with replicas listed one
//          by one (plan.attention.replicas as a list) each rank uses its own replica's p, sp
//          and exact S_r (batch_split.hpp)
//   C      context at the last step = max context + decode_steps (for a context distribution
//          the maximum, context_max, is used: conservative for the sequences held)
//   mb     micro_batches       T_mb = ceil(S_r / mb) tokens of one micro-batch on a group
//   N_mb   ceil(batch / mb): tokens of one micro-batch over all groups (what MoE GPUs see)
//   H      hidden     F = expert_ffn     I = expert_in_columns (2F SwiGLU, F GELU)
//   L      layers     L_moe = MoE layers    L_dense = dense_layers
//   MLA:   ql, kl, dn, dr, dv = q_lora_rank, kv_lora_rank, qk_nope, qk_rope, v head dims;
//          down = ql + kl + dr (ql = 0: q_r·(dn + dr) + kl + dr)
//
// weights:
//   attention rank  L · [MHA/GQA: w(H × (q_r + 2·kv_r)·head_dim) + w(q_r·head_dim × H)
//                        MLA: w(H × down) (whole on every rank) + w(ql × q_r·(dn + dr))
//                             + w(kl × q_r·(dn + dv)) + w(q_r·dv × H) + 2·(ql + kl)
//                        + 2·2·H (RMSNorms)]
//                 + L_moe · 2·H·experts (router) + L_dense · dense FFN weights (whole)
//   MoE rank        L_moe · (experts held · expert_weight_bytes + shared_experts ·
//                   shared_expert_weight_bytes) (experts held from plan/placement.hpp; shared
//                   experts on every MoE rank). With expert tensor parallelism t (x = t):
//                   each FFN of width f is held as its slice, w(H × in(f/t)) + w(f/t × H)
//                   (in(f) = 2f SwiGLU, f GELU; block scales of the slice counted)
//   co-located      both of the above.
// kv_cache (× layers; a sliding-window layer with C replaced by min(C, sliding_window)):
//                       S_r · ceil(C / sp) · [MHA/GQA: kv(2·kv_r vectors of head_dim);
//                        MLA: kv(one vector of kl + dr), whole on every head-parallel rank]
// activations (peak live in one layer):
//   attention rank  mb · T_mb · [(4·H + A)·e + 4·experts] (+ mb · T_mb · (in + dense_ffn)·e
//                   with dense layers), A = 2·(q_r + kv_r)·head_dim (MHA/GQA) or
//                   down + q_r·(dn + dr) + 2·q_r·(kl + dr) + q_r·dv (MLA)
//                   (residual, normed input, projections, attention out, out-proj partial,
//                    combined output; fp32 router logits; all micro-batches live at once)
//   MoE rank        R · (disp + (H + I/x + F/x)·e) + R·4 (F, I: the wider of the routed and
//                   shared widths; x = expert tensor parallelism, 1 without), R = N_mb ·
//                   (min(top_k, experts held) +
//                   shared_experts) rows: the worst case, every token of a micro-batch
//                   sending all the top_k it can to this rank (permuted input, gate/up out,
//                   activated, down out, fp32 combine weights); one micro-batch computes at
//                   a time.
// comm_buffers:
//   attention rank  mb · ceil(T_mb / t) · top_k · (disp + comb)   dispatch out + return in for
//                   the tokens this rank owns after the reduce-scatter
//                 + [t > 1]  2 · T_mb · H·e                 all-gather / reduce-scatter staging
//                 + [sp > 1] T_mb · q_r·head_dim·4 (MLA: q_r·kl·4)  fp32 partial attention
//                   all-reduce
//   MoE rank        mb · R · (disp + comb)                    dispatch in + return out
//                 + [x > 1] mb · ceil(R / x) · comb          reduce-scatter output (its part
//                   of the group's summed rows, returned from there)
// Not counted: CUDA context and library workspaces (cuBLAS, NCCL), allocator fragmentation,
// split-KV partial results of the decode-attention kernel.
#include "masep/plan/memory.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "masep/plan/batch_split.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/placement.hpp"

namespace masep::plan {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void require_positive(int64_t v, const char* key) {
  if (v <= 0) throw std::invalid_argument(fmt::format("{}: must be positive, got {}", key, v));
}

int64_t max_context(const Workload& w) {
  return w.context_kind == ContextKind::kFixed ? w.context : std::max(w.context, w.context_max);
}

/// Memory of one attention rank (MA separation or the attention part of a co-located rank).
struct AttentionShape {
  int64_t p = 1;     // head split
  int64_t sp = 1;    // sequence split
  int64_t seqs = 1;  // S_r: sequences of the replica group
};

void add_attention(const Scenario& s, const AttentionShape& a, MemoryBreakdown& m) {
  const models::Model& md = s.model;
  const models::Precision& pr = md.precision;
  const int64_t e = models::dtype_bytes(pr.activations);
  const int64_t H = md.hidden;
  const int64_t hd = md.head_dim;
  const int64_t L = md.layers;
  const int64_t q_r = ceil_div(md.heads, a.p);
  const int64_t kv_r = ceil_div(md.kv_heads, a.p);
  const int64_t t = a.p * a.sp;
  const int64_t mb = s.plan.micro_batches;
  const int64_t seqs = a.seqs;
  const int64_t t_mb = ceil_div(seqs, mb);
  const int64_t context = max_context(s.workload) + s.workload.decode_steps;

  int64_t shard = 0;       // projection weights of this rank's heads, per layer
  int64_t kv_token = 0;    // cached bytes per token per layer on this rank
  int64_t qkv_width = 0;   // per-token attention activations besides the 4 hidden-wide ones
  int64_t attn_out = 0;    // per-token attention output width (merged across sp peers)
  if (!md.is_mla()) {
    shard = models::matrix_bytes(pr.weights, H, (q_r + 2 * kv_r) * hd) +
            models::matrix_bytes(pr.weights, q_r * hd, H);
    kv_token = models::vector_bytes(pr.kv_cache, 2 * kv_r, hd);
    qkv_width = 2 * (q_r + kv_r) * hd;
    attn_out = q_r * hd;
  } else {
    const models::Mla& x = md.mla;
    const int64_t ql = x.q_lora_rank, kl = x.kv_lora_rank, dn = x.qk_nope_head_dim,
                  dr = x.qk_rope_head_dim, dv = x.v_head_dim;
    const int64_t down = (ql > 0 ? ql : q_r * (dn + dr)) + kl + dr;
    shard = models::matrix_bytes(pr.weights, H, down)  // replicated on every head split
            + (ql > 0 ? models::matrix_bytes(pr.weights, ql, q_r * (dn + dr)) : 0) +
            models::matrix_bytes(pr.weights, kl, q_r * (dn + dv)) +
            models::matrix_bytes(pr.weights, q_r * dv, H) + 2 * (ql + kl);
    kv_token = models::vector_bytes(pr.kv_cache, 1, kl + dr);  // whole latent on every rank
    qkv_width = down + q_r * (dn + dr) + 2 * q_r * (kl + dr) + q_r * dv;
    attn_out = q_r * kl;
  }
  const int64_t replicated = 2 * 2 * H;  // two RMSNorm vectors, 16-bit
  m.weights += L * (shard + replicated) + md.moe_layers() * 2 * H * md.experts  // router
               + md.dense_layers * md.dense_ffn_weight_bytes();  // dense FFN, whole
  // A sliding-window layer keeps only the last `sliding_window` tokens (a ring buffer).
  const int64_t windowed = md.sliding_layers();
  const int64_t window_ctx =
      md.sliding_window > 0 ? std::min<int64_t>(context, md.sliding_window) : context;
  m.kv_cache += (L - windowed) * seqs * ceil_div(context, a.sp) * kv_token +
                windowed * seqs * ceil_div(window_ctx, a.sp) * kv_token;
  // fault_tolerance.kv_copies 2: a GPU also holds the mirrors of as many other sequences.
  if (s.fault_tolerance.kv_copies > 1 && s.plan.kind == PlanKind::kMaSeparation) {
    m.kv_cache *= s.fault_tolerance.kv_copies;
  }
  m.activations += mb * t_mb * ((4 * H + qkv_width) * e + 4 * md.experts);
  if (md.dense_layers > 0) {
    m.activations += mb * t_mb * (md.ffn_in_columns(md.dense_ffn) + md.dense_ffn) * e;
  }
  m.comm_buffers += mb * ceil_div(t_mb, t) * md.top_k *
                    (models::vector_bytes(pr.dispatch, 1, H) + models::vector_bytes(pr.combine, 1, H));
  if (t > 1) m.comm_buffers += 2 * t_mb * H * e;
  if (a.sp > 1) m.comm_buffers += t_mb * attn_out * 4;
}

void add_experts(const Scenario& s, int64_t experts_held, MemoryBreakdown& m) {
  const models::Model& md = s.model;
  const models::Precision& pr = md.precision;
  const int64_t e = models::dtype_bytes(pr.activations);
  const int64_t H = md.hidden;
  const int64_t mb = s.plan.micro_batches;
  const int64_t n_mb = ceil_div(s.workload.batch, mb);
  const int64_t rows =
      n_mb * (std::min<int64_t>(md.top_k, experts_held) + static_cast<int64_t>(md.shared_experts));
  const int64_t row_in = models::vector_bytes(pr.dispatch, 1, H);
  const int64_t row_out = models::vector_bytes(pr.combine, 1, H);

  // Expert tensor parallelism x: each GPU holds a column slice of every FFN it serves.
  const int64_t x = std::max(1, s.plan.expert_tensor_parallel());
  auto slice_bytes = [&](int64_t f) {
    return models::matrix_bytes(pr.weights, H, md.ffn_in_columns(f / x)) +
           models::matrix_bytes(pr.weights, f / x, H);
  };
  const int64_t routed_w = x == 1 ? md.expert_weight_bytes() : slice_bytes(md.expert_ffn);
  const int64_t shared_w = md.shared_experts == 0 ? 0
                           : x == 1               ? md.shared_expert_weight_bytes()
                                                  : slice_bytes(md.shared_ffn());
  m.weights += md.moe_layers() * (experts_held * routed_w + md.shared_experts * shared_w);
  const int64_t ffn = std::max<int64_t>(md.expert_ffn, md.shared_ffn()) / x;
  m.activations += rows * (row_in + (H + md.ffn_in_columns(ffn) + ffn) * e) + rows * 4;
  m.comm_buffers += mb * rows * (row_in + row_out);
  if (x > 1) m.comm_buffers += mb * ceil_div(rows, x) * row_out;
}

double gib(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

bool same_parts(const MemoryBreakdown& a, const MemoryBreakdown& b) {
  return std::string_view(a.role) == b.role && a.weights == b.weights && a.kv_cache == b.kv_cache &&
         a.activations == b.activations && a.comm_buffers == b.comm_buffers;
}

}  // namespace

std::vector<MemoryBreakdown> plan_memory(const Scenario& s) {
  require_positive(s.plan.micro_batches, "plan.micro_batches");
  require_positive(s.workload.batch, "workload.batch");
  std::vector<MemoryBreakdown> out;

  if (s.plan.kind == PlanKind::kMaSeparation) {
    const AttentionPlan& ap = s.plan.attention;
    require_positive(ap.gpus, "plan.attention.gpus");
    require_positive(ap.head_parallel, "plan.attention.head_parallel");
    require_positive(ap.sequence_parallel, "plan.attention.sequence_parallel");
    require_positive(ap.replicas, "plan.attention.replicas");
    if (ap.per_replica()) {
      const BatchSplit split = split_batch(s);
      for (int r = 0; r < ap.replicas; ++r) {
        const AttentionReplica rep = ap.replica(r);
        require_positive(rep.head_parallel, "plan.attention.replicas[].head_parallel");
        require_positive(rep.sequence_parallel, "plan.attention.replicas[].sequence_parallel");
        const AttentionShape shape{rep.head_parallel, rep.sequence_parallel,
                                   split.replica_sequences(r)};
        for (int i = 0; i < rep.gpus(); ++i) {
          MemoryBreakdown m;
          m.rank = static_cast<int32_t>(out.size());
          m.role = "attention";
          add_attention(s, shape, m);
          out.push_back(m);
        }
      }
      if (static_cast<int64_t>(out.size()) != ap.gpus) {
        throw std::invalid_argument(fmt::format(
            "plan.attention.gpus: {} GPUs, but the listed replicas use {}", ap.gpus, out.size()));
      }
    } else {
      const AttentionShape shape{ap.head_parallel, ap.sequence_parallel,
                                 ceil_div(s.workload.batch, ap.replicas)};
      for (int r = 0; r < ap.gpus; ++r) {
        MemoryBreakdown m;
        m.rank = r;
        m.role = "attention";
        add_attention(s, shape, m);
        out.push_back(m);
      }
    }
    const auto held = expert_slots(s);
    for (int g = 0; g < static_cast<int>(held.size()); ++g) {
      MemoryBreakdown m;
      m.rank = ap.gpus + g;
      m.role = "moe";
      add_experts(s, static_cast<int64_t>(held[g]), m);
      out.push_back(m);
    }
  } else {
    const ColocatedPlan& cp = s.plan.colocated;
    require_positive(cp.gpus, "plan.colocated.gpus");
    require_positive(cp.tensor_parallel, "plan.colocated.tensor_parallel");
    const AttentionShape shape{
        cp.tensor_parallel, 1,
        ceil_div(s.workload.batch, std::max<int64_t>(1, cp.gpus / cp.tensor_parallel))};
    const auto held = expert_slots(s);
    for (int r = 0; r < cp.gpus; ++r) {
      MemoryBreakdown m;
      m.rank = r;
      m.role = "colocated";
      add_attention(s, shape, m);
      add_experts(s, static_cast<int64_t>(held[r]), m);
      out.push_back(m);
    }
  }
  return out;
}

std::string memory_table(const Scenario& s, const std::vector<MemoryBreakdown>& mem) {
  const double capacity = s.topology.gpu.hbm_bytes();
  std::string out =
      fmt::format("{:<11} {:<10} {:>8} {:>8} {:>11} {:>8} {:>8} {:>7}  (GiB)\n", "rank", "role",
                  "weights", "KV", "activations", "buffers", "total", "HBM");
  for (size_t i = 0; i < mem.size();) {
    size_t j = i + 1;
    while (j < mem.size() && same_parts(mem[i], mem[j]) && mem[j].rank == mem[j - 1].rank + 1) {
      ++j;
    }
    const MemoryBreakdown& m = mem[i];
    const std::string ranks =
        j - i == 1 ? std::to_string(m.rank) : fmt::format("{}-{}", m.rank, mem[j - 1].rank);
    std::string mark;
    if (static_cast<double>(m.total()) > capacity) {
      mark = fmt::format("  OVER by {:.1f} GiB", gib(m.total()) - capacity / (1 << 30));
    }
    out += fmt::format("{:<11} {:<10} {:>8.1f} {:>8.1f} {:>11.1f} {:>8.1f} {:>8.1f} {:>7.1f}{}\n",
                       ranks, m.role, gib(m.weights), gib(m.kv_cache), gib(m.activations),
                       gib(m.comm_buffers), gib(m.total()), capacity / (1 << 30), mark);
    i = j;
  }
  return out;
}

void check_memory(const Scenario& s, const std::vector<MemoryBreakdown>& mem) {
  const double capacity = s.topology.gpu.hbm_bytes();
  int over = 0;
  int64_t weights = 0, kv = 0, other = 0;  // summed over the ranks that do not fit
  for (const MemoryBreakdown& m : mem) {
    if (static_cast<double>(m.total()) > capacity) {
      ++over;
      weights += m.weights;
      kv += m.kv_cache;
      other += m.activations + m.comm_buffers;
    }
  }
  if (over == 0) return;

  std::string hint;
  if (kv >= weights && kv >= other) {
    hint =
        "the KV cache dominates: use a smaller batch or context, or more attention GPUs "
        "(plan.attention.replicas / sequence_parallel, or a larger tensor_parallel)";
  } else if (weights >= other) {
    hint =
        "weights dominate: spread the experts over more GPUs (plan.moe.gpus), use fewer "
        "expert_replicas, or larger head_parallel / tensor_parallel";
  } else {
    hint = "activations and buffers dominate: use a smaller batch or more micro_batches";
  }
  throw InfeasiblePlan(fmt::format(
      "scenario '{}': plan does not fit in GPU memory: {} of {} ranks need more than the "
      "{:.1f} GiB of a {}\n{}hint: {}",
      s.name, over, mem.size(), capacity / (1 << 30), s.topology.gpu.name, memory_table(s, mem),
      hint));
}

ProgramTarget plan_target(const Scenario& s, const std::vector<MemoryBreakdown>& mem) {
  ProgramTarget t;
  t.known = true;
  t.origin = s.origin;
  t.plan_kind = to_string(s.plan.kind);
  t.gpu = s.topology.gpu;
  t.gpus_per_node = s.topology.gpus_per_node;
  t.memory_bytes.reserve(mem.size());
  for (const MemoryBreakdown& b : mem) t.memory_bytes.push_back(b.total());
  return t;
}

ProgramTarget plan_target(const Scenario& s) {
  std::vector<MemoryBreakdown> mem;
  try {
    mem = plan_memory(s);
  } catch (const std::exception&) {
    mem.clear();
  }
  return plan_target(s, mem);
}

}  // namespace masep::plan
