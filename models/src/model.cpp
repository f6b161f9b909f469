#include "masep/models/model.hpp"

#include <stdexcept>
#include <string>

namespace masep::models {

int dtype_bytes(DType t) {
  switch (t) {
    case DType::kBF16:
    case DType::kFP16:
      return 2;
    case DType::kFP8:
      return 1;
  }
  return 2;
}

const char* to_string(DType t) {
  switch (t) {
    case DType::kBF16: return "bf16";
    case DType::kFP16: return "fp16";
    case DType::kFP8: return "fp8";
  }
  return "?";
}

const char* to_string(Activation a) { return a == Activation::kSwiGLU ? "swiglu" : "gelu"; }

namespace {
void require(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}
}  // namespace

void Model::validate() const {
  require(layers > 0, "layers: must be positive, got " + std::to_string(layers));
  require(hidden > 0, "hidden: must be positive, got " + std::to_string(hidden));
  require(heads > 0, "heads: must be positive, got " + std::to_string(heads));
  require(kv_heads > 0, "kv_heads: must be positive, got " + std::to_string(kv_heads));
  require(head_dim > 0, "head_dim: must be positive, got " + std::to_string(head_dim));
  require(experts > 0, "experts: must be positive, got " + std::to_string(experts));
  require(top_k > 0, "top_k: must be positive, got " + std::to_string(top_k));
  require(expert_ffn > 0, "expert_ffn: must be positive, got " + std::to_string(expert_ffn));
  require(shared_experts >= 0,
          "shared_experts: must not be negative, got " + std::to_string(shared_experts));
  require(heads % kv_heads == 0, "kv_heads: " + std::to_string(kv_heads) +
                                     " does not divide heads " + std::to_string(heads));
  require(top_k <= experts, "top_k: " + std::to_string(top_k) + " exceeds experts " +
                                std::to_string(experts));
}

int64_t Model::qkv_columns() const {
  return static_cast<int64_t>(heads + 2 * kv_heads) * head_dim;
}

int64_t Model::attention_weight_bytes() const {
  const int64_t e = dtype_bytes(dtype);
  const int64_t qkv = static_cast<int64_t>(hidden) * qkv_columns();
  const int64_t out = static_cast<int64_t>(heads) * head_dim * hidden;
  const int64_t norms = 2LL * hidden;
  const int64_t router = static_cast<int64_t>(hidden) * experts;
  return (qkv + out + norms + router) * e;
}

int64_t Model::expert_in_columns() const {
  return activation == Activation::kSwiGLU ? 2LL * expert_ffn : expert_ffn;
}

int64_t Model::expert_weight_bytes() const {
  const int64_t e = dtype_bytes(dtype);
  return (static_cast<int64_t>(hidden) * expert_in_columns() +
          static_cast<int64_t>(expert_ffn) * hidden) * e;
}

int64_t Model::kv_bytes_per_token_per_layer() const {
  return 2LL * kv_heads * head_dim * dtype_bytes(dtype);
}

int64_t Model::total_weight_bytes() const {
  return static_cast<int64_t>(layers) *
         (attention_weight_bytes() + (experts + shared_experts) * expert_weight_bytes());
}

double Model::layer_flops(int64_t tokens, int64_t kv_tokens) const {
  const double t = static_cast<double>(tokens);
  const double h = hidden;
  double f = 0;
  f += 2.0 * t * h * static_cast<double>(qkv_columns());                  // QKV projection
  f += 2.0 * 2.0 * static_cast<double>(kv_tokens) * heads * head_dim;     // QK^T and PV
  f += 2.0 * t * static_cast<double>(heads) * head_dim * h;               // output projection
  f += 2.0 * t * h * experts;                                             // router
  const double per_expert_token =
      2.0 * h * static_cast<double>(expert_in_columns()) + 2.0 * expert_ffn * h;
  f += t * (top_k + shared_experts) * per_expert_token;                   // expert FFNs
  return f;
}

}  // namespace masep::models
