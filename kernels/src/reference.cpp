// CPU references for the masep kernels (see reference.hpp). Straightforward loops in fp32
// (fp64 where a sum is long), written for clarity, not speed.
#include "masep/kernels/reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>

namespace masep::kernels::ref {

namespace {

// s[t] <- exp(s[t] - max s), in place; returns (max s, the sum of the new s): a softmax's
// numerators and the parts of its log-sum-exp (max + log sum).
std::pair<double, double> exp_shifted(std::vector<double>& s) {
  double mx = -std::numeric_limits<double>::infinity();
  for (double v : s) mx = std::max(mx, v);
  double l = 0;
  for (double& v : s) {
    v = std::exp(v - mx);
    l += v;
  }
  return {mx, l};
}

}  // namespace


std::vector<Bf16> to_bf16(const std::vector<float>& v) {
  std::vector<Bf16> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = to_bf16(v[i]);
  return r;
}

std::vector<float> to_float(const std::vector<Bf16>& v) {
  std::vector<float> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = to_float(v[i]);
  return r;
}

std::vector<float> decode_attention(const std::vector<Bf16>& q, const std::vector<Bf16>& k_new,
                                    const std::vector<Bf16>& v_new, std::vector<Bf16>& k_cache,
                                    std::vector<Bf16>& v_cache,
                                    const std::vector<std::int32_t>& kv_lens, int num_heads,
                                    int num_kv_heads, int head_dim, int max_kv_len, float scale,
                                    std::vector<float>* lse) {
  if (num_kv_heads <= 0 || num_heads % num_kv_heads != 0) {
    throw std::invalid_argument("ref::decode_attention: num_heads % num_kv_heads != 0");
  }
  const int batch = static_cast<int>(kv_lens.size());
  const bool append = !k_new.empty();
  if (scale == 0.f) scale = 1.f / std::sqrt(static_cast<float>(head_dim));
  const int group = num_heads / num_kv_heads;
  std::vector<float> out(static_cast<std::size_t>(batch) * num_heads * head_dim);
  if (lse) lse->assign(static_cast<std::size_t>(batch) * num_heads, 0.f);
  auto cache_at = [&](int b, int h, int t) {
    return ((static_cast<std::size_t>(b) * num_kv_heads + h) * max_kv_len + t) * head_dim;
  };
  for (int b = 0; b < batch; ++b) {
    const int len = kv_lens[b] + (append ? 1 : 0);
    if (len > max_kv_len || len < 1) throw std::invalid_argument("ref: bad kv length");
    if (append) {
      for (int h = 0; h < num_kv_heads; ++h) {
        for (int d = 0; d < head_dim; ++d) {
          const std::size_t src = (static_cast<std::size_t>(b) * num_kv_heads + h) * head_dim + d;
          k_cache[cache_at(b, h, kv_lens[b]) + d] = k_new[src];
          v_cache[cache_at(b, h, kv_lens[b]) + d] = v_new[src];
        }
      }
    }
    for (int qh = 0; qh < num_heads; ++qh) {
      const int kh = qh / group;
      const std::size_t qo = (static_cast<std::size_t>(b) * num_heads + qh) * head_dim;
      std::vector<double> s(len);
      for (int t = 0; t < len; ++t) {
        double acc = 0;
        for (int d = 0; d < head_dim; ++d) {
          acc += double{to_float(q[qo + d])} * to_float(k_cache[cache_at(b, kh, t) + d]);
        }
        s[t] = acc * scale;
      }
      const auto [mx, l] = exp_shifted(s);
      for (int d = 0; d < head_dim; ++d) {
        double acc = 0;
        for (int t = 0; t < len; ++t) acc += s[t] * to_float(v_cache[cache_at(b, kh, t) + d]);
        out[qo + d] = static_cast<float>(acc / l);
      }
      if (lse)
        (*lse)[static_cast<std::size_t>(b) * num_heads + qh] = static_cast<float>(mx + std::log(l));
    }
  }
  return out;
}

namespace {
void norm_row(const float* v, const std::vector<Bf16>& weight, int hidden, float eps, float* out) {
  double ss = 0;
  for (int i = 0; i < hidden; ++i) ss += double{v[i]} * v[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / hidden + eps));
  for (int i = 0; i < hidden; ++i) out[i] = v[i] * inv * to_float(weight[i]);
}
}  // namespace

