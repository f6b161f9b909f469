// The profiler's shapes (profile_shapes.hpp): the formulas mirror plan/src/compiler.cpp's op
// shapes; tests/exec/test_profile_shapes.cpp checks every built-in scenario's ops against them.
#include "masep/exec/profile_shapes.hpp"

#include <algorithm>
#include <string>

namespace masep::exec {

namespace {

using Shape = std::pair<int64_t, int64_t>;

// Divisors of n up to `most`, ascending.
std::vector<int> splits(int64_t n, int most) {
  std::vector<int> out;
  for (int d = 1; d <= most; ++d) {
    if (n % d == 0) out.push_back(d);
  }
  return out;
}

bool is_fp8(models::DType t) { return t == models::DType::kFP8; }

}  // namespace

void add_model_shapes(const models::Model& m, int max_split, ProfileShapes& s) {
  const bool fp8 = is_fp8(m.precision.weights);
  const int64_t h = m.hidden, hd = m.head_dim;
  // A weight GEMM in bf16 (what-ifs with the weights' format changed read these too) and, for
  // an FP8 model, in FP8 (MLA roles excepted).
  auto add = [&](int64_t n, int64_t k, bool grouped, bool bf16_only = false) {
    if (n <= 0 || k <= 0) return;
    if (fp8 && !bf16_only) s.grouped_fp8.insert({n, k});
    s.gemm.insert({n, k});
    if (grouped) s.grouped.insert({n, k});
  };
  for (int p : splits(m.heads, std::max(1, max_split))) {
    const int64_t q = m.heads / p;
    if (!m.is_mla()) {
      if (m.kv_heads % p != 0) continue;  // validate.cpp: whole KV heads per GPU
      const int64_t kv = std::max(1, m.kv_heads / p);
      add((q + 2 * kv) * hd, h, false);
      add(h, q * hd, false);
      s.attention.insert({static_cast<int>(q), static_cast<int>(kv), static_cast<int>(hd)});
    } else {
      const models::Mla& x = m.mla;
      const int64_t ql = x.q_lora_rank, kl = x.kv_lora_rank, dn = x.qk_nope_head_dim,
                    dr = x.qk_rope_head_dim, dv = x.v_head_dim;
      const int64_t q_cols = ql > 0 ? ql : q * (dn + dr);
      add(q_cols + kl + dr, h, false, /*bf16_only=*/true);
      if (ql > 0) add(q * (dn + dr), ql, false, true);
      add(kl, dn, true, true);
      add(dv, kl, true, true);
      add(h, q * dv, false);  // out_proj: not an MLA role, in the weights' format
    }
  }
  if (m.moe_layers() > 0) {
    s.gemm.insert({m.experts, h});  // the router gate: 16-bit
    for (int t : splits(m.expert_ffn, std::max(1, max_split))) {
      const int64_t f = m.expert_ffn / t;
      add(m.ffn_in_columns(f), h, true);
      add(h, f, true);
    }
    if (m.shared_own_width()) {
      for (int t : splits(m.shared_ffn(), std::max(1, max_split))) {
        const int64_t f = m.shared_ffn() / t;
        add(m.ffn_in_columns(f), h, true);
        add(h, f, true);
      }
    }
  }
  if (m.dense_layers > 0) {
    add(m.ffn_in_columns(m.dense_ffn), h, false);
    add(h, m.dense_ffn, false);
  }
}

ProfileShapes collect_profile_shapes(const std::vector<plan::Program>& programs,
                                     const std::vector<models::Model>& zoo, bool quick) {
  ProfileShapes s;
  std::set<std::string> names;
  for (const plan::Program& p : programs) {
    for (const plan::Op& o : p.ops) {
      const bool gemm = o.kind == plan::OpKind::kGemm || o.kind == plan::OpKind::kGroupedGemm;
      if (gemm && o.n > 0 && o.k > 0) {
        if (is_fp8(o.dtype) && !plan::is_mla_role(o.role)) {
          s.grouped_fp8.insert({o.n, o.k});
        } else {
          s.gemm.insert({o.n, o.k});
          if (o.kind == plan::OpKind::kGroupedGemm) s.grouped.insert({o.n, o.k});
        }
      } else if (o.kind == plan::OpKind::kAttention && o.role != plan::OpRole::kMlaAttention &&
                 o.heads > 0) {
        s.attention.insert({o.heads, o.kv_heads, o.head_dim});
      }
    }
    if (names.insert(p.model.name).second) s.models.push_back(p.model);
  }
  if (!quick) {
    for (const models::Model& m : zoo) {
      add_model_shapes(m, kProfileMaxSplit, s);
      if (names.insert(m.name).second) s.models.push_back(m);
    }
  }
  return s;
}

}  // namespace masep::exec
