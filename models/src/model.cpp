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
    case DType::kINT8:
    case DType::kFP4:
      return 1;
  }
  return 2;
}

const char* to_string(DType t) {
  switch (t) {
    case DType::kBF16: return "bf16";
    case DType::kFP16: return "fp16";
    case DType::kFP8: return "fp8";
    case DType::kINT8: return "int8";
    case DType::kFP4: return "fp4";
  }
  return "?";
}

const char* to_string(Activation a) { return a == Activation::kSwiGLU ? "swiglu" : "gelu"; }

const char* to_string(AttentionKind a) {
  switch (a) {
    case AttentionKind::kMHA: return "mha";
    case AttentionKind::kGQA: return "gqa";
    case AttentionKind::kMLA: return "mla";
  }
  return "?";
}

namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
constexpr int64_t kFp8Block = 128;  // DeepSeek-V3: 128 x 128 weight blocks, 1 x 128 tiles
constexpr int64_t kFp4Block = 16;   // NVFP4: 16 elements per e4m3 scale
}  // namespace

int64_t matrix_bytes(DType t, int64_t in, int64_t out) {
  switch (t) {
    case DType::kBF16:
    case DType::kFP16:
      return 2 * in * out;
    case DType::kFP8:
      return in * out + 4 * ceil_div(in, kFp8Block) * ceil_div(out, kFp8Block);
    case DType::kINT8:
      return in * out + 4 * out;
    case DType::kFP4:
      return ceil_div(in * out, 2) + ceil_div(in * out, kFp4Block);
  }
  return 2 * in * out;
}

int64_t vector_bytes(DType t, int64_t rows, int64_t cols) {
  switch (t) {
    case DType::kBF16:
    case DType::kFP16:
      return 2 * rows * cols;
    case DType::kFP8:
      return rows * (cols + 4 * ceil_div(cols, kFp8Block));
    case DType::kINT8:
      return rows * (cols + 4);
    case DType::kFP4:
      return rows * (ceil_div(cols, 2) + ceil_div(cols, kFp4Block));
  }
  return 2 * rows * cols;
}

bool Precision::all_bf16() const {
  return weights == DType::kBF16 && kv_cache == DType::kBF16 && activations == DType::kBF16 &&
         dispatch == DType::kBF16 && combine == DType::kBF16;
}

namespace {
void require(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}
std::string num(long long v) { return std::to_string(v); }
}  // namespace

void Model::validate() const {
  require(layers > 0, "layers: must be positive, got " + num(layers));
  require(hidden > 0, "hidden: must be positive, got " + num(hidden));
  require(heads > 0, "heads: must be positive, got " + num(heads));
  require(kv_heads > 0, "kv_heads: must be positive, got " + num(kv_heads));
  require(head_dim > 0, "head_dim: must be positive, got " + num(head_dim));
  require(experts > 0, "experts: must be positive, got " + num(experts));
  require(top_k > 0, "top_k: must be positive, got " + num(top_k));
  require(expert_ffn > 0, "expert_ffn: must be positive, got " + num(expert_ffn));
  require(shared_experts >= 0, "shared_experts: must not be negative, got " + num(shared_experts));
  require(heads % kv_heads == 0,
          "kv_heads: " + num(kv_heads) + " does not divide heads " + num(heads));
  require(top_k <= experts, "top_k: " + num(top_k) + " exceeds experts " + num(experts));
  require(shared_expert_ffn >= 0,
          "shared_expert_ffn: must not be negative, got " + num(shared_expert_ffn));
  require(dense_layers >= 0 && dense_layers < layers,
          "dense_layers: " + num(dense_layers) + " must be in 0.." + num(layers - 1) +
              " (at least one MoE layer)");
  require(dense_layers == 0 || dense_ffn > 0,
          "dense_ffn: must be positive when dense_layers > 0, got " + num(dense_ffn));
  require(vocab >= 0, "vocab: must not be negative, got " + num(vocab));
  require(sliding_window >= 0, "sliding_window: must not be negative, got " + num(sliding_window));
  require(sliding_pattern.empty() || sliding_window > 0,
          "sliding_pattern: only used with sliding_window > 0");
  switch (attention) {
    case AttentionKind::kMHA:  // MHA and GQA differ only in kv_heads (the loader checks the
    case AttentionKind::kGQA:  // `attention` key against it)
      break;
    case AttentionKind::kMLA:
      require(mla.q_lora_rank >= 0, "mla.q_lora_rank: must not be negative");
      require(mla.kv_lora_rank > 0, "mla.kv_lora_rank: must be positive");
      require(mla.qk_nope_head_dim > 0, "mla.qk_nope_head_dim: must be positive");
      require(mla.qk_rope_head_dim > 0, "mla.qk_rope_head_dim: must be positive");
      require(mla.v_head_dim > 0, "mla.v_head_dim: must be positive");
      require(kv_heads == 1, "kv_heads: an mla model caches one latent per token (kv_heads 1)");
      require(head_dim == mla.qk_nope_head_dim + mla.qk_rope_head_dim,
              "head_dim: an mla model's head_dim is qk_nope_head_dim + qk_rope_head_dim (" +
                  num(mla.qk_nope_head_dim + mla.qk_rope_head_dim) + "), got " + num(head_dim));
      break;
  }
}

