// The built-in model zoo against published configurations (issue 15): every model's parameter
// count, weight bytes and KV bytes per token, with the arithmetic written out; and MLA / dense
// layer / precision op costs of the compiler against hand calculation.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <sstream>
#include <string>

#include "masep/plan/compiler.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/memory.hpp"
#include "masep/plan/program_json.hpp"
#include "masep/plan/routing.hpp"

namespace masep::plan {
namespace {

using models::DType;

// ---- published sizes -----------------------------------------------------------------------

// DeepSeek-V3 (config.json, arXiv:2412.19437). Per layer, H = 7168, 128 heads:
//   attention: W_DQ|W_DKV 7168 × (1536 + 512 + 64) = 15,138,816; W_UQ 1536 × 128·192 =
//   37,748,736; W_UK|W_UV 512 × 128·(128 + 128) = 16,777,216; W_O 128·128 × 7168 = 117,440,512;
//   norms 2·7168 + 1536 + 512 = 16,384 → 187,121,664 parameters.
//   dense FFN 3 × 7168 × 18432 = 396,361,728; router 7168 × 256 = 1,835,008; one expert
//   3 × 7168 × 2048 = 44,040,192, 257 of them (256 routed + 1 shared) = 11,318,329,344.
//   3 dense layers: 3 × (187,121,664 + 396,361,728) = 1,750,450,176
//   58 MoE layers: 58 × (187,121,664 + 1,835,008 + 11,318,329,344) = 667,422,588,928
//   embedding + LM head 2 × 129280 × 7168 + final norm 7168 = 1,853,365,248.
//   Total 671,026,404,352 ≈ the published 671B.
// KV cache: 61 layers × (512 + 64) elements × 2 B (bf16) = 70,272 B per token.
// Weight bytes (decoder layers, FP8 e4m3 matrices with one fp32 scale per 128 × 128 block,
//   16-bit norms and router): attention per layer 15,142,624 (7168 × 2112 + 4 × 56 × 17
//   scales) + 37,757,952 (+ 4 × 12 × 192) + 16,781,312 (+ 4 × 4 × 256) + 117,469,184
//   (+ 4 × 128 × 56) + 4,096 (latent norms) + 28,672 (norms) = 187,183,840; router 3,670,016;
//   expert 29,367,296 (7168 × 4096 + 4 × 56 × 32) + 14,683,648 (2048 × 7168 + 4 × 16 × 56) =
//   44,050,944; dense FFN 264,305,664 + 132,152,832 = 396,458,496.
//   3 × (187,183,840 + 396,458,496) + 58 × (187,183,840 + 3,670,016 + 257 × 44,050,944)
//   = 669,443,821,920 B.
TEST(Zoo, DeepSeekV3MatchesItsPublishedConfiguration) {
  const models::Model m = load_model("deepseek-v3");
  EXPECT_EQ(m.attention, models::AttentionKind::kMLA);
  EXPECT_EQ(m.dense_layers, 3);
  EXPECT_EQ(m.moe_layers(), 58);
  EXPECT_EQ(m.precision.weights, DType::kFP8);
  EXPECT_EQ(m.precision.kv_cache, DType::kBF16);
  EXPECT_EQ(m.total_params(), 671026404352LL);
  EXPECT_NEAR(static_cast<double>(m.total_params()), 671e9, 671e9 * 1e-3);
  EXPECT_EQ(m.kv_bytes_per_token_per_layer(), 576 * 2);
  EXPECT_EQ(m.kv_bytes_per_token(), 70272);
  EXPECT_EQ(m.attention_weight_bytes(false), 187183840);
  EXPECT_EQ(m.attention_weight_bytes(true), 187183840 + 3670016);
  EXPECT_EQ(m.expert_weight_bytes(), 44050944);
  EXPECT_EQ(m.dense_ffn_weight_bytes(), 396458496);
  EXPECT_EQ(m.total_weight_bytes(), 669443821920LL);
}

// Qwen3-235B-A22B (config.json): per layer attention 4096 × (64 + 8)·128 + 64·128 × 4096 =
// 71,303,168, norms 8,192, router 4096 × 128 = 524,288, experts 128 × 3 × 4096 × 1536 =
// 2,415,919,104 → 2,487,754,752; × 94 = 233,848,946,688; embedding + LM head 2 × 151936 × 4096
// + 4096 = 1,244,663,808. Total 235,093,610,496: the published 235,093,634,560 (the hub's
// safetensors count) less the per-head q/k norms masep does not model (94 × 2 × 128 = 24,064).
// KV: 94 × 2 × 4 × 128 × 2 B = 192,512 B per token.
TEST(Zoo, Qwen3_235B_A22BMatchesItsPublishedConfiguration) {
  const models::Model m = load_model("qwen3-235b-a22b");
  EXPECT_EQ(m.attention, models::AttentionKind::kGQA);
  EXPECT_EQ(m.total_params(), 235093634560LL - 94 * 2 * 128);
  EXPECT_EQ(m.kv_bytes_per_token(), 192512);
  // bf16: 2 bytes per decoder parameter.
  EXPECT_EQ(m.total_weight_bytes(), 2 * (m.total_params() - (2LL * 151936 * 4096 + 4096)));
}

// Qwen3-30B-A3B: per layer attention 2048 × (32 + 8)·128 + 32·128 × 2048 = 18,874,368, norms
// 4,096, router 262,144, experts 128 × 3 × 2048 × 768 = 603,979,776 → 623,120,384; × 48 =
// 29,909,778,432; embedding + head 2 × 151936 × 2048 + 2048 = 622,331,904. Total
// 30,532,110,336 = the hub's 30,532,122,624 (30.5B) less the q/k norms (48 × 256 = 12,288).
// KV: 48 × 2 × 4 × 128 × 2 B = 98,304 B per token.
TEST(Zoo, Qwen3_30B_A3BMatchesItsPublishedConfiguration) {
  const models::Model m = load_model("qwen3-30b-a3b");
  EXPECT_EQ(m.total_params(), 30532110336LL);
  EXPECT_EQ(m.total_params(), 30532122624LL - 48 * 2 * 128);
  EXPECT_NEAR(static_cast<double>(m.total_params()), 30.5e9, 30.5e9 * 2e-3);
  EXPECT_EQ(m.kv_bytes_per_token(), 98304);
}

// Mixtral-8x7B: per layer attention 4096 × (32 + 16)·128 + 4096 × 4096 = 41,943,040, norms
// 8,192, router 32,768, experts 8 × 3 × 4096 × 14336 = 1,409,286,144 → 1,451,270,144; × 32 =
// 46,440,644,608; embedding + head 2 × 32000 × 4096 + 4096 = 262,148,096. Total 46,702,792,704,
// exactly the hub's count (46.7B). KV: 32 × 2 × 8 × 128 × 2 B = 131,072 B per token.
TEST(Zoo, Mixtral8x7BMatchesItsPublishedConfiguration) {
  const models::Model m = load_model("mixtral-8x7b");
  EXPECT_EQ(m.total_params(), 46702792704LL);
  EXPECT_EQ(m.kv_bytes_per_token(), 131072);
}

// Mixtral-8x22B: per layer attention 6144 × (48 + 16)·128 + 6144 × 6144 = 88,080,384, norms
// 12,288, router 49,152, experts 8 × 3 × 6144 × 16384 = 2,415,919,104 → 2,504,060,928; × 56 =
// 140,227,411,968; embedding + head 2 × 32000 × 6144 + 6144 = 393,222,144. Total
// 140,620,634,112, exactly the hub's count (141B). KV: 56 × 2 × 8 × 128 × 2 B = 229,376 B.
TEST(Zoo, Mixtral8x22BMatchesItsPublishedConfiguration) {
  const models::Model m = load_model("mixtral-8x22b");
  EXPECT_EQ(m.total_params(), 140620634112LL);
  EXPECT_EQ(m.kv_bytes_per_token(), 229376);
}

// The paper's model (its stated dims and our documented assumptions; no vocabulary given):
// per layer QKV 4096 × 3·4096 = 50,331,648 + out 16,777,216 + norms 8,192 + router 65,536 +
// 16 experts × 3 × 4096 × 14336 = 2,818,572,288 → 2,885,754,880; × 4 layers = 11,543,019,520
// parameters, 23,086,039,040 B in bf16. KV: 4 × 2 × 32 × 128 × 2 B = 65,536 B per token.
TEST(Zoo, PaperModelMatchesItsStatedConfiguration) {
  const models::Model m = load_model("paper-moe");
  EXPECT_EQ(m.attention, models::AttentionKind::kMHA);
  EXPECT_EQ(m.total_params(), 11543019520LL);
  EXPECT_EQ(m.total_weight_bytes(), 23086039040LL);
  EXPECT_EQ(m.kv_bytes_per_token(), 65536);
}

// Every built-in model loads, validates, and has a positive size.
TEST(Zoo, EveryBuiltInModelValidates) {
  for (const auto& n : builtin_model_names()) {
    SCOPED_TRACE(n);
    const models::Model m = load_model(n);
    EXPECT_NO_THROW(m.validate());
    EXPECT_GT(m.total_weight_bytes(), 0);
    EXPECT_GT(m.kv_bytes_per_token(), 0);
  }
}

// ---- formats -------------------------------------------------------------------------------

// Scale bytes of each block-scaled format, by hand.
TEST(Precision, BlockScaleBytes) {
  // fp8: 256 × 300 matrix = 76,800 B + fp32 per 128 × 128 block: 2 × 3 blocks = 24 B.
  EXPECT_EQ(models::matrix_bytes(DType::kFP8, 256, 300), 76800 + 24);
  // fp8 vectors: 2 rows of 300 = 600 B + 3 tiles of 128 per row × 4 B × 2 rows = 24 B.
  EXPECT_EQ(models::vector_bytes(DType::kFP8, 2, 300), 600 + 24);
  // int8: 1 B per element + one fp32 scale per output column (matrix) or row (vector).
  EXPECT_EQ(models::matrix_bytes(DType::kINT8, 256, 300), 76800 + 1200);
  EXPECT_EQ(models::vector_bytes(DType::kINT8, 2, 300), 600 + 8);
  // fp4: half a byte + one 1-byte scale per 16 elements: 32 × 32 = 1024 elements → 512 + 64.
  EXPECT_EQ(models::matrix_bytes(DType::kFP4, 32, 32), 576);
  EXPECT_EQ(models::vector_bytes(DType::kFP4, 1, 17), 9 + 2);
  // bf16 / fp16: 2 B, no scales.
  EXPECT_EQ(models::matrix_bytes(DType::kBF16, 256, 300), 153600);
  EXPECT_EQ(models::vector_bytes(DType::kFP16, 2, 300), 1200);
}

// A GPU without a format is an error at the key that asked for it (file and line).
TEST(Precision, GpuWithoutTheFormatIsAnErrorNamingTheKey) {
  // fp8 weights on an A100 (no fp8 tensor cores): the key is model.precision.weights.
  const std::string text =
      "name: t\n"
      "model:\n"
      "  name: m\n  layers: 2\n  hidden: 256\n  heads: 4\n  head_dim: 64\n  experts: 4\n"
      "  top_k: 2\n  expert_ffn: 512\n"
      "  precision: {weights: fp8}\n"
      "topology: paper-16xa100\n"
      "plan: {kind: ma_separation, attention: {gpus: 1}, moe: {gpus: 1}}\n"
      "workload: {batch: 4, context: 16}\n";
  try {
    parse_scenario(text, "t.yaml");
    ADD_FAILURE() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), "model.precision.weights") << e.what();
    EXPECT_EQ(e.line(), 11) << e.what();
    EXPECT_NE(std::string(e.what()).find("A100"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("fp8_tflops"), std::string::npos) << e.what();
  }
  // fp4 on an H100 (no fp4): named likewise; fp4 on a B200 loads.
  EXPECT_THROW(parse_scenario(text, "t.yaml", {"model.precision.weights=fp4",
                                               "topology=dgx-h100"}),
               InputError);
  EXPECT_NO_THROW(parse_scenario(text, "t.yaml", {"model.precision.weights=fp4",
                                                  "topology=dgx-h100", "topology.gpu=B200-SXM-180GB",
                                                  "topology.intra_node.GBps=450"}));
  // The old single key still sets every class.
  std::string plain = text;
  plain.replace(plain.find("  precision: {weights: fp8}\n"), 28, "  dtype: fp16\n");
  const Scenario s = parse_scenario(plain, "t.yaml");
  EXPECT_EQ(s.model.precision.weights, DType::kFP16);
  EXPECT_EQ(s.model.precision.combine, DType::kFP16);
}

// ---- compiled ops of MLA, dense layers and FP8 ---------------------------------------------

// DeepSeek-V3 cut to 4 layers (3 dense, 1 MoE), 1 attention GPU + 1 MoE GPU, batch 4 with 100
// tokens of context, one step (KV lengths 101 each: kv_tokens 404).
Program compile_ds4() {
  const Scenario s = parse_scenario(
      "name: ds4\nmodel: deepseek-v3\ntopology: dgx-h100\n"
      "plan: {kind: ma_separation, attention: {gpus: 1}, moe: {gpus: 1}}\n"
      "workload: {batch: 4, context: 100, decode_steps: 1}\n",
      "ds4.yaml", {"model.layers=4"});
  return compile(s);
}

const Op& first_op(const Program& p, OpRole role, int layer) {
  for (const Op& o : p.ops) {
    if (o.role == role && o.layer == layer) return o;
  }
  throw std::logic_error(std::string("no op of role ") + to_string(role));
}

// Hand counts with T = 4 tokens, H = 7168, 128 heads, q_lora 1536, kv_lora 512, nope 128,
// rope 64, v 128; FP8 weights (one fp32 scale per 128 × 128 block), bf16 activations and KV.
TEST(MlaOps, FlopsAndBytesMatchHandCounts) {
  const Program p = compile_ds4();
  {
    // mla_down: 2 · 4 · 2112 · 7168 = 121,110,528 FLOPs; weights 7168 × 2112 + 4 · 56 · 17
    // = 15,142,624 B; + x (4 · 7168 · 2) + out (4 · 2112 · 2) = 15,216,864 B. Runs in fp8.
    const Op& o = first_op(p, OpRole::kMlaDown, 3);
    EXPECT_EQ(o.kind, OpKind::kGemm);
    EXPECT_EQ(o.dtype, DType::kFP8);
    EXPECT_DOUBLE_EQ(o.flops, 121110528.0);
    EXPECT_EQ(o.weight_bytes, 15142624);
    EXPECT_EQ(o.hbm_bytes, 15216864);
  }
  {
    // mla_q_up: 2 · 4 · 24576 · 1536 = 301,989,888; weights 1536 × 24576 + 4 · 12 · 192 =
    // 37,757,952; + 4 · 1536 · 2 + 4 · 24576 · 2 = 37,966,848.
    const Op& o = first_op(p, OpRole::kMlaQUp, 3);
    EXPECT_DOUBLE_EQ(o.flops, 301989888.0);
    EXPECT_EQ(o.weight_bytes, 37757952);
    EXPECT_EQ(o.hbm_bytes, 37966848);
  }
  {
    // mla_absorb_k: 128 heads × 2 · 4 · 512 · 128 = 67,108,864; W_UK per head 128 × 512 +
    // 4 · 1 · 4 = 65,552 B, × 128 = 8,390,656; + q_nope 512 rows × 128 · 2 + q_lat 512 × 512 · 2
    // = 9,046,016.
    const Op& o = first_op(p, OpRole::kMlaAbsorbK, 3);
    EXPECT_EQ(o.kind, OpKind::kGroupedGemm);
    EXPECT_EQ(o.group_m.size(), 128u);
    EXPECT_DOUBLE_EQ(o.flops, 67108864.0);
    EXPECT_EQ(o.weight_bytes, 8390656);
    EXPECT_EQ(o.hbm_bytes, 9046016);
  }
  {
    // mla_attention over 404 latent tokens: scores 2 · 404 · 128 · 576 = 59,572,224 + values
    // 2 · 404 · 128 · 512 = 52,953,088 → 112,525,312 FLOPs; bytes: cache 404 · 576 · 2 =
    // 465,408 + queries 4 · 128 · 576 · 2 = 589,824 + outputs 4 · 128 · 512 · 2 = 524,288 +
    // append 4 · 576 · 2 = 4,608 → 1,584,128. The cache per token is 576 elements, not
    // 2 · 128 · 128 as MHA would have.
    const Op& o = first_op(p, OpRole::kMlaAttention, 3);
    EXPECT_EQ(o.kind, OpKind::kAttention);
    EXPECT_EQ(o.kv_tokens, 404);
    EXPECT_EQ(o.kv_heads, 1);
    EXPECT_EQ(o.head_dim, 576);
    EXPECT_DOUBLE_EQ(o.flops, 112525312.0);
    EXPECT_EQ(o.hbm_bytes, 1584128);
  }
  {
    // mla_absorb_v: 128 × 2 · 4 · 128 · 512 = 67,108,864; W_UV per head 512 × 128 + 4 · 4 · 1
    // = 65,552, × 128 = 8,390,656; + 512 × 512 · 2 + 512 × 128 · 2 = 9,046,016.
    const Op& o = first_op(p, OpRole::kMlaAbsorbV, 3);
    EXPECT_DOUBLE_EQ(o.flops, 67108864.0);
    EXPECT_EQ(o.hbm_bytes, 9046016);
  }
  {
    // out_proj: 2 · 4 · 7168 · 16384 = 939,524,096; weights 16384 × 7168 + 4 · 128 · 56 =
    // 117,469,184.
    const Op& o = first_op(p, OpRole::kOutProj, 3);
    EXPECT_EQ(o.k, 128 * 128);
    EXPECT_DOUBLE_EQ(o.flops, 939524096.0);
    EXPECT_EQ(o.weight_bytes, 117469184);
  }
}

TEST(MlaOps, DenseLayersRunTheFfnOnTheAttentionSide) {
  const Program p = compile_ds4();
  // Layers 0-2 have no router, dispatch or experts; layer 3 has.
  for (const Op& o : p.ops) {
    if (o.layer < 3) {
      EXPECT_NE(o.role, OpRole::kRouterGemm);
      EXPECT_NE(o.role, OpRole::kDispatch);
      EXPECT_NE(o.role, OpRole::kExpertUp);
    } else {
      EXPECT_FALSE(is_dense_role(o.role));
    }
  }
  // One routing sample per MoE layer only.
  EXPECT_EQ(p.routing.size(), 1u);
  // dense_up: 2 · 4 · 36864 · 7168 = 2,113,929,216 FLOPs; weights 7168 × 36864 + 4 · 56 · 288
  // = 264,305,664 B.
  const Op& up = first_op(p, OpRole::kDenseUp, 0);
  EXPECT_EQ(up.rank, 0);
  EXPECT_DOUBLE_EQ(up.flops, 2113929216.0);
  EXPECT_EQ(up.weight_bytes, 264305664);
  // dense_down: 2 · 4 · 7168 · 18432 = 1,056,964,608; weights 18432 × 7168 + 4 · 144 · 56 =
  // 132,152,832; + in 4 · 18432 · 2 + out 4 · 7168 · 2 + residual 4 · 7168 · 2 = 132,414,976.
  const Op& down = first_op(p, OpRole::kDenseDown, 0);
  EXPECT_DOUBLE_EQ(down.flops, 1056964608.0);
  EXPECT_EQ(down.hbm_bytes, 132414976);
}

// Dispatch rows are fp8 (7168 + 4 · 56 scale bytes = 7,392 B), combine rows bf16 (14,336 B):
// 4 tokens × (8 routed + 1 shared) rows = 36 rows → 266,112 B out, 516,096 B back.
TEST(MlaOps, PayloadsFollowTheirFormats) {
  const Program p = compile_ds4();
  int64_t sent = 0, returned = 0;
  for (const Exchange& x : p.exchanges) {
    for (const Transfer& t : x.transfers) {
      const Op& src = p.ops[static_cast<size_t>(t.src_op)];
      (src.role == OpRole::kDispatch ? sent : returned) += t.bytes;
    }
  }
  EXPECT_EQ(sent, 266112);
  EXPECT_EQ(returned, 516096);
}

// The compiled FLOPs of a step equal the model's analytical count (MLA, dense layers mixed).
TEST(MlaOps, StepFlopsEqualTheModelsCount) {
  const Program p = compile_ds4();
  double f = 0;
  for (const Op& o : p.ops) f += o.flops;
  models::Model m = load_model("deepseek-v3");
  m.layers = 4;
  EXPECT_NEAR(f, m.step_flops(4, 404), m.step_flops(4, 404) * 1e-12);
}

// The KV cache of an MLA model is the latent, whole on every head-parallel GPU: DeepSeek-V3 cut
// to 4 layers with 8 sequences of 1,000 + 1 tokens holds 4 × 8 × 1,001 × 1,152 B on each of
// its 2 head-parallel GPUs.
TEST(MlaOps, MemoryHoldsTheLatentCache) {
  const Scenario s = parse_scenario(
      "name: m\nmodel: deepseek-v3\ntopology: dgx-h100\n"
      "plan: {kind: ma_separation, attention: {gpus: 2, head_parallel: 2}, moe: {gpus: 1}}\n"
      "workload: {batch: 8, context: 1000, decode_steps: 1}\n",
      "m.yaml", {"model.layers=4"});
  const auto mem = plan_memory(s);
  EXPECT_EQ(mem[0].kv_cache, 4LL * 8 * 1001 * 1152);
  EXPECT_EQ(mem[1].kv_cache, mem[0].kv_cache);  // replicated, not split by heads
}

// Shared experts of their own width (as Qwen2-MoE's 5632-wide shared expert beside 1408-wide
// routed ones) run in their own grouped GEMMs. Hidden 256, 4 routed experts of 512 (top-2), one
// shared expert of 1024, bf16; batch 4 on one MoE GPU: 8 routed rows and 4 shared rows.
//   shared_up   group_m [4], n = 2 · 1024, k = 256: 2 · 4 · 2048 · 256 = 4,194,304 FLOPs;
//               weights 256 · 2048 · 2 = 1,048,576 B, + in 4 · 256 · 2 + out 4 · 2048 · 2
//               = 1,067,008 B
//   shared_act  4 rows: in 4 · 2048 · 2 + out 4 · 1024 · 2 = 24,576 B
//   shared_down group_m [4], n = 256, k = 1024: 2,097,152 FLOPs; 524,288 + 8,192 + 2,048 =
//               534,528 B
TEST(SharedExperts, OwnWidthRunsInOwnGemms) {
  const Scenario s = parse_scenario(
      "name: sh\n"
      "model: {name: sh, layers: 2, hidden: 256, heads: 4, head_dim: 64, experts: 4, top_k: 2,\n"
      "        expert_ffn: 512, shared_experts: 1, shared_expert_ffn: 1024}\n"
      "topology: dgx-h100\n"
      "plan: {kind: ma_separation, attention: {gpus: 1}, moe: {gpus: 1}}\n"
      "workload: {batch: 4, context: 16, decode_steps: 1}\n",
      "sh.yaml");
  const Program p = compile(s);
  const Op& up = first_op(p, OpRole::kSharedUp, 0);
  EXPECT_EQ(up.group_m, std::vector<int32_t>{4});
  EXPECT_DOUBLE_EQ(up.flops, 4194304.0);
  EXPECT_EQ(up.hbm_bytes, 1067008);
  EXPECT_EQ(first_op(p, OpRole::kSharedAct, 0).hbm_bytes, 24576);
  const Op& down = first_op(p, OpRole::kSharedDown, 0);
  EXPECT_DOUBLE_EQ(down.flops, 2097152.0);
  EXPECT_EQ(down.hbm_bytes, 534528);
  const Op& routed = first_op(p, OpRole::kExpertUp, 0);
  EXPECT_EQ(routed.group_m.size(), 4u);  // the routed experts only
  int rows = 0;
  for (int32_t x : routed.group_m) rows += x;
  EXPECT_EQ(rows, 8);
  double f = 0;
  for (const Op& o : p.ops) f += o.flops;
  EXPECT_NEAR(f, s.model.step_flops(4, 4 * 17), f * 1e-12);
}

// Sliding-window layers alternating with full ones (GPT-OSS, Gemma 2): window 8, pattern
// [sliding, full] over 2 layers, 4 sequences of 16 + 1 tokens. Layer 0 attends to 4 × 8 = 32
// tokens (4 · 32 · 4 heads · 64 = 32,768 FLOPs), layer 1 to 4 × 17 = 68 (69,632 FLOPs); the
// cache of layer 0 holds 8 tokens per sequence: memory 4 seqs × (17 + 8) tokens × 2·4·64·2 B.
TEST(SlidingWindow, WindowedLayersAttendToTheWindow) {
  const Scenario s = parse_scenario(
      "name: sw\n"
      "model: {name: sw, layers: 2, hidden: 256, heads: 4, head_dim: 64, experts: 4, top_k: 2,\n"
      "        expert_ffn: 512, sliding_window: 8, sliding_pattern: [sliding, full]}\n"
      "topology: dgx-h100\n"
      "plan: {kind: ma_separation, attention: {gpus: 1}, moe: {gpus: 1}}\n"
      "workload: {batch: 4, context: 16, decode_steps: 1}\n",
      "sw.yaml");
  EXPECT_TRUE(s.model.is_sliding_layer(0));
  EXPECT_FALSE(s.model.is_sliding_layer(1));
  const Program p = compile(s);
  const Op& a0 = first_op(p, OpRole::kAttention, 0);
  const Op& a1 = first_op(p, OpRole::kAttention, 1);
  EXPECT_EQ(a0.kv_tokens, 32);
  EXPECT_EQ(a1.kv_tokens, 68);
  EXPECT_DOUBLE_EQ(a0.flops, 32768.0);
  EXPECT_DOUBLE_EQ(a1.flops, 69632.0);
  double f = 0;
  for (const Op& o : p.ops) f += o.flops;
  EXPECT_NEAR(f, s.model.step_flops(4, 68, 32), f * 1e-12);
  EXPECT_EQ(plan_memory(s)[0].kv_cache, 4LL * (17 + 8) * 2 * 4 * 64 * 2);
  // A pattern without a window, or a word other than sliding/full, is an error at its key.
  try {
    parse_scenario("name: sw\nmodel: {name: sw, layers: 2, hidden: 256, heads: 4, head_dim: 64,"
                   " experts: 4, top_k: 2, expert_ffn: 512, sliding_window: 8,"
                   " sliding_pattern: [sliding, local]}\ntopology: dgx-h100\n"
                   "plan: {kind: ma_separation, attention: {gpus: 1}, moe: {gpus: 1}}\n"
                   "workload: {batch: 4, context: 16}\n",
                   "bad.yaml");
    ADD_FAILURE() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), "model.sliding_pattern[1]") << e.what();
  }
}

// The Program JSON carries the new roles, op formats and model keys: read back, it is the same
// Program (same dump), MLA model and FP8 weight format included.
TEST(MlaOps, ProgramJsonRoundTrips) {
  const Program p = compile_ds4();
  std::ostringstream a;
  write_program_json(p, a);
  EXPECT_NE(a.str().find("\"mla_absorb_k\""), std::string::npos);
  std::istringstream in(a.str());
  const Program back = read_program_json(in, "dump");
  EXPECT_EQ(back.model.attention, models::AttentionKind::kMLA);
  EXPECT_EQ(back.model.mla.kv_lora_rank, 512);
  EXPECT_EQ(back.model.dense_layers, 3);
  EXPECT_EQ(back.model.precision.weights, DType::kFP8);
  EXPECT_EQ(back.model.precision.dispatch, DType::kFP8);
  EXPECT_EQ(first_op(back, OpRole::kMlaDown, 3).dtype, DType::kFP8);
  std::ostringstream b;
  write_program_json(back, b);
  EXPECT_EQ(a.str(), b.str());
}

}  // namespace
}  // namespace masep::plan
