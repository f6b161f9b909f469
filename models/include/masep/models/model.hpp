// The model description: the architecture of one MoE transformer decoder, as plain validated
// data, plus the exact FLOP and byte counts of its per-layer operators. Everything here is
// per decode token unless a name says otherwise. No YAML here: plan/ parses files into this.
//
// Attention kinds. MHA (kv_heads == heads) and GQA (kv_heads < heads) project the layer input
// to q, k and v heads of head_dim and cache k and v. MLA (Multi-head Latent Attention,
// DeepSeek-V2/V3) caches one compressed latent of kv_lora_rank elements plus a shared rotary
// key of qk_rope_head_dim elements per token and layer, and decodes with the up-projections
// absorbed (see Mla below and docs/simulator-model.md).
//
// Layer mix. Layers 0 .. dense_layers-1 are dense: attention followed by one SwiGLU/GELU FFN
// of width dense_ffn (no router, no experts); the others are MoE layers (routed experts of
// width expert_ffn, plus shared_experts always-active experts of width shared_expert_ffn).
//
// Precision. Every tensor class has its own element format (Precision); the `dtype` key sets
// all of them. Block-scaled formats count their scale bytes (tensor_bytes below). Small
// weights (RMSNorm vectors, the router gate) stay 16-bit whatever the formats, as published
// checkpoints ship them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace masep::models {

/// Element format of one tensor class.
///   bf16, fp16  2 bytes per element, no scales
///   fp8         e4m3, 1 byte, block-scaled as DeepSeek-V3: weight matrices one fp32 scale per
///               128 × 128 block, vectors (activations, KV, payloads) one fp32 scale per 128
///               consecutive elements of a row
///   int8        1 byte; weights one fp32 scale per output column, vectors one per row
///   fp4         e2m1 (NVFP4), half a byte, one 1-byte (e4m3) scale per 16 consecutive
///               elements, weights and vectors alike (the per-tensor fp32 scale is not counted)
enum class DType : uint8_t { kBF16, kFP16, kFP8, kINT8, kFP4 };
inline constexpr int kDTypeCount = 5;
/// Expert FFN activation. SwiGLU has gate and up projections (2 × ffn columns), GELU one.
enum class Activation { kSwiGLU, kGELU };
/// How attention projects and caches keys and values.
enum class AttentionKind : uint8_t { kMHA, kGQA, kMLA };

/// Bytes per element of a dtype without its scales, rounded up (bf16/fp16: 2, fp8/int8: 1,
/// fp4: 1). Exact sizes: tensor_bytes / vector_bytes.
int dtype_bytes(DType t);
const char* to_string(DType t);
const char* to_string(Activation a);
const char* to_string(AttentionKind a);

/// Bytes of a weight matrix of `in` rows (the GEMM's k) × `out` columns (its n) in format t,
/// scales included (see DType). 2·in·out for bf16/fp16.
int64_t matrix_bytes(DType t, int64_t in, int64_t out);
/// Bytes of `rows` vectors of `cols` elements each (activations, KV entries, payloads) in
/// format t, scales included. 2·rows·cols for bf16/fp16.
int64_t vector_bytes(DType t, int64_t rows, int64_t cols);

/// The format of each tensor class. Defaults: bf16 everywhere.
struct Precision {
  DType weights = DType::kBF16;      ///< projection, dense-FFN and expert weight matrices
  DType kv_cache = DType::kBF16;     ///< cached keys/values (MLA: latent + rope key)
  DType activations = DType::kBF16;  ///< everything a kernel reads or writes besides the above
  DType dispatch = DType::kBF16;     ///< rows sent to the experts (dispatch payload)
  DType combine = DType::kBF16;      ///< expert outputs sent back (combine payload)
  /// All five classes set to t.
  static Precision all(DType t) { return {t, t, t, t, t}; }
  /// Whether every class is bf16.
  bool all_bf16() const;
};

