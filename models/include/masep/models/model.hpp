// The model description: the architecture of one MoE transformer decoder, as plain validated
// data, plus the exact FLOP and byte counts of its per-layer operators. Everything here is
// per decode token unless a name says otherwise. No YAML here: plan/ parses files into this.
#pragma once

#include <cstdint>
#include <string>

namespace masep::models {

/// Element type of weights and activations.
enum class DType { kBF16, kFP16, kFP8 };
/// Expert FFN activation. SwiGLU has gate and up projections (2 × ffn columns), GELU one.
enum class Activation { kSwiGLU, kGELU };

/// Bytes per element of a dtype (bf16/fp16: 2, fp8: 1).
int dtype_bytes(DType t);
const char* to_string(DType t);
const char* to_string(Activation a);

/// One MoE transformer. Plain value type; `validate()` checks the invariants the rest of
/// masep relies on and throws std::invalid_argument naming the offending field.
struct Model {
  std::string name;
  int layers = 0;          ///< decoder layers, each attention + MoE
  int hidden = 0;          ///< model width (elements)
  int heads = 0;           ///< query heads
  int kv_heads = 0;        ///< key/value heads (== heads for MHA, fewer for GQA)
  int head_dim = 0;        ///< elements per head
  int experts = 0;         ///< routed experts per layer
  int top_k = 0;           ///< experts each token is routed to
  int expert_ffn = 0;      ///< intermediate width of one routed expert
  int shared_experts = 0;  ///< always-active experts per layer (each expert_ffn wide)
  Activation activation = Activation::kSwiGLU;
  DType dtype = DType::kBF16;

  void validate() const;

  // ---- Derived sizes (elements or bytes, per layer) --------------------------------------
  /// Columns of the fused QKV projection: (heads + 2·kv_heads)·head_dim.
  int64_t qkv_columns() const;
  /// Attention weights of one layer in bytes: QKV + output projection + 2 RMSNorm vectors
  /// + router (hidden × experts).
  int64_t attention_weight_bytes() const;
  /// Weights of one expert in bytes (gate+up+down for SwiGLU, up+down for GELU).
  int64_t expert_weight_bytes() const;
  /// Columns of an expert's first GEMM: 2·ffn for SwiGLU, ffn for GELU.
  int64_t expert_in_columns() const;
  /// KV cache bytes per token per layer (K and V, all kv heads).
  int64_t kv_bytes_per_token_per_layer() const;
  /// Total weight bytes of the model (all layers, all experts).
  int64_t total_weight_bytes() const;

  /// Analytical FLOPs of one layer for `tokens` decode tokens whose KV lengths sum to
  /// `kv_tokens` (2 FLOPs per multiply-add; GEMMs, attention scores and values, router and
  /// expert GEMMs; element-wise work not counted). The plan compiler's total must equal it.
  double layer_flops(int64_t tokens, int64_t kv_tokens) const;
};

}  // namespace masep::models