std::vector<float> mla_decode_attention(
    const std::vector<Bf16>& q_lat, const std::vector<Bf16>& q_rope,
    const std::vector<Bf16>& c_kv_new, const std::vector<Bf16>& k_rope_new,
    std::vector<Bf16>& kv_cache, const std::vector<std::int32_t>& kv_lens, int num_heads, int kl,
    int dr, int max_kv_len, float scale, std::vector<float>* lse) {
  const int batch = static_cast<int>(kv_lens.size());
  const int row = kl + dr;
  const bool append = !c_kv_new.empty();
  if (!(scale > 0.f)) throw std::invalid_argument("ref::mla_decode_attention: scale must be > 0");
  if (num_heads <= 0 || kl <= 0 || dr < 0 || max_kv_len <= 0 ||
      q_lat.size() != static_cast<std::size_t>(batch) * num_heads * kl ||
      q_rope.size() != static_cast<std::size_t>(batch) * num_heads * dr ||
      kv_cache.size() != static_cast<std::size_t>(batch) * max_kv_len * row ||
      (append && (c_kv_new.size() != static_cast<std::size_t>(batch) * kl ||
                  k_rope_new.size() != static_cast<std::size_t>(batch) * dr)) ||
      (!append && !k_rope_new.empty())) {
    throw std::invalid_argument("ref::mla_decode_attention: sizes do not match the shape");
  }
  std::vector<float> out(static_cast<std::size_t>(batch) * num_heads * kl);
  if (lse) lse->assign(static_cast<std::size_t>(batch) * num_heads, 0.f);
  auto at = [&](int b, int t) { return (static_cast<std::size_t>(b) * max_kv_len + t) * row; };
  for (int b = 0; b < batch; ++b) {
    const int len = kv_lens[b] + (append ? 1 : 0);
    if (kv_lens[b] < 0 || len > max_kv_len || len < 1) {
      throw std::invalid_argument("ref::mla_decode_attention: bad kv length");
    }
    if (append) {
      for (int e = 0; e < kl; ++e)
        kv_cache[at(b, kv_lens[b]) + e] = c_kv_new[std::size_t(b) * kl + e];
      for (int e = 0; e < dr; ++e) {
        kv_cache[at(b, kv_lens[b]) + kl + e] = k_rope_new[std::size_t(b) * dr + e];
      }
    }
    for (int h = 0; h < num_heads; ++h) {
      const std::size_t ql = (static_cast<std::size_t>(b) * num_heads + h) * kl;
      const std::size_t qr = (static_cast<std::size_t>(b) * num_heads + h) * dr;
      std::vector<double> s(len);
      for (int t = 0; t < len; ++t) {
        double acc = 0;
        for (int e = 0; e < kl; ++e)
          acc += double{to_float(q_lat[ql + e])} * to_float(kv_cache[at(b, t) + e]);
        for (int e = 0; e < dr; ++e) {
          acc += double{to_float(q_rope[qr + e])} * to_float(kv_cache[at(b, t) + kl + e]);
        }
        s[t] = acc * scale;
      }
      const auto [mx, l] = exp_shifted(s);
      for (int e = 0; e < kl; ++e) {
        double acc = 0;
        for (int t = 0; t < len; ++t) acc += s[t] * to_float(kv_cache[at(b, t) + e]);
        out[ql + e] = static_cast<float>(acc / l);
      }
      if (lse)
        (*lse)[static_cast<std::size_t>(b) * num_heads + h] = static_cast<float>(mx + std::log(l));
    }
  }
  return out;
}