int64_t Model::qkv_columns() const {
  return static_cast<int64_t>(heads + 2 * kv_heads) * head_dim;
}

int64_t Model::mla_down_columns() const {
  const int64_t q = mla.q_lora_rank > 0 ? mla.q_lora_rank : int64_t{heads} * head_dim;
  return q + mla.kv_lora_rank + mla.qk_rope_head_dim;
}

int64_t Model::kv_elements_per_token_per_layer() const {
  if (is_mla()) return int64_t{mla.kv_lora_rank} + mla.qk_rope_head_dim;
  return 2LL * kv_heads * head_dim;
}

int64_t Model::attention_projection_params() const {
  const int64_t H = hidden, n = heads;
  if (!is_mla()) return H * qkv_columns() + n * head_dim * H;
  int64_t p = H * mla_down_columns();                                   // W_DQ | W_DKV (or W_Q)
  if (mla.q_lora_rank > 0) p += int64_t{mla.q_lora_rank} * n * head_dim;  // W_UQ
  p += int64_t{mla.kv_lora_rank} * n * (mla.qk_nope_head_dim + mla.v_head_dim);  // W_UK, W_UV
  p += n * mla.v_head_dim * H;                                          // W_O
  return p;
}

int64_t Model::attention_weight_bytes(bool moe_layer) const {
  const DType w = precision.weights;
  const int64_t H = hidden, n = heads;
  int64_t b = 0;
  if (!is_mla()) {
    b += matrix_bytes(w, H, qkv_columns()) + matrix_bytes(w, n * head_dim, H);
  } else {
    b += matrix_bytes(w, H, mla_down_columns());
    if (mla.q_lora_rank > 0) b += matrix_bytes(w, mla.q_lora_rank, n * head_dim);
    b += matrix_bytes(w, mla.kv_lora_rank, n * (mla.qk_nope_head_dim + mla.v_head_dim));
    b += matrix_bytes(w, n * mla.v_head_dim, H);
    b += 2LL * (mla.q_lora_rank + mla.kv_lora_rank);  // latent RMSNorms, 16-bit
  }
  b += 2LL * 2 * H;                          // two RMSNorm vectors, 16-bit
  if (moe_layer) b += 2LL * H * experts;     // router gate, 16-bit
  return b;
}

int64_t Model::ffn_in_columns(int64_t ffn) const {
  return activation == Activation::kSwiGLU ? 2 * ffn : ffn;
}

int64_t Model::expert_in_columns() const { return ffn_in_columns(expert_ffn); }

namespace {
int64_t ffn_bytes(const Model& m, int64_t ffn) {
  return matrix_bytes(m.precision.weights, m.hidden, m.ffn_in_columns(ffn)) +
         matrix_bytes(m.precision.weights, ffn, m.hidden);
}
}  // namespace

int64_t Model::expert_weight_bytes() const { return ffn_bytes(*this, expert_ffn); }
int64_t Model::shared_expert_weight_bytes() const { return ffn_bytes(*this, shared_ffn()); }
int64_t Model::dense_ffn_weight_bytes() const {
  return dense_ffn > 0 ? ffn_bytes(*this, dense_ffn) : 0;
}

int64_t Model::kv_bytes_per_token_per_layer() const {
  // MHA/GQA: K and V, one scale tile set per head vector; MLA: one vector of latent + rope.
  if (is_mla()) return vector_bytes(precision.kv_cache, 1, kv_elements_per_token_per_layer());
  return vector_bytes(precision.kv_cache, 2LL * kv_heads, head_dim);
}

int64_t Model::total_weight_bytes() const {
  const int64_t dense = dense_layers;
  const int64_t moe = layers - dense_layers;
  return dense * (attention_weight_bytes(false) + dense_ffn_weight_bytes()) +
         moe * (attention_weight_bytes(true) + experts * expert_weight_bytes() +
                shared_experts * shared_expert_weight_bytes());
}

int64_t Model::total_params() const {
  const int64_t H = hidden;
  auto ffn = [&](int64_t f) { return H * ffn_in_columns(f) + f * H; };
  int64_t attn = attention_projection_params() + 2 * H;
  if (is_mla()) attn += int64_t{mla.q_lora_rank} + mla.kv_lora_rank;
  const int64_t dense = int64_t{dense_layers} * (attn + (dense_ffn > 0 ? ffn(dense_ffn) : 0));
  const int64_t moe = int64_t{moe_layers()} *
                      (attn + H * experts + experts * ffn(expert_ffn) +
                       shared_experts * ffn(shared_ffn()));
  const int64_t embed = vocab > 0 ? 2 * int64_t{vocab} * H + H : 0;
  return dense + moe + embed;
}

