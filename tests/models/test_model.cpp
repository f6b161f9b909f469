#include <gtest/gtest.h>

#include <stdexcept>

#include "masep/models/model.hpp"

using masep::models::Activation;
using masep::models::Model;

namespace {
Model paper() {
  Model m;
  m.name = "paper";
  m.layers = 4;
  m.hidden = 4096;
  m.heads = 32;
  m.kv_heads = 32;
  m.head_dim = 128;
  m.experts = 16;
  m.top_k = 2;
  m.expert_ffn = 14336;
  return m;
}
}  // namespace

TEST(Model, ExpertWeightBytesSwiGLU) {
  const Model m = paper();
  // gate+up (4096 x 28672) and down (14336 x 4096), bf16.
  EXPECT_EQ(m.expert_weight_bytes(), (4096LL * 28672 + 14336LL * 4096) * 2);
}

TEST(Model, ExpertWeightBytesGELUHasNoGate) {
  Model m = paper();
  m.activation = Activation::kGELU;
  EXPECT_EQ(m.expert_weight_bytes(), (4096LL * 14336 * 2) * 2);
}

TEST(Model, LayerFlopsCountsEveryGemm) {
  const Model m = paper();
  const double t = 8, kv = 8 * 100;
  const double expect = 2 * t * 4096 * (96 * 128) + 4 * kv * 32 * 128 + 2 * t * 4096 * 4096 +
                        2 * t * 4096 * 16 + t * 2 * (2 * 4096.0 * 28672 + 2 * 14336.0 * 4096);
  EXPECT_DOUBLE_EQ(m.layer_flops(8, 800), expect);
}

TEST(Model, ValidateRejectsIndivisibleKvHeads) {
  Model m = paper();
  m.kv_heads = 5;
  EXPECT_THROW(m.validate(), std::invalid_argument);
  m = paper();
  m.top_k = 17;
  EXPECT_THROW(m.validate(), std::invalid_argument);
  m = paper();
  m.layers = 0;
  EXPECT_THROW(m.validate(), std::invalid_argument);
  EXPECT_NO_THROW(paper().validate());
}

// DeepSeek-V3's MLA dims (config.json) decoding T = 4 tokens over kv = 404 cached tokens, by
// hand (2 FLOPs per multiply-add): W_DQ|W_DKV 2·4·7168·2112 = 121,110,528; W_UQ 2·4·1536·24576
// = 301,989,888; q_nope·W_UK 2·4·128·128·512 = 67,108,864; scores 2·404·128·576 = 59,572,224
// + values 2·404·128·512 = 52,953,088; ·W_UV 2·4·128·512·128 = 67,108,864; W_O 2·4·16384·7168
// = 939,524,096 → attention 1,609,367,552. MoE layer adds the router 2·4·7168·256 = 14,680,064
// and 4 × (8 + 1) expert rows × (2·7168·4096 + 2·2048·7168) = 3,170,893,824 → 4,794,941,440.
// A dense layer adds 4 × (2·7168·36864 + 2·18432·7168) = 3,170,893,824 instead.
TEST(Model, MlaLayerFlopsByHand) {
  Model m;
  m.name = "dsv3";
  m.layers = 61;
  m.hidden = 7168;
  m.heads = 128;
  m.kv_heads = 1;
  m.head_dim = 192;
  m.attention = masep::models::AttentionKind::kMLA;
  m.mla = {1536, 512, 128, 64, 128};
  m.experts = 256;
  m.top_k = 8;
  m.expert_ffn = 2048;
  m.shared_experts = 1;
  m.dense_layers = 3;
  m.dense_ffn = 18432;
  ASSERT_NO_THROW(m.validate());
  EXPECT_DOUBLE_EQ(m.attention_flops(4, 404), 1609367552.0);
  EXPECT_DOUBLE_EQ(m.layer_flops(3, 4, 404), 4794941440.0);
  EXPECT_DOUBLE_EQ(m.layer_flops(0, 4, 404), 1609367552.0 + 3170893824.0);
  EXPECT_EQ(m.kv_elements_per_token_per_layer(), 576);
  // An MLA head_dim other than nope + rope is rejected.
  m.head_dim = 128;
  EXPECT_THROW(m.validate(), std::invalid_argument);
}
