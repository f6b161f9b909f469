// Unit tests of the CPU references (masep_kernels_ref) against hand-computed cases.
#include <gtest/gtest.h>

#include <cmath>

#include "masep/kernels/launch_config.hpp"
#include "masep/kernels/mla_attention_config.hpp"
#include "masep/kernels/reference.hpp"
#include "masep/kernels/weight_format.hpp"

namespace ref = masep::kernels::ref;
using ref::Bf16;

TEST(Bf16, RoundTripAndRounding) {
  EXPECT_EQ(ref::to_bf16(1.0f).bits, 0x3f80);
  EXPECT_EQ(ref::to_bf16(-2.0f).bits, 0xc000);
  EXPECT_FLOAT_EQ(ref::to_float(Bf16{0x3f80}), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(ref::to_bf16(1.0f + std::ldexp(1.0f, -8)).bits, 0x3f80);
  // 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 (even): rounds up.
  EXPECT_EQ(ref::to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)).bits, 0x3f82);
  EXPECT_TRUE(std::isnan(ref::to_float(ref::to_bf16(NAN))));
}

TEST(ReferenceAttention, SingleTokenReturnsItsValueAndAppends) {
  const int hd = 4, max_len = 3;
  std::vector<Bf16> q = ref::to_bf16({0.5f, -1.f, 2.f, 0.25f});
  std::vector<Bf16> k_new = ref::to_bf16({1.f, 2.f, 3.f, 4.f});
  std::vector<Bf16> v_new = ref::to_bf16({-1.f, 0.5f, 7.f, 3.f});
  std::vector<Bf16> kc(max_len * hd, Bf16{0x7fc0}), vc(max_len * hd, Bf16{0x7fc0});
  std::vector<float> lse;
  auto out = ref::decode_attention(q, k_new, v_new, kc, vc, {0}, 1, 1, hd, max_len, 0.f, &lse);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_FLOAT_EQ(out[0], -1.f);
  EXPECT_FLOAT_EQ(out[2], 7.f);
  EXPECT_EQ(kc[3].bits, k_new[3].bits);
  EXPECT_EQ(vc[1].bits, v_new[1].bits);
  // lse of one score = the score: (0.5 - 2 + 6 + 1) / sqrt(4)
  EXPECT_NEAR(lse[0], 5.5f / 2.f, 1e-5f);
}

TEST(ReferenceAttention, TwoTokensWeightedBySoftmaxAndGqaSharesKv) {
  // 2 query heads, 1 kv head (GQA), head_dim 2, cache holds two tokens, nothing appended.
  const int hd = 2, max_len = 2;
  std::vector<Bf16> q = ref::to_bf16({1.f, 0.f, 0.f, 0.f});
  std::vector<Bf16> kc = ref::to_bf16({1.f, 0.f, 0.f, 0.f});
  std::vector<Bf16> vc = ref::to_bf16({2.f, 0.f, 0.f, 4.f});
  auto out = ref::decode_attention(q, {}, {}, kc, vc, {2}, 2, 1, hd, max_len, 1.f);
  const double w0 = std::exp(1.0) / (std::exp(1.0) + 1.0);
  EXPECT_NEAR(out[0], 2 * w0, 1e-6);
  EXPECT_NEAR(out[1], 4 * (1 - w0), 1e-6);
  // head 1 has a zero query: plain mean of the values.
  EXPECT_NEAR(out[2], 1.0, 1e-6);
  EXPECT_NEAR(out[3], 2.0, 1e-6);
  EXPECT_THROW(ref::decode_attention(q, {}, {}, kc, vc, {3}, 2, 1, hd, max_len, 1.f),
               std::invalid_argument);
}