std::string Model::precision_label() const {
  const Precision& p = precision;
  if (p.weights == p.kv_cache && p.weights == p.activations && p.weights == p.dispatch &&
      p.weights == p.combine) {
    return to_string(p.weights);
  }
  return std::string("w ") + to_string(p.weights) + " kv " + to_string(p.kv_cache) + " act " +
         to_string(p.activations) + " disp " + to_string(p.dispatch) + " comb " +
         to_string(p.combine);
}

std::string Model::features() const {
  std::string f;
  if (is_mla()) {
    f += "; mla (q_lora " + num(mla.q_lora_rank) + ", kv_lora " + num(mla.kv_lora_rank) +
         ", nope " + num(mla.qk_nope_head_dim) + ", rope " + num(mla.qk_rope_head_dim) + ", v " +
         num(mla.v_head_dim) + ")";
  }
  if (dense_layers > 0) {
    f += "; " + num(dense_layers) + " dense layers (ffn " + num(dense_ffn) + ")";
  }
  if (shared_own_width()) f += "; shared expert ffn " + num(shared_ffn());
  if (sliding_window > 0) {
    f += "; sliding window " + num(sliding_window) + " on " + num(sliding_layers()) + " of " +
         num(layers) + " layers";
  }
  const Precision& p = precision;
  if (!(p.weights == dtype && p.kv_cache == dtype && p.activations == dtype &&
        p.dispatch == dtype && p.combine == dtype)) {
    f += std::string("; weights ") + to_string(p.weights) + ", kv_cache " +
         to_string(p.kv_cache) + ", activations " + to_string(p.activations) + ", dispatch " +
         to_string(p.dispatch) + ", combine " + to_string(p.combine);
  }
  return f;
}

double Model::attention_flops(int64_t tokens, int64_t kv_tokens) const {
  const double t = static_cast<double>(tokens), kv = static_cast<double>(kv_tokens);
  const double h = hidden, n = heads;
  if (!is_mla()) {
    return 2.0 * t * h * static_cast<double>(qkv_columns())  // QKV projection
           + 2.0 * 2.0 * kv * n * head_dim                    // QK^T and PV
           + 2.0 * t * n * head_dim * h;                      // output projection
  }
  const double ql = mla.q_lora_rank, kl = mla.kv_lora_rank, dn = mla.qk_nope_head_dim,
               dr = mla.qk_rope_head_dim, dv = mla.v_head_dim;
  double f = 2.0 * t * h * static_cast<double>(mla_down_columns());  // W_DQ | W_DKV
  if (ql > 0) f += 2.0 * t * ql * n * (dn + dr);                      // W_UQ
  f += 2.0 * t * n * dn * kl;                                         // q_nope · W_UK
  f += 2.0 * kv * n * (kl + dr);                                      // scores over latent+rope
  f += 2.0 * kv * n * kl;                                             // Σ p · c_kv
  f += 2.0 * t * n * kl * dv;                                         // · W_UV
  f += 2.0 * t * n * dv * h;                                          // W_O
  return f;
}

double Model::layer_flops(int l, int64_t tokens, int64_t kv_tokens) const {
  const double t = static_cast<double>(tokens);
  const double h = hidden;
  double f = attention_flops(tokens, kv_tokens);
  auto ffn = [&](double width) {
    return 2.0 * h * static_cast<double>(ffn_in_columns(static_cast<int64_t>(width))) +
           2.0 * width * h;
  };
  if (is_dense_layer(l)) return f + t * ffn(dense_ffn);
  f += 2.0 * t * h * experts;                                   // router
  f += t * top_k * ffn(expert_ffn);                             // routed experts
  f += t * shared_experts * ffn(shared_ffn());                  // shared experts
  return f;
}

double Model::layer_flops(int64_t tokens, int64_t kv_tokens) const {
  return layer_flops(dense_layers, tokens, kv_tokens);
}

double Model::step_flops(int64_t tokens, int64_t kv_tokens, int64_t window_kv_tokens) const {
  if (window_kv_tokens < 0) window_kv_tokens = kv_tokens;
  double f = 0;
  for (int l = 0; l < layers; ++l) {
    f += layer_flops(l, tokens, is_sliding_layer(l) ? window_kv_tokens : kv_tokens);
  }
  return f;
}

int Model::sliding_layers() const {
  int n = 0;
  for (int l = 0; l < layers; ++l) n += is_sliding_layer(l) ? 1 : 0;
  return n;
}

}  // namespace masep::models