/// Multi-head Latent Attention dimensions (DeepSeek-V3 config.json names). Per layer and
/// token: c_q = W_DQ·x (q_lora_rank; 0 = no query compression, q = W_Q·x directly),
/// [c_kv | k_rope] = W_DKV·x (kv_lora_rank + qk_rope_head_dim), q = W_UQ·c_q per head
/// (qk_nope_head_dim + qk_rope_head_dim), k_nope = W_UK·c_kv and v = W_UV·c_kv per head
/// (qk_nope_head_dim, v_head_dim). The cache holds c_kv and k_rope.
struct Mla {
  int q_lora_rank = 0;
  int kv_lora_rank = 0;
  int qk_nope_head_dim = 0;
  int qk_rope_head_dim = 0;
  int v_head_dim = 0;
};

/// One MoE transformer. Plain value type; `validate()` checks the invariants the rest of
/// masep relies on and throws std::invalid_argument naming the offending field.
struct Model {
  std::string name;
  int layers = 0;          ///< decoder layers (dense_layers dense, the rest MoE)
  int hidden = 0;          ///< model width (elements)
  int heads = 0;           ///< query heads
  int kv_heads = 0;        ///< key/value heads (== heads for MHA, fewer for GQA, 1 for MLA)
  int head_dim = 0;        ///< elements per head (MLA: qk_nope + qk_rope, the query width)
  int experts = 0;         ///< routed experts per MoE layer
  int top_k = 0;           ///< experts each token is routed to
  int expert_ffn = 0;      ///< intermediate width of one routed expert
  int shared_experts = 0;  ///< always-active experts per MoE layer
  /// Intermediate width of one shared expert; 0 = expert_ffn. Of the same width the compiler
  /// runs shared experts in the routed experts' grouped GEMMs, else in their own
  /// (OpRole::kSharedUp/kSharedAct/kSharedDown).
  int shared_expert_ffn = 0;
  int dense_layers = 0;    ///< the first dense_layers layers have a dense FFN instead of experts
  int dense_ffn = 0;       ///< intermediate width of the dense FFN (dense_layers > 0)
  int vocab = 0;           ///< vocabulary size (parameter counts only; 0 = not given)
  /// Sliding-window attention: a windowed layer attends to (and caches) only the last
  /// `sliding_window` tokens of each sequence; 0 = no window.
  int sliding_window = 0;
  /// Which layers are windowed, as a cycle over the layers: layer l is windowed when
  /// sliding_pattern[l mod size] is true (GPT-OSS, Gemma 2: {true, false}). Empty with a
  /// window = every layer.
  std::vector<bool> sliding_pattern;
  Activation activation = Activation::kSwiGLU;
  AttentionKind attention = AttentionKind::kMHA;
  Mla mla;                 ///< attention == kMLA only
  DType dtype = DType::kBF16;  ///< the `dtype` key: the default of every precision class
  Precision precision;     ///< format per tensor class (all == dtype unless overridden)

  void validate() const;

  bool is_mla() const { return attention == AttentionKind::kMLA; }
  /// Whether layer `l` attends through the sliding window.
  bool is_sliding_layer(int l) const {
    if (sliding_window <= 0) return false;
    if (sliding_pattern.empty()) return true;
    return sliding_pattern[static_cast<size_t>(l) % sliding_pattern.size()];
  }
  /// Number of windowed layers.
  int sliding_layers() const;
  /// Tokens layer `l` attends to for a sequence whose cache holds `len` tokens.
  int64_t attended(int l, int64_t len) const {
    return is_sliding_layer(l) && len > sliding_window ? sliding_window : len;
  }
  /// Whether layer `l` (0-based) is a dense layer.
  bool is_dense_layer(int l) const { return l < dense_layers; }
  int moe_layers() const { return layers - dense_layers; }
  /// Whether shared experts run in their own GEMMs (a width other than expert_ffn).
  bool shared_own_width() const { return shared_experts > 0 && shared_ffn() != expert_ffn; }
  /// shared_expert_ffn, or expert_ffn when it is 0.
  int shared_ffn() const { return shared_expert_ffn > 0 ? shared_expert_ffn : expert_ffn; }

