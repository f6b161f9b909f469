// Expert tensor parallelism (issue 15; plan.moe / plan.colocated expert_tensor_parallel): each
// expert's FFN split over the t GPUs of an expert group. Op shapes, FLOPs and bytes against hand
// counts, the dispatch to every GPU of a group, the reduce-scatter before the return, memory,
// validation errors with file:line:key, windows and the Program JSON.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>

#include "input_error_check.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/memory.hpp"
#include "masep/plan/placement.hpp"
#include "masep/plan/program_json.hpp"

namespace masep::plan {
namespace {

// Mixtral-8x7B cut to one layer: 1 attention GPU, 4 MoE GPUs in 2 expert groups of 2, batch 4.
// Line 9 is the expert_tensor_parallel key.
const char* const kMa =
    "name: etp\n"
    "model: mixtral-8x7b\n"
    "topology: dgx-a100\n"
    "plan:\n"
    "  kind: ma_separation\n"
    "  attention: {gpus: 1}\n"
    "  moe:\n"
    "    gpus: 4\n"
    "    expert_tensor_parallel: 2\n"
    "workload: {batch: 4, context: 100, decode_steps: 1}\n";

// gpt-fast's Mixtral on 2 GPUs: attention TP 2, every expert split over both GPUs.
const char* const kColocated =
    "name: etp-coloc\n"
    "model: mixtral-8x7b\n"
    "topology: dgx-a100\n"
    "plan:\n"
    "  kind: colocated\n"
    "  colocated:\n"
    "    gpus: 2\n"
    "    tensor_parallel: 2\n"
    "    expert_tensor_parallel: 2\n"
    "workload: {batch: 4, context: 100, decode_steps: 1}\n";

Scenario load(const char* text, std::vector<std::string> sets = {}) {
  sets.push_back("model.layers=1");
  return parse_scenario(text, "t.yaml", sets);
}

std::vector<const Op*> ops_of(const Program& p, OpRole role) {
  std::vector<const Op*> out;
  for (const Op& o : p.ops) {
    if (o.role == role) out.push_back(&o);
  }
  return out;
}

// Mixtral: H = 4096, expert_ffn F = 14336, SwiGLU gate/up 2F = 28672 columns, bf16.
constexpr int64_t kH = 4096, kF = 14336;

TEST(ExpertTp, GroupsHoldTheirExpertsOnEveryGpu) {
  const Scenario s = load(kMa);
  EXPECT_EQ(expert_tensor_parallel(s), 2);
  EXPECT_EQ(expert_group_count(s), 2);
  EXPECT_EQ(expert_gpu_count(s), 4);
  // Round robin over the 2 groups; each GPU of a group holds the group's experts.
  const auto held = gpu_experts(s);
  ASSERT_EQ(held.size(), 4u);
  EXPECT_EQ(held[0], (std::vector<int>{0, 2, 4, 6}));
  EXPECT_EQ(held[1], held[0]);
  EXPECT_EQ(held[2], (std::vector<int>{1, 3, 5, 7}));
  EXPECT_EQ(held[3], held[2]);
  const Program p = compile(s);
  EXPECT_NO_THROW(check_program(p));
  EXPECT_EQ(p.layout.expert_tensor_parallel, 2);
  EXPECT_EQ(p.layout.expert_holders[3], (std::vector<int32_t>{1}));  // a group index
  EXPECT_EQ(p.ranks[2].experts, (std::vector<int32_t>{0, 2, 4, 6}));
}

// Per GPU j of group k with R_k rows (R_0 + R_1 = 4 tokens × top-2 = 8):
//   expert_up   group_m = rows per local expert, n = 2F/2 = 14336, k = 4096:
//               FLOPs 2·R_k·14336·4096; weights 4096 × 14336 × 2 B = 117,440,512 per expert
//               with rows; bytes + R_k·4096·2 (bf16 dispatch rows) + R_k·14336·2
//   act         m = R_k, n = F/2 = 7168; bytes R_k·14336·2 + R_k·7168·2
//   expert_down n = 4096, k = 7168: FLOPs 2·R_k·4096·7168; weights 7168 × 4096 × 2 B =
//               58,720,256 per expert; bytes + R_k·7168·2 + R_k·4096·2
// Summed over the 4 GPUs the FLOPs are the whole experts': up 2·8·28672·4096 = 1,879,048,192,
// down 2·8·4096·14336 = 939,524,096.
TEST(ExpertTp, ExpertOpsComputeTheirSliceByHand) {
  const Program p = compile(load(kMa));
  ASSERT_EQ(p.routing.size(), 1u);
  const auto& tpe = p.routing[0].tokens_per_expert;
  int64_t R[2] = {0, 0};
  int with_rows[2] = {0, 0};
  for (int e = 0; e < 8; ++e) {
    R[e % 2] += tpe[e];
    with_rows[e % 2] += tpe[e] > 0;
  }
  ASSERT_EQ(R[0] + R[1], 8);
  double up_sum = 0, down_sum = 0;
  for (const Op* o : ops_of(p, OpRole::kExpertUp)) {
    const int g = o->rank - 1, k = g / 2;
    EXPECT_EQ(o->n, 14336);
    EXPECT_EQ(o->k, kH);
    const std::vector<int32_t> want = {tpe[k], tpe[k + 2], tpe[k + 4], tpe[k + 6]};
    EXPECT_EQ(o->group_m, want) << "rank " << o->rank;
    EXPECT_DOUBLE_EQ(o->flops, 2.0 * R[k] * 14336 * kH);
    EXPECT_EQ(o->weight_bytes, with_rows[k] * 117440512LL);
    EXPECT_EQ(o->hbm_bytes, with_rows[k] * 117440512LL + R[k] * kH * 2 + R[k] * 14336 * 2);
    up_sum += o->flops;
  }
  for (const Op* o : ops_of(p, OpRole::kAct)) {
    const int k = (o->rank - 1) / 2;
    EXPECT_EQ(o->m, R[k]);
    EXPECT_EQ(o->n, 7168);
    EXPECT_EQ(o->hbm_bytes, R[k] * 14336 * 2 + R[k] * 7168 * 2);
  }
  for (const Op* o : ops_of(p, OpRole::kExpertDown)) {
    const int k = (o->rank - 1) / 2;
    EXPECT_EQ(o->n, kH);
    EXPECT_EQ(o->k, 7168);
    EXPECT_DOUBLE_EQ(o->flops, 2.0 * R[k] * kH * 7168);
    EXPECT_EQ(o->weight_bytes, with_rows[k] * 58720256LL);
    EXPECT_EQ(o->hbm_bytes, with_rows[k] * 58720256LL + R[k] * 7168 * 2 + R[k] * kH * 2);
    down_sum += o->flops;
  }
  EXPECT_EQ(ops_of(p, OpRole::kExpertUp).size(),
            static_cast<size_t>(2 * ((R[0] > 0) + (R[1] > 0))));
  EXPECT_DOUBLE_EQ(up_sum, 1879048192.0);
  EXPECT_DOUBLE_EQ(down_sum, 939524096.0);
  // The whole step's FLOPs are the model's (nothing computed twice).
  double f = 0;
  for (const Op& o : p.ops) f += o.flops;
  models::Model m = load_model("mixtral-8x7b");
  m.layers = 1;
  EXPECT_NEAR(f, m.step_flops(4, 4 * 101), m.step_flops(4, 4 * 101) * 1e-12);
}

// Dispatch: every row to both GPUs of its group: 2 × 8 rows × 8,192 B = 131,072 B (whole
// experts: 65,536). expert_reduce: one reduce-scatter per group with rows, R_k × 8,192 B, on the
// group's 2 ranks, after their moe_unpermute; return: each row once, 8 × 8,192 = 65,536 B, GPU j
// sending part(R_k, 2, j) rows.
TEST(ExpertTp, DispatchToEveryGpuAndReduceScatterBeforeTheReturn) {
  const Program p = compile(load(kMa));
  const auto& tpe = p.routing[0].tokens_per_expert;
  int64_t R[2] = {0, 0};
  for (int e = 0; e < 8; ++e) R[e % 2] += tpe[e];
  int64_t sent = 0, returned = 0;
  std::map<int, int64_t> returned_by;
  for (const Exchange& x : p.exchanges) {
    for (const Transfer& t : x.transfers) {
      const Op& src = p.ops[static_cast<size_t>(t.src_op)];
      if (src.role == OpRole::kDispatch) {
        sent += t.bytes;
        const int k = (p.ops[static_cast<size_t>(t.dst_op)].rank - 1) / 2;
        EXPECT_EQ(t.bytes, R[k] * 8192);
      } else {
        ASSERT_EQ(src.role, OpRole::kReturn);
        returned += t.bytes;
        returned_by[src.rank] += t.bytes;
      }
    }
  }
  EXPECT_EQ(sent, 131072);
  EXPECT_EQ(returned, 65536);
  for (int g = 0; g < 4; ++g) {
    const int64_t rows = R[g / 2];
    const int64_t mine = rows * (g % 2 + 1) / 2 - rows * (g % 2) / 2;
    EXPECT_EQ(returned_by[g + 1], mine * 8192) << "MoE GPU " << g;
  }
  const auto reduce = ops_of(p, OpRole::kExpertReduce);
  ASSERT_EQ(reduce.size(), static_cast<size_t>(2 * ((R[0] > 0) + (R[1] > 0))));
  for (const Op* o : reduce) {
    EXPECT_EQ(o->kind, OpKind::kReduceScatter);
    EXPECT_EQ(o->stream, kComm);
    const int k = (o->rank - 1) / 2;
    EXPECT_EQ(o->comm_bytes, R[k] * 8192);
    const Collective& c = p.collectives[static_cast<size_t>(o->collective)];
    EXPECT_EQ(p.groups[static_cast<size_t>(c.group)].ranks,
              (std::vector<int32_t>{1 + 2 * k, 2 + 2 * k}));
    ASSERT_EQ(o->deps.size(), 1u);
    EXPECT_EQ(p.ops[static_cast<size_t>(o->deps[0])].role, OpRole::kMoeUnpermute);
    EXPECT_EQ(p.ops[static_cast<size_t>(o->deps[0])].rank, o->rank);
  }
  // Every return op waits for its rank's reduce-scatter.
  for (const Op* r : ops_of(p, OpRole::kReturn)) {
    if (r->rank == 0) continue;  // the attention rank's receive
    ASSERT_EQ(r->deps.size(), 1u);
    EXPECT_EQ(p.ops[static_cast<size_t>(r->deps[0])].role, OpRole::kExpertReduce);
  }
}

// gpt-fast's plan: with attention TP = expert TP = all GPUs each GPU's own token slice falls in
// its own part of the reduce-scatter: no return transfer; the combine waits for the
// reduce-scatter. Each GPU runs every expert's half on all 8 rows.
TEST(ExpertTp, ColocatedGptFastPlanNeedsNoReturn) {
  const Program p = compile(load(kColocated));
  EXPECT_NO_THROW(check_program(p));
  ASSERT_EQ(p.rank_count(), 2);
  for (const RankInfo& r : p.ranks) EXPECT_EQ(r.experts.size(), 8u);
  EXPECT_TRUE(ops_of(p, OpRole::kReturn).empty());
  for (const Op* o : ops_of(p, OpRole::kExpertUp)) {
    int64_t rows = 0;
    for (int32_t m : o->group_m) rows += m;
    EXPECT_EQ(rows, 8);
    EXPECT_EQ(o->n, 14336);
  }
  // Dispatch: each GPU sends its 2 tokens' 4 rows to the other (its own stay): 32,768 B each.
  for (const Exchange& x : p.exchanges) {
    for (const Transfer& t : x.transfers) EXPECT_EQ(t.bytes, 4 * 8192);
  }
  const auto reduce = ops_of(p, OpRole::kExpertReduce);
  ASSERT_EQ(reduce.size(), 2u);
  for (const Op* o : reduce) EXPECT_EQ(o->comm_bytes, 8 * 8192);
  for (const Op* c : ops_of(p, OpRole::kCombine)) {
    bool waits = false;
    for (OpId d : c->deps)
      waits = waits || p.ops[static_cast<size_t>(d)].role == OpRole::kExpertReduce;
    EXPECT_TRUE(waits) << "combine on rank " << c->rank;
  }
  double f = 0;
  for (const Op& o : p.ops) f += o.flops;
  models::Model m = load_model("mixtral-8x7b");
  m.layers = 1;
  EXPECT_NEAR(f, m.step_flops(4, 4 * 101), m.step_flops(4, 4 * 101) * 1e-12);
}

// Memory of an MoE GPU (1 layer; 4 experts held, each as its half):
//   weights 4 × (4096 × 14336 × 2 + 7168 × 4096 × 2) = 4 × 176,160,768 = 704,643,072 B (half
//     of whole experts on 2 GPUs: 4 × 352,321,536)
//   activations R = 4 × min(2, 4) = 8 rows × (8,192 + (4096 + 14336 + 7168) × 2) + 8 × 4
//     = 475,168 B
//   buffers 8 × (8,192 + 8,192) + ceil(8 / 2) × 8,192 = 163,840 B
TEST(ExpertTp, MemoryHoldsOneSliceOfEachExpert) {
  const auto mem = plan_memory(load(kMa));
  ASSERT_EQ(mem.size(), 5u);
  for (int g = 1; g < 5; ++g) {
    EXPECT_EQ(mem[g].weights, 704643072) << g;
    EXPECT_EQ(mem[g].activations, 475168) << g;
    EXPECT_EQ(mem[g].comm_buffers, 163840) << g;
  }
  const auto whole =
      plan_memory(load(kMa, {"plan.moe.gpus=2", "plan.moe.expert_tensor_parallel=1"}));
  EXPECT_EQ(whole[1].weights, 4 * 352321536LL);
  // Full Mixtral-8x7B (32 layers) on 8 GPUs as gpt-fast runs it (TP 8, every expert split 8
  // ways): per GPU experts 32 × 8 × (4096 × 3584 × 2 + 1792 × 4096 × 2) = 32 × 8 × 44,040,192 =
  // 11,274,289,152 B; attention 32 × (4096 × 768 × 2 + 512 × 4096 × 2 + 2 × 2 × 4096) =
  // 336,068,608 B; router 32 × 2 × 4096 × 8 = 2,097,152 B.
  const Scenario full = parse_scenario(kColocated, "t.yaml",
                                       {"plan.colocated.gpus=8", "plan.colocated.tensor_parallel=8",
                                        "plan.colocated.expert_tensor_parallel=8"});
  const auto fm = plan_memory(full);
  ASSERT_EQ(fm.size(), 8u);
  for (const auto& m : fm) EXPECT_EQ(m.weights, 11274289152LL + 336068608LL + 2097152LL);
  EXPECT_NO_THROW(check_memory(full, fm));
}

using testing::with;

// Across plan shapes (expert TP narrower or wider than attention TP, micro-batches, replicas
// over groups, contiguous placement with sequence parallelism, DeepSeek-V3's shared expert,
// MLA and fp8 weights) the Program passes check_program and a step's FLOPs equal those of the
// same plan with whole experts (routing does not depend on the MoE side).
TEST(ExpertTp, EveryShapeIsConsistentAndKeepsTheFlops) {
  struct Case {
    const char* text;
    std::vector<std::string> sets;
    const char* tp_key;
  };
  const std::string ds =
      "name: ds\nmodel: deepseek-v3\ntopology: dgx-h100\n"
      "plan:\n  kind: ma_separation\n  attention: {gpus: 2, head_parallel: 2}\n"
      "  moe: {gpus: 4, expert_tensor_parallel: 2}\n"
      "workload: {batch: 8, context: 64, decode_steps: 2}\n";
  const std::vector<Case> cases = {
      {kColocated,
       {"plan.colocated.gpus=8", "plan.colocated.tensor_parallel=8", "workload.batch=16"},
       "plan.colocated.expert_tensor_parallel"},
      {kColocated,
       {"plan.colocated.gpus=8", "plan.colocated.expert_tensor_parallel=4", "workload.batch=16",
        "plan.micro_batches=2", "workload.decode_steps=2"},
       "plan.colocated.expert_tensor_parallel"},
      {kMa, {"plan.moe.expert_replicas=2", "workload.batch=16"}, "plan.moe.expert_tensor_parallel"},
      {kMa,
       {"plan.moe.placement=contiguous", "plan.attention.gpus=4",
        "plan.attention.sequence_parallel=2", "plan.attention.replicas=2", "workload.batch=16",
        "plan.micro_batches=2", "workload.decode_steps=2"},
       "plan.moe.expert_tensor_parallel"},
      {ds.c_str(), {"model.layers=4"}, "plan.moe.expert_tensor_parallel"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> sets = c.sets;
    if (c.text != ds.c_str()) sets.push_back("model.layers=2");
    SCOPED_TRACE(c.sets.front());
    const Scenario s = parse_scenario(c.text, "t.yaml", sets);
    ASSERT_GT(s.plan.expert_tensor_parallel(), 1);
    const Program p = compile(s);
    EXPECT_NO_THROW(check_program(p));
    EXPECT_FALSE(ops_of(p, OpRole::kExpertReduce).empty());
    sets.push_back(std::string(c.tp_key) + "=1");
    const Program whole = compile(parse_scenario(c.text, "t.yaml", sets));
    EXPECT_TRUE(ops_of(whole, OpRole::kExpertReduce).empty());
    std::map<int, double> a, b;
    for (const Op& o : p.ops) a[o.step] += o.flops;
    for (const Op& o : whole.ops) b[o.step] += o.flops;
    ASSERT_EQ(a.size(), b.size());
    for (const auto& [step, f] : a) EXPECT_NEAR(f, b[step], b[step] * 1e-12) << "step " << step;
  }
}

void expect_error(const std::string& text, const std::vector<std::string>& sets,
                  const std::string& key, int line, const std::string& words) {
  testing::expect_input_error([&] { (void)parse_scenario(text, "t.yaml", sets); }, "t.yaml", key, line, words);
}

TEST(ExpertTp, ValidationNamesFileLineAndKey) {
  const std::string t3 = with(kMa, "expert_tensor_parallel: 2", "expert_tensor_parallel: 3");
  // 3 does not divide 4 GPUs; 3 does not divide expert_ffn 14336 (with 3 GPUs).
  expect_error(t3, {}, "plan.moe.expert_tensor_parallel", 9, "does not divide 4 expert GPUs");
  expect_error(with(t3, "gpus: 4", "gpus: 3"), {}, "plan.moe.expert_tensor_parallel", 9,
               "does not divide expert_ffn 14336");
  expect_error(with(kColocated, "expert_tensor_parallel: 2", "expert_tensor_parallel: 3"), {},
               "plan.colocated.expert_tensor_parallel", 9, "does not divide 2 expert GPUs");
  expect_error(with(kMa, "expert_tensor_parallel: 2", "expert_tensor_parallel: 0"), {},
               "plan.moe.expert_tensor_parallel", 9, "");
  // 2 groups cannot hold 3 replicas of each expert.
  expect_error(with(kMa, "    gpus: 4\n", "    gpus: 4\n    expert_replicas: 3\n"), {},
               "plan.moe.expert_replicas", 9, "3 expert groups but the plan has only 2");
  // Explicit maps name GPUs, not groups: refused.
  expect_error(with(kMa, "    gpus: 4\n", "    gpus: 4\n    placement: explicit\n"),
               {"plan.moe.expert_map=[[0],[1],[2],[3],[0],[1],[2],[3]]"}, "plan.moe.placement", 9,
               "explicit placement is not supported with expert_tensor_parallel > 1");
  // Partial sums are in the activations' format: an fp8 combine format is refused.
  expect_error(kMa, {"topology=dgx-h100", "model.precision.combine=fp8"},
               "plan.moe.expert_tensor_parallel", 9, "must equal activations");
  expect_error(kMa, {"plan.balance.policy=eplb"}, "plan.moe.expert_tensor_parallel", 9,
               "not supported with expert tensor parallelism");
}

TEST(ExpertTp, WindowsAndJsonReproduceTheFullCompile) {
  const Scenario s =
      load(kMa, {"plan.micro_batches=2", "workload.decode_steps=4", "workload.batch=8"});
  const Program full = compile(s);
  EXPECT_NO_THROW(check_program(full));
  ProgramStream stream(s);
  ProgramChunk chunk;
  size_t n = 0;
  while (stream.next(1, chunk)) {
    for (const Op& o : chunk.ops) {
      ASSERT_LT(static_cast<size_t>(o.id), full.ops.size());
      const Op& f = full.ops[static_cast<size_t>(o.id)];
      EXPECT_EQ(o.role, f.role);
      EXPECT_EQ(o.rank, f.rank);
      EXPECT_EQ(o.comm_bytes, f.comm_bytes);
      EXPECT_DOUBLE_EQ(o.flops, f.flops);
      ++n;
    }
  }
  EXPECT_EQ(n, full.ops.size());
  std::ostringstream a;
  write_program_json(full, a);
  EXPECT_NE(a.str().find("\"expert_tensor_parallel\":2"), std::string::npos);
  EXPECT_NE(a.str().find("\"expert_reduce\""), std::string::npos);
  std::istringstream in(a.str());
  const Program back = read_program_json(in, "dump");
  EXPECT_EQ(back.layout.expert_tensor_parallel, 2);
  std::ostringstream b;
  write_program_json(back, b);
  EXPECT_EQ(a.str(), b.str());
}

}  // namespace
}  // namespace masep::plan