// MLA, kl = 2, dr = 1, two heads over one latent stream: the rope part adds to the score, the
// output is the softmax-weighted c_kv (never k_rope); the new token lands at slot kv_lens[b].
TEST(ReferenceMlaAttention, TwoTokensHandComputed) {
  const int kl = 2, dr = 1, max_len = 3;
  // Token 0 in the cache: c = (1, 0), r = (2); new token: c = (0, 1), r = (-1).
  std::vector<Bf16> cache = ref::to_bf16({1.f, 0.f, 2.f, 9.f, 9.f, 9.f, 9.f, 9.f, 9.f});
  const std::vector<Bf16> c_new = ref::to_bf16({0.f, 1.f}),
                          r_new = ref::to_bf16(std::vector<float>{-1.f});
  // Head 0: q_lat = (1, 1), q_rope = (0.5): scores 1 + 1 = 2 and 1 - 0.5 = 0.5.
  // Head 1: q_lat = (0, 0), q_rope = (0): equal scores, the mean.
  const std::vector<Bf16> q_lat = ref::to_bf16({1.f, 1.f, 0.f, 0.f});
  const std::vector<Bf16> q_rope = ref::to_bf16({0.5f, 0.f});
  std::vector<float> lse;
  auto out = ref::mla_decode_attention(q_lat, q_rope, c_new, r_new, cache, {1}, 2, kl, dr, max_len,
                                       1.f, &lse);
  ASSERT_EQ(out.size(), 4u);
  const double w0 = 1.0 / (1.0 + std::exp(0.5 - 2.0));  // weight of token 0 for head 0
  EXPECT_NEAR(out[0], w0, 1e-6);
  EXPECT_NEAR(out[1], 1.0 - w0, 1e-6);
  EXPECT_NEAR(out[2], 0.5, 1e-6);
  EXPECT_NEAR(out[3], 0.5, 1e-6);
  EXPECT_NEAR(lse[0], std::log(std::exp(2.0) + std::exp(0.5)), 1e-5);
  EXPECT_NEAR(lse[1], std::log(2.0), 1e-6);
  // Appended at slot 1; slot 2 untouched.
  EXPECT_EQ(ref::to_float(cache[3]), 0.f);
  EXPECT_EQ(ref::to_float(cache[4]), 1.f);
  EXPECT_EQ(ref::to_float(cache[5]), -1.f);
  EXPECT_EQ(ref::to_float(cache[6]), 9.f);
  // Bad input is refused.
  EXPECT_THROW(
      ref::mla_decode_attention(q_lat, q_rope, c_new, r_new, cache, {3}, 2, kl, dr, max_len, 1.f),
      std::invalid_argument);
  EXPECT_THROW(
      ref::mla_decode_attention(q_lat, q_rope, c_new, r_new, cache, {0}, 2, kl, dr, max_len, 0.f),
      std::invalid_argument);
}

// With q_rope = 0, MLA is GQA with one kv head whose K and V are both c_kv.
TEST(ReferenceMlaAttention, ZeroRopeEqualsSharedKvAttention) {
  const int kl = 8, dr = 4, heads = 3, max_len = 5, batch = 2;
  std::vector<float> f(std::size_t(batch) * max_len * (kl + dr));
  for (std::size_t i = 0; i < f.size(); ++i) f[i] = std::sin(0.7 * i);
  std::vector<Bf16> cache = ref::to_bf16(f);
  std::vector<float> qf(std::size_t(batch) * heads * kl);
  for (std::size_t i = 0; i < qf.size(); ++i) qf[i] = std::cos(1.3 * i);
  const std::vector<Bf16> q_lat = ref::to_bf16(qf);
  const std::vector<Bf16> q_rope(std::size_t(batch) * heads * dr, ref::to_bf16(0.f));
  std::vector<Bf16> kc(std::size_t(batch) * max_len * kl);
  for (int b = 0; b < batch; ++b) {
    for (int t = 0; t < max_len; ++t) {
      for (int e = 0; e < kl; ++e) {
        kc[(std::size_t(b) * max_len + t) * kl + e] =
            cache[(std::size_t(b) * max_len + t) * (kl + dr) + e];
      }
    }
  }
  std::vector<Bf16> vc = kc;
  const std::vector<std::int32_t> lens = {5, 2};
  auto mla =
      ref::mla_decode_attention(q_lat, q_rope, {}, {}, cache, lens, heads, kl, dr, max_len, 0.3f);
  auto gqa = ref::decode_attention(q_lat, {}, {}, kc, vc, lens, heads, 1, kl, max_len, 0.3f);
  ASSERT_EQ(mla.size(), gqa.size());
  for (std::size_t i = 0; i < mla.size(); ++i) EXPECT_NEAR(mla[i], gqa[i], 1e-6) << i;
}