std::vector<float> rmsnorm(const std::vector<Bf16>& x, const std::vector<Bf16>& weight, int tokens,
                           int hidden, float eps) {
  std::vector<float> out(static_cast<std::size_t>(tokens) * hidden);
  std::vector<float> row(hidden);
  for (int t = 0; t < tokens; ++t) {
    for (int i = 0; i < hidden; ++i) row[i] = to_float(x[static_cast<std::size_t>(t) * hidden + i]);
    norm_row(row.data(), weight, hidden, eps, out.data() + static_cast<std::size_t>(t) * hidden);
  }
  return out;
}

std::vector<float> add_rmsnorm(std::vector<Bf16>& residual, const std::vector<Bf16>& x,
                               const std::vector<Bf16>& weight, int tokens, int hidden, float eps) {
  std::vector<float> out(static_cast<std::size_t>(tokens) * hidden);
  std::vector<float> row(hidden);
  for (int t = 0; t < tokens; ++t) {
    for (int i = 0; i < hidden; ++i) {
      const std::size_t at = static_cast<std::size_t>(t) * hidden + i;
      residual[at] = to_bf16(to_float(residual[at]) + to_float(x[at]));
      row[i] = to_float(residual[at]);
    }
    norm_row(row.data(), weight, hidden, eps, out.data() + static_cast<std::size_t>(t) * hidden);
  }
  return out;
}

std::vector<float> rope(const std::vector<Bf16>& x, const std::vector<std::int32_t>& positions,
                        int tokens, int heads, int head_dim, float theta) {
  std::vector<float> out = to_float(x);
  const int half = head_dim / 2;
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      float* v = out.data() + (static_cast<std::size_t>(t) * heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const double inv_freq = std::pow(double{theta}, -2.0 * i / head_dim);
        const double ang = positions[t] * inv_freq;
        const double c = std::cos(ang), s = std::sin(ang);
        const double x1 = v[i], x2 = v[i + half];
        v[i] = static_cast<float>(x1 * c - x2 * s);
        v[i + half] = static_cast<float>(x2 * c + x1 * s);
      }
    }
  }
  return out;
}

RouterResult router_topk(const std::vector<float>& logits, int tokens, int num_experts, int k,
                         bool renormalize) {
  RouterResult r;
  r.topk_ids.resize(static_cast<std::size_t>(tokens) * k);
  r.topk_weights.resize(static_cast<std::size_t>(tokens) * k);
  r.expert_counts.assign(num_experts, 0);
  std::vector<double> p(num_experts);
  for (int t = 0; t < tokens; ++t) {
    const float* l = logits.data() + static_cast<std::size_t>(t) * num_experts;
    const double mx = *std::max_element(l, l + num_experts);
    double sum = 0;
    for (int e = 0; e < num_experts; ++e) sum += p[e] = std::exp(l[e] - mx);
    for (int e = 0; e < num_experts; ++e) p[e] /= sum;
    std::vector<int> idx(num_experts);
    for (int e = 0; e < num_experts; ++e) idx[e] = e;
    std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return l[a] > l[b]; });
    double sel = 0;
    for (int j = 0; j < k; ++j) sel += p[idx[j]];
    for (int j = 0; j < k; ++j) {
      r.topk_ids[static_cast<std::size_t>(t) * k + j] = idx[j];
      r.topk_weights[static_cast<std::size_t>(t) * k + j] =
          static_cast<float>(renormalize ? p[idx[j]] / sel : p[idx[j]]);
      ++r.expert_counts[idx[j]];
    }
  }
  return r;
}

