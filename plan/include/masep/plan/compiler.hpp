// The plan compiler: Scenario → Program. Deterministic: the same scenario (and seed) gives
// the same Program, op for op. Routing is sampled here, once, so every back end sees the
// same expert loads.
//
// One layer of MA separation, per micro-batch, on an attention replica group of t GPUs:
//   [l>0] all_gather(hidden of the group's tokens)
//   rmsnorm → qkv (GEMM, local heads) → rope → attention (+KV append)
//   [sequence_parallel>1] all_reduce over the KV-split GPUs (partial attention outputs)
//   out_proj (GEMM) → reduce_scatter over the group (each GPU now owns tokens/t tokens)
//   residual+rmsnorm → router GEMM → top-k → permute → send "dispatch" to each MoE GPU
// on each MoE GPU: recv from every attention GPU → expert_up (grouped GEMM) → activation →
//   expert_down (grouped GEMM) → send "return" to each attention GPU
// back on the attention GPU: recv → combine (weighted sum + residual).
// The co-located baseline runs the same layer with the MoE role on the same GPUs.
#pragma once

#include "masep/plan/program.hpp"
#include "masep/plan/scenario.hpp"

namespace masep::plan {

struct CompileOptions {
  int first_step = 0;   ///< first decode step to compile
  int steps = -1;       ///< steps to compile; -1 = the workload's decode_steps
};

/// Compiles a validated scenario. Throws InfeasiblePlan for plans that cannot run.
Program compile(const Scenario& s, const CompileOptions& opts = {});

}  // namespace masep::plan