TEST(MlaAttentionConfig, BlocksSplitsAndWorkspace) {
  namespace mk = masep::kernels;
  EXPECT_EQ(mk::mla_attention_block_heads(1), 16);
  EXPECT_EQ(mk::mla_attention_block_heads(16), 16);
  EXPECT_EQ(mk::mla_attention_block_heads(17), 32);
  EXPECT_EQ(mk::mla_attention_block_heads(48), 32);
  EXPECT_EQ(mk::mla_attention_block_heads(128), 64);
  EXPECT_EQ(mk::mla_attention_tile_tokens(16), 64);
  EXPECT_EQ(mk::mla_attention_tile_tokens(128), 32);
  // One split: no workspace. Else 512 fp32 + max + sum per (sequence, head, split), 256-aligned.
  EXPECT_EQ(mk::mla_attention_workspace_bytes(8, 16, 1), 0u);
  EXPECT_EQ(mk::mla_attention_workspace_bytes(2, 16, 3),
            2u * 16 * 3 * 512 * 4 + 2 * 512);  // 96 rows: 384 B -> 512
  // Large batches fill the GPU without splitting; b=1 with 128 heads (2 blocks) splits a long
  // context over the SMs; a context of one tile never splits.
  EXPECT_EQ(mk::mla_attention_num_splits(128, 16, 4096, 132), 1);
  const int s = mk::mla_attention_num_splits(1, 128, 8192, 132);
  EXPECT_GE(s, 32);
  EXPECT_LE(s, 64);
  EXPECT_EQ(mk::mla_attention_num_splits(1, 16, 64, 132), 1);
}

TEST(ReferenceNorm, RmsnormAndResidual) {
  std::vector<Bf16> x = ref::to_bf16({3.f, -3.f, 3.f, -3.f});
  std::vector<Bf16> w = ref::to_bf16({1.f, 2.f, 0.5f, 1.f});
  auto out = ref::rmsnorm(x, w, 1, 4, 0.f);
  EXPECT_NEAR(out[0], 1.f, 1e-6);
  EXPECT_NEAR(out[1], -2.f, 1e-6);
  EXPECT_NEAR(out[2], 0.5f, 1e-6);
  std::vector<Bf16> res = ref::to_bf16({1.f, 1.f, 1.f, 1.f});
  auto out2 = ref::add_rmsnorm(res, x, w, 1, 4, 0.f);
  EXPECT_FLOAT_EQ(ref::to_float(res[0]), 4.f);
  EXPECT_FLOAT_EQ(ref::to_float(res[1]), -2.f);
  const float rms = std::sqrt((16.f + 4.f + 16.f + 4.f) / 4.f);
  EXPECT_NEAR(out2[0], 4.f / rms, 1e-6);
  EXPECT_NEAR(out2[1], -4.f / rms, 1e-6);
}

TEST(ReferenceRope, IdentityAtZeroAndRotationOtherwise) {
  std::vector<Bf16> x = ref::to_bf16({1.f, 0.f, 0.5f, 2.f});  // 2 heads of head_dim 2
  auto same = ref::rope(x, {0}, 1, 2, 2, 10000.f);
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(same[i], ref::to_float(x[i]));
  auto rot = ref::rope(x, {1}, 1, 2, 2, 10000.f);  // inv_freq 1: angle 1 rad
  EXPECT_NEAR(rot[0], std::cos(1.0), 1e-6);
  EXPECT_NEAR(rot[1], std::sin(1.0), 1e-6);
  EXPECT_NEAR(rot[2] * rot[2] + rot[3] * rot[3], 0.25 + 4.0, 1e-5);  // norm kept
}