PermuteResult permute(const std::vector<Bf16>& x, const std::vector<std::int32_t>& topk_ids,
                      int tokens, int hidden, int num_experts, int k, int capacity) {
  PermuteResult r;
  const std::int64_t n = static_cast<std::int64_t>(tokens) * k;
  const std::int64_t rows = capacity > 0 ? std::int64_t{num_experts} * capacity : n;
  std::vector<std::int32_t> counts(num_experts, 0);
  for (std::int64_t a = 0; a < n; ++a) ++counts.at(topk_ids[a]);
  r.expert_offsets.assign(num_experts + 1, 0);
  for (int e = 0; e < num_experts; ++e) r.expert_offsets[e + 1] = r.expert_offsets[e] + counts[e];
  r.permuted_row.assign(n, -1);
  r.source_token.assign(rows, -1);
  r.permuted_x.assign(rows * hidden, Bf16{0x7fc0});
  std::vector<std::int32_t> next(num_experts, 0);
  for (std::int64_t a = 0; a < n; ++a) {
    const int e = topk_ids[a];
    const int rank = next[e]++;
    if (capacity > 0 && rank >= capacity) continue;
    const std::int64_t row =
        (capacity > 0 ? std::int64_t{e} * capacity : r.expert_offsets[e]) + rank;
    r.permuted_row[a] = static_cast<std::int32_t>(row);
    r.source_token[row] = static_cast<std::int32_t>(a / k);
    std::copy_n(x.begin() + (a / k) * hidden, hidden, r.permuted_x.begin() + row * hidden);
  }
  return r;
}

std::vector<float> combine(const std::vector<Bf16>& expert_out,
                           const std::vector<std::int32_t>& permuted_row,
                           const std::vector<float>& topk_weights,
                           const std::vector<Bf16>& residual, int tokens, int hidden, int k) {
  std::vector<float> out(static_cast<std::size_t>(tokens) * hidden, 0.f);
  for (int t = 0; t < tokens; ++t) {
    for (int i = 0; i < hidden; ++i) {
      float acc =
          residual.empty() ? 0.f : to_float(residual[static_cast<std::size_t>(t) * hidden + i]);
      for (int j = 0; j < k; ++j) {
        const int row = permuted_row[static_cast<std::size_t>(t) * k + j];
        if (row < 0) continue;
        acc += topk_weights[static_cast<std::size_t>(t) * k + j] *
               to_float(expert_out[static_cast<std::size_t>(row) * hidden + i]);
      }
      out[static_cast<std::size_t>(t) * hidden + i] = acc;
    }
  }
  return out;
}

std::vector<float> swiglu(const std::vector<Bf16>& in, std::int64_t rows, int ffn) {
  std::vector<float> out(rows * ffn);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (int i = 0; i < ffn; ++i) {
      const float g = to_float(in[r * 2 * ffn + i]);
      const float u = to_float(in[r * 2 * ffn + ffn + i]);
      out[r * ffn + i] = g / (1.f + std::exp(-g)) * u;
    }
  }
  return out;
}

std::vector<float> gelu(const std::vector<Bf16>& in, std::int64_t rows, int ffn) {
  std::vector<float> out(rows * ffn);
  const float c = 0.7978845608028654f;  // sqrt(2/pi)
  for (std::int64_t i = 0; i < rows * ffn; ++i) {
    const float x = to_float(in[i]);
    out[i] = 0.5f * x * (1.f + std::tanh(c * (x + 0.044715f * x * x * x)));
  }
  return out;
}