  // ---- Derived sizes (elements or bytes, per layer) --------------------------------------
  /// Columns of the fused QKV projection: (heads + 2·kv_heads)·head_dim (MHA/GQA only).
  int64_t qkv_columns() const;
  /// MLA: columns of the fused down projection W_DQ | W_DKV: q_lora_rank + kv_lora_rank +
  /// qk_rope_head_dim (without query compression: heads·head_dim + kv_lora + rope).
  int64_t mla_down_columns() const;
  /// Elements cached per token per layer: 2·kv_heads·head_dim (MHA/GQA) or kv_lora_rank +
  /// qk_rope_head_dim (MLA).
  int64_t kv_elements_per_token_per_layer() const;
  /// Parameters (elements) of one layer's attention projections (no norms, no router).
  int64_t attention_projection_params() const;
  /// Attention weights of one layer in bytes: projections (precision.weights) + 2 RMSNorm
  /// vectors (+ MLA's 2 latent norms) + router (hidden × experts, MoE layers only), 16-bit.
  int64_t attention_weight_bytes(bool moe_layer = true) const;
  /// Weights of one routed expert in bytes (gate+up+down for SwiGLU, up+down for GELU).
  int64_t expert_weight_bytes() const;
  /// Weights of one shared expert in bytes (width shared_ffn()).
  int64_t shared_expert_weight_bytes() const;
  /// Weights of one dense FFN in bytes (width dense_ffn).
  int64_t dense_ffn_weight_bytes() const;
  /// Columns of an expert's first GEMM: 2·ffn for SwiGLU, ffn for GELU.
  int64_t expert_in_columns() const;
  /// Columns of an FFN's first GEMM of width `ffn`: 2·ffn (SwiGLU) or ffn (GELU).
  int64_t ffn_in_columns(int64_t ffn) const;
  /// KV cache bytes per token per layer (precision.kv_cache).
  int64_t kv_bytes_per_token_per_layer() const;
  /// KV cache bytes per token over all layers.
  int64_t kv_bytes_per_token() const { return kv_bytes_per_token_per_layer() * layers; }
  /// Total weight bytes of the decoder layers (all layers, all experts; no embedding or LM
  /// head, which masep does not place).
  int64_t total_weight_bytes() const;
  /// Parameters (elements) of the whole model as published: the decoder layers (norms and
  /// router included) plus, when vocab > 0, the input embedding and the (untied) LM head and
  /// final norm.
  int64_t total_params() const;

  /// Analytical FLOPs of one MoE layer for `tokens` decode tokens whose KV lengths sum to
  /// `kv_tokens` (2 FLOPs per multiply-add; GEMMs, attention scores and values, router and
  /// expert GEMMs; element-wise work not counted).
  double layer_flops(int64_t tokens, int64_t kv_tokens) const;
  /// The same for layer `l` (dense or MoE).
  double layer_flops(int l, int64_t tokens, int64_t kv_tokens) const;
  /// FLOPs of one decode step over all layers; the plan compiler's total must equal it.
  /// `window_kv_tokens` = Σ min(length, sliding_window) over the sequences, what a windowed
  /// layer attends to (ignored without a window; -1 = kv_tokens).
  double step_flops(int64_t tokens, int64_t kv_tokens, int64_t window_kv_tokens = -1) const;
  /// What sets the model apart from an all-MoE MHA/GQA model of one format, for summaries:
  /// "" for such a model, else e.g. "; mla (q_lora 1536, kv_lora 512, nope 128, rope 64, v 128);
  /// 3 dense layers (ffn 18432); weights fp8, kv_cache bf16, activations bf16, dispatch fp8,
  /// combine bf16".
  std::string features() const;
  /// The formats in one word when every class shares one ("bf16"), else
  /// "w fp8 kv bf16 act bf16 disp fp8 comb bf16".
  std::string precision_label() const;
  /// Attention FLOPs of one layer (projections and attention itself).
  double attention_flops(int64_t tokens, int64_t kv_tokens) const;
};

}  // namespace masep::models