TEST(ReferenceRouter, TopKRenormalisedCountsAndTies) {
  // token 0: experts 2 > 0 > 1 = 3; token 1: tie between 1 and 3 goes to 1.
  std::vector<float> logits = {1.f, 0.f, 2.f, 0.f, 0.f, 5.f, 0.f, 5.f};
  auto r = ref::router_topk(logits, 2, 4, 2, true);
  EXPECT_EQ(r.topk_ids, (std::vector<std::int32_t>{2, 0, 1, 3}));
  EXPECT_NEAR(r.topk_weights[0], std::exp(2.0) / (std::exp(2.0) + std::exp(1.0)), 1e-6);
  EXPECT_NEAR(r.topk_weights[0] + r.topk_weights[1], 1.f, 1e-6);
  EXPECT_NEAR(r.topk_weights[2], 0.5f, 1e-6);
  EXPECT_EQ(r.expert_counts, (std::vector<std::int32_t>{1, 1, 1, 1}));
  auto raw = ref::router_topk(logits, 2, 4, 1, false);
  const double z = std::exp(1.0) + 1 + std::exp(2.0) + 1;
  EXPECT_NEAR(raw.topk_weights[0], std::exp(2.0) / z, 1e-6);
}

TEST(ReferencePermute, StableOrderCapacityAndCombineInverse) {
  // 3 tokens, k = 2, 3 experts; expert 2 receives nothing.
  std::vector<std::int32_t> ids = {1, 0, 1, 0, 0, 1};
  std::vector<Bf16> x = ref::to_bf16({1.f, 2.f, 3.f, 4.f, 5.f, 6.f});  // hidden 2
  auto p = ref::permute(x, ids, 3, 2, 3, 2, 0);
  EXPECT_EQ(p.expert_offsets, (std::vector<std::int32_t>{0, 3, 6, 6}));
  // expert 0 gets assignments 1, 3, 4 (rows 0..2); expert 1 gets 0, 2, 5 (rows 3..5).
  EXPECT_EQ(p.permuted_row, (std::vector<std::int32_t>{3, 0, 4, 1, 2, 5}));
  EXPECT_EQ(p.source_token, (std::vector<std::int32_t>{0, 1, 2, 0, 1, 2}));
  EXPECT_FLOAT_EQ(ref::to_float(p.permuted_x[2 * 2 + 1]), 6.f);  // row 2 = token 2
  // Combine with weights summing to one and identity experts gives x back.
  std::vector<float> w = {0.25f, 0.75f, 0.5f, 0.5f, 0.1f, 0.9f};
  auto back = ref::combine(p.permuted_x, p.permuted_row, w, {}, 3, 2, 2);
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(back[i], ref::to_float(x[i]), 1e-6);
  // Capacity 2: expert 0's third assignment (a = 4) and expert 1's (a = 5) are dropped.
  auto c = ref::permute(x, ids, 3, 2, 3, 2, 2);
  EXPECT_EQ(c.permuted_row, (std::vector<std::int32_t>{2, 0, 3, 1, -1, -1}));
  EXPECT_EQ(c.source_token, (std::vector<std::int32_t>{0, 1, 0, 1, -1, -1}));
  EXPECT_TRUE(std::isnan(ref::to_float(c.permuted_x[4 * 2])));
  auto res = ref::combine(c.permuted_x, c.permuted_row, w, x, 3, 2, 2);
  EXPECT_NEAR(res[4], 5.f, 1e-6);  // token 2 fully dropped: residual only
}

TEST(ReferenceActivation, SwigluAndGelu) {
  std::vector<Bf16> in = ref::to_bf16({0.f, 2.f, 3.f, 4.f});  // ffn 2: gate {0,2}, up {3,4}
  auto s = ref::swiglu(in, 1, 2);
  EXPECT_FLOAT_EQ(s[0], 0.f);
  EXPECT_NEAR(s[1], 2.0 / (1 + std::exp(-2.0)) * 4.0, 1e-5);
  auto g = ref::gelu(ref::to_bf16({0.f, 10.f, -10.f, 1.f}), 1, 4);
  EXPECT_FLOAT_EQ(g[0], 0.f);
  EXPECT_NEAR(g[1], 10.f, 1e-4);
  EXPECT_NEAR(g[2], 0.f, 1e-4);
  EXPECT_NEAR(g[3], 0.841192f, 1e-4);
}

