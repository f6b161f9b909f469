// Which shapes `masep profile` measures (exec/src/profiler.cpp), chosen on the CPU (library
// masep_lower, every tree) so that the choice is unit-tested without a GPU: the weight-GEMM
// (n, k) and decode-attention head shapes of the Programs it is given (the built-in scenarios,
// one step each), and, in the full grid, those every model of the zoo can have on any plan of
// up to `max_split` GPUs per head group or expert group, as the plan compiler emits them:
//   per head split p (p divides heads, and kv_heads for MHA/GQA; p <= max_split):
//     qkv (heads/p + 2·max(1, kv_heads/p))·head_dim × hidden, out_proj hidden × heads/p·head_dim,
//     attention (heads/p, max(1, kv_heads/p), head_dim);
//     MLA: mla_down (q_cols + kl + dr) × hidden (q_cols = ql, or heads/p·(dn + dr) when ql = 0),
//     mla_q_up heads/p·(dn + dr) × ql, absorbed kl × dn and dv × kl (grouped, per head),
//     out_proj hidden × heads/p·dv (the MLA kernel is not the decode-attention kernel: no head
//     shape);
//   router experts × hidden (16-bit, never FP8);
//   per expert split t (t divides the FFN width; t <= max_split): routed experts
//     in(F/t) × hidden and hidden × F/t (grouped), the same for shared experts of their own
//     width (grouped) and, unsplit, a dense FFN's in(dense_ffn) × hidden and hidden × dense_ffn
//     (in(f) = 2f SwiGLU, f GELU).
// Every such GEMM goes to `gemm` (grouped ones also to `grouped`); with FP8 weights (model
// precision, MLA roles excepted: the executor runs those in bf16) also to `grouped_fp8` (the
// executor runs every FP8 GEMM as its grouped launch). A Program's op goes to the one set its
// own format picks.
#pragma once

#include <compare>
#include <cstdint>
#include <set>
#include <utility>
#include <vector>

#include "masep/models/model.hpp"
#include "masep/plan/program.hpp"

namespace masep::exec {

/// A decode-attention head configuration on one GPU.
struct HeadShape {
  int heads = 0, kv_heads = 0, head_dim = 0;
  auto operator<=>(const HeadShape&) const = default;
};

/// The shapes to measure. Value type.
struct ProfileShapes {
  std::set<std::pair<int64_t, int64_t>> gemm;         ///< (n, k) of bf16 GEMMs (cuBLAS table)
  std::set<std::pair<int64_t, int64_t>> grouped;      ///< (n, k) of bf16 grouped GEMMs
  std::set<std::pair<int64_t, int64_t>> grouped_fp8;  ///< (n, k) of every FP8-weight GEMM
  std::set<HeadShape> attention;                      ///< decode-attention head shapes
  std::vector<models::Model> models;  ///< distinct by name: Programs' first, then the zoo's
};

/// GPUs per head or expert group the full grid covers (one node).
inline constexpr int kProfileMaxSplit = 8;

/// Adds every shape model `m` can have on a plan with head and expert splits up to
/// `max_split` (see above) to `s` (not to s.models).
void add_model_shapes(const models::Model& m, int max_split, ProfileShapes& s);

/// The op shapes of `programs` (compute ops with a weight GEMM or decode attention; MLA roles
/// in bf16 whatever the model's weight format) and, unless `quick`, add_model_shapes of every
/// model in `zoo` with kProfileMaxSplit. `models`: the Programs' models, then the zoo's (full
/// grid only), distinct by name.
ProfileShapes collect_profile_shapes(const std::vector<plan::Program>& programs,
                                     const std::vector<models::Model>& zoo, bool quick);

}  // namespace masep::exec