std::vector<float> expert_ffn(const std::vector<Bf16>& x, const std::vector<Bf16>& w_up,
                              const std::vector<Bf16>& w_down,
                              const std::vector<std::int32_t>& expert_offsets, int num_experts,
                              int hidden, int ffn, bool use_swiglu) {
  const std::int64_t rows = expert_offsets[num_experts];
  const int up_out = use_swiglu ? 2 * ffn : ffn;
  std::vector<float> out(rows * hidden, 0.f);
  std::vector<Bf16> h(up_out);
  for (int e = 0; e < num_experts; ++e) {
    const Bf16* wu = w_up.data() + static_cast<std::size_t>(e) * up_out * hidden;
    const Bf16* wd = w_down.data() + static_cast<std::size_t>(e) * hidden * ffn;
    for (std::int64_t r = expert_offsets[e]; r < expert_offsets[e + 1]; ++r) {
      for (int o = 0; o < up_out; ++o) {
        float acc = 0;
        for (int i = 0; i < hidden; ++i) {
          acc +=
              to_float(x[r * hidden + i]) * to_float(wu[static_cast<std::size_t>(o) * hidden + i]);
        }
        h[o] = to_bf16(acc);
      }
      const std::vector<float> a = use_swiglu ? swiglu(h, 1, ffn) : gelu(h, 1, ffn);
      std::vector<float> ab(ffn);
      for (int i = 0; i < ffn; ++i) ab[i] = round_bf16(a[i]);
      for (int o = 0; o < hidden; ++o) {
        float acc = 0;
        for (int i = 0; i < ffn; ++i)
          acc += ab[i] * to_float(wd[static_cast<std::size_t>(o) * ffn + i]);
        out[r * hidden + o] = acc;
      }
    }
  }
  return out;
}

std::vector<float> grouped_gemm(const std::vector<Bf16>& x, const std::vector<Bf16>& w,
                                const std::vector<std::int64_t>& w_offsets,
                                const std::vector<std::int32_t>& row_offsets, int n, int k) {
  const std::int64_t rows = row_offsets.empty() ? 0 : row_offsets.back();
  std::vector<float> y(static_cast<std::size_t>(rows) * n, 0.f);
  for (std::size_t g = 0; g + 1 < row_offsets.size(); ++g) {
    const Bf16* wg = w.data() + w_offsets[g];
    for (std::int64_t r = row_offsets[g]; r < row_offsets[g + 1]; ++r) {
      for (int o = 0; o < n; ++o) {
        float acc = 0;
        for (int i = 0; i < k; ++i) {
          acc += to_float(x[r * k + i]) * to_float(wg[static_cast<std::size_t>(o) * k + i]);
        }
        y[r * n + o] = acc;
      }
    }
  }
  return y;
}

float fp8_e4m3_to_float(std::uint8_t b) {
  const int e = (b >> 3) & 0xf, m = b & 7;
  const float mag = e == 0 ? std::ldexp(static_cast<float>(m), -9)
                           : std::ldexp(1.f + static_cast<float>(m) / 8.f, e - 7);
  return (b & 0x80) ? -mag : mag;
}

std::vector<float> grouped_gemm_fp8(const std::vector<Bf16>& x, const std::vector<std::uint8_t>& w,
                                    const std::vector<std::int64_t>& w_offsets,
                                    const std::vector<std::int32_t>& row_offsets, int n, int k) {
  constexpr int kB = 128;
  const int kblocks = (k + kB - 1) / kB;
  const std::int64_t rows = row_offsets.empty() ? 0 : row_offsets.back();
  std::vector<float> y(static_cast<std::size_t>(rows) * n, 0.f);
  for (std::size_t g = 0; g + 1 < row_offsets.size(); ++g) {
    const std::uint8_t* wg = w.data() + w_offsets[g];
    std::vector<float> scales(static_cast<std::size_t>((n + kB - 1) / kB) * kblocks);
    std::memcpy(scales.data(), wg + static_cast<std::int64_t>(n) * k,
                scales.size() * sizeof(float));
    for (std::int64_t r = row_offsets[g]; r < row_offsets[g + 1]; ++r) {
      for (int o = 0; o < n; ++o) {
        double acc = 0;
        for (int i = 0; i < k; ++i) {
          const float wv = fp8_e4m3_to_float(wg[static_cast<std::size_t>(o) * k + i]) *
                           scales[static_cast<std::size_t>(o / kB) * kblocks + i / kB];
          acc += static_cast<double>(to_float(x[r * k + i])) * wv;
        }
        y[r * n + o] = static_cast<float>(acc);
      }
    }
  }
  return y;
}

}  // namespace masep::kernels::ref