TEST(ReferenceExpertFfn, TinyHandComputed) {
  // 2 experts, hidden 2, ffn 1, GELU: expert 0 has rows 0..1, expert 1 none.
  std::vector<Bf16> x = ref::to_bf16({1.f, 2.f, -1.f, 0.5f});
  std::vector<Bf16> w_up = ref::to_bf16({1.f, 1.f, 9.f, 9.f});     // [E, ffn=1, hidden=2]
  std::vector<Bf16> w_down = ref::to_bf16({2.f, -1.f, 9.f, 9.f});  // [E, hidden=2, ffn=1]
  auto y = ref::expert_ffn(x, w_up, w_down, {0, 2, 2}, 2, 2, 1, false);
  const float g0 = ref::round_bf16(ref::gelu(ref::to_bf16(std::vector<float>{3.f}), 1, 1)[0]);
  EXPECT_NEAR(y[0], 2 * g0, 1e-6);
  EXPECT_NEAR(y[1], -g0, 1e-6);
  const float g1 = ref::round_bf16(ref::gelu(ref::to_bf16(std::vector<float>{-0.5f}), 1, 1)[0]);
  EXPECT_NEAR(y[2], 2 * g1, 1e-6);
}

TEST(ReferenceGroupedGemm, TinyHandComputedWithGapsAndEmptyGroup) {
  // k = 2, n = 2; group 0 has row 0, group 1 none, group 2 rows 1..2. The weights of group 2
  // start at element 6 (a gap of 2 after group 0's [2, 2] block; group 1's offset unused).
  std::vector<Bf16> x = ref::to_bf16({1.f, 2.f, 3.f, -1.f, 0.f, 4.f});
  std::vector<Bf16> w = ref::to_bf16({1.f, 0.f, 0.f, 1.f, 9.f, 9.f, 2.f, 1.f, -1.f, 0.5f});
  auto y = ref::grouped_gemm(x, w, {0, 4, 6}, {0, 1, 1, 3}, 2, 2);
  ASSERT_EQ(y.size(), 6u);
  EXPECT_FLOAT_EQ(y[0], 1.f);   // [1,2]·[1,0]
  EXPECT_FLOAT_EQ(y[1], 2.f);   // [1,2]·[0,1]
  EXPECT_FLOAT_EQ(y[2], 5.f);   // [3,-1]·[2,1]
  EXPECT_FLOAT_EQ(y[3], -3.5f); // [3,-1]·[-1,0.5]
  EXPECT_FLOAT_EQ(y[4], 4.f);   // [0,4]·[2,1]
  EXPECT_FLOAT_EQ(y[5], 2.f);   // [0,4]·[-1,0.5]
}

// e4m3 decoding by hand: 0x38 = 2^(7-7) = 1; 0x40 = 2; 0x3c = 1.5; 0xc4 = -(2 + 2/4 · 1) = -3
// (exponent 8, mantissa 4: 2^1 · 1.5); 0x01 = 2^-9 (smallest subnormal); 0x07 = 7 · 2^-9;
// 0x08 = 2^-6 (smallest normal); 0x7e = 448 (largest finite).
TEST(ReferenceFp8, E4m3DecodesNormalsSubnormalsAndExtremes) {
  EXPECT_EQ(ref::fp8_e4m3_to_float(0x38), 1.f);
  EXPECT_EQ(ref::fp8_e4m3_to_float(0x40), 2.f);
  EXPECT_EQ(ref::fp8_e4m3_to_float(0x3c), 1.5f);
  EXPECT_EQ(ref::fp8_e4m3_to_float(0xc4), -3.f);
  EXPECT_EQ(ref::fp8_e4m3_to_float(0x01), std::ldexp(1.f, -9));
  EXPECT_EQ(ref::fp8_e4m3_to_float(0x07), 7 * std::ldexp(1.f, -9));
  EXPECT_EQ(ref::fp8_e4m3_to_float(0x08), std::ldexp(1.f, -6));
  EXPECT_EQ(ref::fp8_e4m3_to_float(0x7e), 448.f);
  EXPECT_EQ(ref::fp8_e4m3_to_float(0x00), 0.f);
  EXPECT_TRUE(std::signbit(ref::fp8_e4m3_to_float(0x80)));
}

