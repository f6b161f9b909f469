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