// An FP8 block-scaled group by hand: n = 2, k = 2 (one scale block), scale 0.5; weights
// [[1, 2], [-3, 1.5]] as e4m3 → W = [[0.5, 1], [-1.5, 0.75]]; rows [2, 4] and [1, -1].
TEST(ReferenceFp8, GroupedGemmAppliesTheBlockScale) {
  std::vector<std::uint8_t> w = {0x38, 0x40, 0xc4, 0x3c};
  const float scale = 0.5f;
  w.resize(w.size() + 4);
  std::memcpy(w.data() + 4, &scale, 4);
  auto y = ref::grouped_gemm_fp8(ref::to_bf16({2.f, 4.f, 1.f, -1.f}), w, {0}, {0, 2}, 2, 2);
  ASSERT_EQ(y.size(), 4u);
  EXPECT_FLOAT_EQ(y[0], 5.f);     // 2·0.5 + 4·1
  EXPECT_FLOAT_EQ(y[1], 0.f);     // 2·-1.5 + 4·0.75
  EXPECT_FLOAT_EQ(y[2], -0.5f);   // 0.5 - 1
  EXPECT_FLOAT_EQ(y[3], -2.25f);  // -1.5 - 0.75
}

// The FP8 storage size: [256, 384] → 98,304 bytes + 2 × 3 scales · 4 = 98,328 → 98,336 (16-byte
// padding); bf16 [3, 5] = 30 → 32.
TEST(WeightFormat, BytesIncludeScalesAndPadding) {
  namespace mk = masep::kernels;
  EXPECT_EQ(mk::weight_bytes(mk::WeightFormat::kFP8Block, 256, 384), 98336);
  EXPECT_EQ(mk::weight_bytes(mk::WeightFormat::kFP8Block, 1, 16), 32);
  EXPECT_EQ(mk::weight_bytes(mk::WeightFormat::kBF16, 3, 5), 32);
}

// The router's grid (a pure function, checked here without a GPU): blocks never exceed the
// thread count the kernels are compiled for (__launch_bounds__), so every launch fits on an
// SM; one block up to 512 tokens (<= 32 experts) or 1024 (more); the grid covers every token (the
// kernels loop over tokens with a stride of the grid). 1024 tokens with <= 32 experts used to ask
// for 1024 threads of a 70-register kernel and failed to launch.
TEST(RouterLaunchConfig, BlockSizesStayWithinLaunchBounds) {
  namespace mk = masep::kernels;
  for (int experts : {1, 5, 8, 16, 31, 32, 33, 60, 256}) {
    for (int tokens : {1, 31, 32, 33, 255, 256, 257, 511, 512, 513, 1000, 1023, 1024, 1025, 2000,
                       4096, 100000}) {
      const mk::LaunchConfig c = mk::router_launch_config(tokens, experts);
      const int max_threads = experts <= 32 ? mk::kRouterSmallMaxThreads : mk::kRouterWideThreads;
      SCOPED_TRACE(::testing::Message() << tokens << " tokens, " << experts << " experts");
      EXPECT_GT(c.threads, 0);
      EXPECT_EQ(c.threads % 32, 0);
      EXPECT_LE(c.threads, max_threads);
      EXPECT_GE(c.blocks, 1);
      EXPECT_EQ(c.single_block, tokens <= (experts <= 32 ? mk::kRouterSmallSingleBlockTokens
                                                         : mk::kRouterSingleBlockTokens));
      if (c.single_block) EXPECT_EQ(c.blocks, 1);
      if (experts <= 32) {
        // One thread per token and pass: at most two passes (1024 tokens on 512 threads).
        const long passes =
            (tokens + long{c.blocks} * c.threads - 1) / (long{c.blocks} * c.threads);
        EXPECT_LE(passes, 2) << "threads " << c.threads << " blocks " << c.blocks;
        EXPECT_LT(long{c.threads} * (c.blocks - 1), tokens) << "a block with no token";
      }
    }
  }
  EXPECT_EQ(mk::router_launch_config(512, 16).threads, mk::kRouterSmallMaxThreads);
  EXPECT_EQ(mk::router_launch_config(512, 32).blocks, 1);
  EXPECT_EQ(mk::router_launch_config(1024, 32).blocks, 4);
  EXPECT_EQ(mk::router_launch_config(1024, 33).blocks, 1);
  EXPECT_EQ(mk::router_launch_config(256, 16).threads, 256);
  EXPECT_EQ(mk::router_launch_config(1, 16).threads, 32);
}
