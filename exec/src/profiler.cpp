// The calibration profiler (profiler.hpp): shapes from the built-in scenarios, an
// nccl-tests-style timing harness, verified results, a plan::Calibration out.
#include "masep/exec/profiler.hpp"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nccl.h>

#include <algorithm>
#include <array>
#include <barrier>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <vector>

#include "device_init.hpp"
#include "invoke.hpp"
#include "masep/exec/check.hpp"
#include "masep/exec/profile_shapes.hpp"
#include "masep/kernels/activation.hpp"
#include "masep/kernels/attention.hpp"
#include "masep/kernels/grouped_gemm.hpp"
#include "masep/kernels/norm.hpp"
#include "masep/kernels/permute.hpp"
#include "masep/kernels/reference.hpp"
#include "masep/kernels/rope.hpp"
#include "masep/kernels/router.hpp"
#include "masep/kernels/status.hpp"
#include "masep/models/model.hpp"

namespace masep::exec {
namespace {

using kernels::bf16;

constexpr int64_t kBf16 = 2;

// Device memory owned for one scope.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(int64_t bytes) : bytes_(bytes) {
    MASEP_CUDA_CHECK(cudaMalloc(&p_, static_cast<size_t>(std::max<int64_t>(bytes, 256))));
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr; }
  ~DeviceBuffer() {
    if (p_ != nullptr) cudaFree(p_);
  }
  template <class T = void>
  T* get() const {
    return static_cast<T*>(p_);
  }
  int64_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  int64_t bytes_ = 0;
};

// A long device-to-device copy enqueued before a timed loop: while it runs the host enqueues
// every timed launch, so the loop measures the GPU's time per launch with the queue full (as
// in the executor, whose host runs ahead of the GPU), not the host's launch rate. Without it,
// launches whose host cost exceeds their GPU time (small cuBLAS GEMMs: ~15 us per call on the
// 2026-11-27 H100 host against ~7 us on the GPU) were timed at the host's rate.
class Blocker {
 public:
  explicit Blocker(int64_t bytes) : a_(bytes), b_(bytes) {
    MASEP_CUDA_CHECK(cudaMemset(a_.get(), 0, static_cast<size_t>(bytes)));
  }
  void enqueue(cudaStream_t st) const {
    MASEP_CUDA_CHECK(cudaMemcpyAsync(b_.get(), a_.get(), static_cast<size_t>(a_.bytes()),
                                     cudaMemcpyDeviceToDevice, st));
  }

 private:
  DeviceBuffer a_, b_;
};

struct Settings {
  int warmup = 10, iters = 50;
  const Blocker* blocker = nullptr;  // enqueued before the timed launches (GPU 0 only)
};

// nccl-tests harness on one stream: warm-up, then `iters` launches between two events (behind
// the blocker when there is one).
template <class Launch>
double time_ns(cudaStream_t st, const Settings& s, Launch&& launch) {
  for (int i = 0; i < s.warmup; ++i) launch(i);
  MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
  cudaEvent_t a, b;
  MASEP_CUDA_CHECK(cudaEventCreate(&a));
  MASEP_CUDA_CHECK(cudaEventCreate(&b));
  if (s.blocker != nullptr) s.blocker->enqueue(st);
  MASEP_CUDA_CHECK(cudaEventRecord(a, st));
  for (int i = 0; i < s.iters; ++i) launch(s.warmup + i);
  MASEP_CUDA_CHECK(cudaEventRecord(b, st));
  MASEP_CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  MASEP_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return static_cast<double>(ms) * 1e6 / s.iters;
}

// Sorts by size and drops repeated sizes (first kept), as a table requires.
std::vector<plan::CalPoint> tidy(std::vector<plan::CalPoint> pts) {
  std::stable_sort(pts.begin(), pts.end(), [](const plan::CalPoint& a, const plan::CalPoint& b) {
    return a.size < b.size;
  });
  std::vector<plan::CalPoint> out;
  for (const auto& p : pts) {
    if (out.empty() || p.size > out.back().size) out.push_back(p);
  }
  return out;
}

void check_finite(const void* dev, int64_t elements, const char* what) {
  const int64_t n = std::min<int64_t>(elements, 256);
  std::vector<bf16> h(static_cast<size_t>(n));
  MASEP_CUDA_CHECK(
      cudaMemcpy(h.data(), dev, static_cast<size_t>(n) * kBf16, cudaMemcpyDeviceToHost));
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(__bfloat162float(h[static_cast<size_t>(i)]))) {
      throw std::runtime_error(fmt::format("profile: {} produced a non-finite output", what));
    }
  }
}

// ---- shapes: profile_shapes.hpp (CPU, unit-tested) ----------------------------------------------

using Shapes = ProfileShapes;

// ---- GEMM --------------------------------------------------------------------------------------

// After a launch computed Y[0][j] = x[0, :] · W[j, :] (bf16, row-major x [.., k], W [n, k],
// Y [.., n]): checks Y[0][0..3] against a CPU dot product (1% of Σ|a·b| + 1e-3); throws
// std::runtime_error naming `what`, n, k and the column.
void verify_first_row(cudaStream_t st, const void* x, const void* w, const void* y, int64_t n,
                      int64_t k, const char* what) {
  const int64_t cols = std::min<int64_t>(n, 4);
  std::vector<bf16> hx(static_cast<size_t>(k)), hw(static_cast<size_t>(cols * k)),
      hy(static_cast<size_t>(cols));
  MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
  MASEP_CUDA_CHECK(cudaMemcpy(hx.data(), x, k * kBf16, cudaMemcpyDeviceToHost));
  MASEP_CUDA_CHECK(cudaMemcpy(hw.data(), w, cols * k * kBf16, cudaMemcpyDeviceToHost));
  MASEP_CUDA_CHECK(cudaMemcpy(hy.data(), y, cols * kBf16, cudaMemcpyDeviceToHost));
  for (int64_t j = 0; j < cols; ++j) {
    double ref = 0, mag = 0;
    for (int64_t i = 0; i < k; ++i) {
      const double p = static_cast<double>(__bfloat162float(hx[static_cast<size_t>(i)])) *
                       __bfloat162float(hw[static_cast<size_t>(j * k + i)]);
      ref += p;
      mag += std::fabs(p);
    }
    const double got = __bfloat162float(hy[static_cast<size_t>(j)]);
    if (std::fabs(got - ref) > 1e-2 * mag + 1e-3) {
      throw std::runtime_error(fmt::format(
          "profile: {} n={} k={} verification failed: Y[0][{}] = {}, CPU {}", what, n, k, j, got,
          ref));
    }
  }
}


void profile_gemm(const Shapes& shapes, bool quick, const Settings& set, cudaStream_t st,
                  plan::Calibration& cal, const std::function<void(const std::string&)>& log) {
  const std::vector<int64_t> ms =
      quick ? std::vector<int64_t>{1, 8, 64, 512}
            : std::vector<int64_t>{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
  int64_t max_w = 0, max_n = 0, max_k = 0;
  for (const auto& [n, k] : shapes.gemm) {
    max_w = std::max(max_w, n * k * kBf16);
    max_n = std::max(max_n, n);
    max_k = std::max(max_k, k);
  }
  if (shapes.gemm.empty()) return;
  // Rotate weights over >= 512 MiB (L2 is 50-60 MB): every launch reads its weight from HBM.
  const int64_t arena_bytes = std::max<int64_t>(512LL << 20, 2 * max_w);
  DeviceBuffer arena(arena_bytes);
  DeviceBuffer x(ms.back() * max_k * kBf16), c(ms.back() * max_n * kBf16);
  detail::fill_hash_bf16(arena.get(), arena_bytes / kBf16, 11, 0.02f, st);
  detail::fill_hash_bf16(x.get(), ms.back() * max_k, 12, 1.0f, st);
  cublasHandle_t h;
  MASEP_CUBLAS_CHECK(cublasCreate(&h));
  MASEP_CUBLAS_CHECK(cublasSetStream(h, st));
  DeviceBuffer ws(static_cast<int64_t>(detail::kCublasWorkspaceBytes));  // as the executor
  MASEP_CUBLAS_CHECK(cublasSetWorkspace(h, ws.get(), detail::kCublasWorkspaceBytes));
  auto gemm = [&](const void* w, int64_t m, int64_t n, int64_t k) {
    detail::gemm_bf16(h, w, x.get(), c.get(), m, n, k);  // the executor's call
  };
  try {
    for (const auto& [n, k] : shapes.gemm) {
      const int64_t wb = (n * k * kBf16 + 255) / 256 * 256;
      const int64_t slots = std::max<int64_t>(1, arena_bytes / wb);
      plan::GemmTable t;
      t.n = n;
      t.k = k;
      for (int64_t m : ms) {
        const double ns =
            time_ns(st, set, [&](int i) { gemm(arena.get<char>() + (i % slots) * wb, m, n, k); });
        t.points.push_back({m, ns});
      }
      // Verify: C[0][j] of the weight in slot 0 against a CPU dot product.
      gemm(arena.get(), 1, n, k);
      verify_first_row(st, x.get(), arena.get(), c.get(), n, k, "GEMM");
      cal.gemm.push_back(std::move(t));
    }
  } catch (...) {
    cublasDestroy(h);
    throw;
  }
  cublasDestroy(h);
  if (log)
    log(fmt::format("gemm: {} shapes x {} m values, verified", shapes.gemm.size(), ms.size()));
}

// ---- grouped decode GEMM ------------------------------------------------------------------------

// verify_first_row for an FP8 block-scaled weight (kernels/weight_format.hpp) at `w`.
void verify_first_row_fp8(cudaStream_t st, const void* x, const void* w, const void* y, int64_t n,
                          int64_t k, const char* what) {
  const int64_t cols = std::min<int64_t>(n, 4);
  const int64_t kb = (k + kernels::kFp8ScaleBlock - 1) / kernels::kFp8ScaleBlock;
  std::vector<bf16> hx(static_cast<size_t>(k)), hy(static_cast<size_t>(cols));
  std::vector<uint8_t> hw(static_cast<size_t>(cols * k));
  std::vector<float> hs(static_cast<size_t>(kb));  // scales of row block 0
  MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
  MASEP_CUDA_CHECK(cudaMemcpy(hx.data(), x, k * kBf16, cudaMemcpyDeviceToHost));
  MASEP_CUDA_CHECK(cudaMemcpy(hw.data(), w, cols * k, cudaMemcpyDeviceToHost));
  MASEP_CUDA_CHECK(cudaMemcpy(hs.data(), static_cast<const char*>(w) + n * k, kb * sizeof(float),
                              cudaMemcpyDeviceToHost));
  MASEP_CUDA_CHECK(cudaMemcpy(hy.data(), y, cols * kBf16, cudaMemcpyDeviceToHost));
  for (int64_t j = 0; j < cols; ++j) {
    double ref = 0, mag = 0;
    for (int64_t i = 0; i < k; ++i) {
      const double p = static_cast<double>(__bfloat162float(hx[static_cast<size_t>(i)])) *
                       kernels::ref::fp8_e4m3_to_float(hw[static_cast<size_t>(j * k + i)]) *
                       hs[static_cast<size_t>(i / kernels::kFp8ScaleBlock)];
      ref += p;
      mag += std::fabs(p);
    }
    const double got = __bfloat162float(hy[static_cast<size_t>(j)]);
    if (std::fabs(got - ref) > 1e-2 * mag + 1e-3) {
      throw std::runtime_error(
          fmt::format("profile: {} n={} k={} verification failed: Y[0][{}] = {}, CPU {}", what, n,
                      k, j, got, ref));
    }
  }
}

// The executor's grouped launch (kernels/grouped_gemm.hpp) per weight shape and format: for
// each group row count r, launches of 1 group and of G groups (each r rows, weights in
// distinct arena slots, alternating between two disjoint slot sets so a launch never finds its
// weights in L2); per_group(r) = (T_G − T_1) / (G − 1), base = median over r of T_1 − per_group.
// bf16: the expert projections, rows up to grouped_gemm_max_rows (beyond: cuBLAS, the GEMM
// tables). FP8: every GEMM with FP8 weights (an attention projection is one group of all the
// batch's tokens), rows up to 512 (beyond: extrapolated), max_rows "every group".
void profile_grouped_gemm(const Shapes& shapes, bool quick, const Settings& set, cudaStream_t st,
                          plan::Calibration& cal,
                          const std::function<void(const std::string&)>& log) {
  if (shapes.grouped.empty() && shapes.grouped_fp8.empty()) return;
  const std::vector<int32_t> grid = quick ? std::vector<int32_t>{1, 2, 4, 16, 64}
                                          : std::vector<int32_t>{1, 2, 4, 8, 16, 32, 64};
  const std::vector<int32_t> grid_fp8 =
      quick ? std::vector<int32_t>{1, 2, 4, 16, 64, 256}
            : std::vector<int32_t>{1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
  constexpr int kMaxGroups = 32;
  constexpr int32_t kFp8MaxRows = 1 << 20;  // the executor has no other FP8 path
  using kernels::WeightFormat;
  int64_t max_w = 0, max_n = 0, max_k = 0;
  for (const auto* set_of : {&shapes.grouped, &shapes.grouped_fp8}) {
    for (const auto& [n, k] : *set_of) {
      max_w = std::max(max_w, n * k * kBf16);
      max_n = std::max(max_n, n);
      max_k = std::max(max_k, k);
    }
  }
  const int64_t arena_bytes = std::max<int64_t>(1LL << 30, 4 * max_w);
  DeviceBuffer arena(arena_bytes);
  const int64_t max_rows = static_cast<int64_t>(kMaxGroups) * grid_fp8.back();
  DeviceBuffer x(max_rows * max_k * kBf16), y(max_rows * max_n * kBf16);
  detail::fill_hash_bf16(arena.get(), arena_bytes / kBf16, 21, 0.02f, st);
  detail::fill_hash_bf16(x.get(), max_rows * max_k, 22, 1.0f, st);
  size_t tables = 0;
  for (const WeightFormat fmt : {WeightFormat::kBF16, WeightFormat::kFP8Block}) {
    const bool fp8 = fmt == WeightFormat::kFP8Block;
    const auto& shape_set = fp8 ? shapes.grouped_fp8 : shapes.grouped;
    for (const auto& [n, k] : shape_set) {
      const int64_t wb = (kernels::weight_bytes(fmt, n, k) + 255) / 256 * 256;
      const int64_t slots = arena_bytes / wb;
      const int groups = static_cast<int>(std::min<int64_t>(kMaxGroups, slots / 2));
      if (groups < 2 || k % (fp8 ? 16 : 8) != 0) continue;  // cannot separate base from per-group
      if (fp8) {  // the bf16 shapes (measured first) read the arena's bf16 fill
        for (int64_t i = 0; i < 2 * groups; ++i) {
          detail::fill_hash_fp8_block(arena.get<char>() + i * wb, n, k, 21 + i, 0.02f, st);
        }
      }
      auto args = [&](int g, int32_t r, int set_index) {
        kernels::GroupedGemmArgs a;
        a.w_base = arena.get();
        a.format = fmt;
        a.groups = g;
        a.n = static_cast<int>(n);
        a.k = static_cast<int>(k);
        for (int i = 0; i < g; ++i) {
          const int64_t off = (static_cast<int64_t>(set_index) * groups + i) * wb;
          a.w_offset[i] = fp8 ? off : off / kBf16;  // bytes (e4m3) or bf16 elements
          a.row_offset[i + 1] = a.row_offset[i] + r;
        }
        return a;
      };
      auto launch = [&](const kernels::GroupedGemmArgs& a) {
        MASEP_KERNEL_CHECK(
            kernels::launch_grouped_gemm(a, x.get<kernels::bf16>(), y.get<kernels::bf16>(), st));
      };
      plan::GroupedGemmTable t;
      t.n = n;
      t.k = k;
      t.weights = fp8 ? models::DType::kFP8 : models::DType::kBF16;
      // The rows the executor sends to this launch for this shape.
      t.max_rows = fp8 ? kFp8MaxRows : kernels::grouped_gemm_max_rows(n, k);
      std::vector<int32_t> rows;
      for (int32_t r : fp8 ? grid_fp8 : grid) {
        if (r <= t.max_rows) rows.push_back(r);
      }
      std::vector<double> bases;
      for (int32_t r : rows) {
        const kernels::GroupedGemmArgs one[2] = {args(1, r, 0), args(1, r, 1)};
        const kernels::GroupedGemmArgs many[2] = {args(groups, r, 0), args(groups, r, 1)};
        const double t1 = time_ns(st, set, [&](int i) { launch(one[i % 2]); });
        const double tg = time_ns(st, set, [&](int i) { launch(many[i % 2]); });
        const double per = std::max(1.0, (tg - t1) / (groups - 1));
        t.points.push_back({r, per});
        bases.push_back(t1 - per);
      }
      std::sort(bases.begin(), bases.end());
      t.base_ns = std::max(0.0, bases[bases.size() / 2]);
      // Verify: row 0 of group 0, first columns, against a CPU dot product.
      launch(args(1, 1, 0));
      if (fp8) {
        verify_first_row_fp8(st, x.get(), arena.get(), y.get(), n, k, "FP8 grouped GEMM");
      } else {
        verify_first_row(st, x.get(), arena.get(), y.get(), n, k, "grouped GEMM");
      }
      cal.grouped_gemm.push_back(std::move(t));
      ++tables;
    }
  }
  if (log) {
    log(fmt::format("grouped gemm: {} tables ({} fp8) x up to {} row counts, verified", tables,
                    shapes.grouped_fp8.size(), grid_fp8.size()));
  }
}

// ---- decode attention --------------------------------------------------------------------------

void profile_attention(const Shapes& shapes, bool quick, const Settings& set, cudaStream_t st,
                       int sm_count, plan::Calibration& cal,
                       const std::function<void(const std::string&)>& log) {
  const std::vector<int> batches =
      quick ? std::vector<int>{8, 64} : std::vector<int>{1, 4, 16, 64, 256};
  const std::vector<int> contexts =
      quick ? std::vector<int>{512, 4096} : std::vector<int>{128, 512, 2048, 8192, 32768};
  constexpr int64_t kKvCap = 8LL << 30;  // K and V together, per point
  int measured = 0, skipped = 0;
  for (const HeadShape& hs : shapes.attention) {
    if (hs.head_dim != 64 && hs.head_dim != 128) {
      if (log) log(fmt::format("  attention head_dim {} has no kernel: skipped", hs.head_dim));
      continue;
    }
    // A head shape the kernel rejects (std::invalid_argument from check_decode_attention,
    // kUnsupported from the launcher, both before any launch) is skipped, not fatal.
    try {
      for (int b : batches) {
        plan::AttentionTable t{hs.heads, hs.kv_heads, hs.head_dim, b, {}};
        for (int ctx : contexts) {
          const int64_t kv_one = static_cast<int64_t>(b) * hs.kv_heads * ctx * hs.head_dim * kBf16;
          if (2 * kv_one > kKvCap) {
            ++skipped;
            continue;
          }
          const int64_t cols = static_cast<int64_t>(hs.heads + 2 * hs.kv_heads) * hs.head_dim;
          // The executor's split count (exec/src/launch_plan.cpp, PlanOptions).
          const int splits = kernels::decode_attention_num_splits(
              b, hs.heads, hs.kv_heads, hs.head_dim, ctx, sm_count,
              kernels::decode_attention_peak_memory_GBps());
          const size_t ws =
              kernels::decode_attention_workspace_bytes(b, hs.heads, hs.head_dim, splits);
          DeviceBuffer k(kv_one), v(kv_one), qkv(b * cols * kBf16),
              out(static_cast<int64_t>(b) * hs.heads * hs.head_dim * kBf16),
              work(static_cast<int64_t>(ws)), lens(static_cast<int64_t>(b) * 4);
          detail::fill_hash_bf16(k.get(), kv_one / kBf16, 21, 1.0f, st);
          detail::fill_hash_bf16(v.get(), kv_one / kBf16, 22, 1.0f, st);
          detail::fill_hash_bf16(qkv.get(), b * cols, 23, 1.0f, st);
          // ctx - 1 tokens in the cache; the launch appends one and attends over ctx.
          std::vector<int32_t> hl(static_cast<size_t>(b), ctx - 1);
          MASEP_CUDA_CHECK(
              cudaMemcpyAsync(lens.get(), hl.data(), b * 4, cudaMemcpyHostToDevice, st));
          // The executor's launch: fused QKV rows, appending the new token.
          const kernels::DecodeAttentionParams ap = detail::fused_qkv_attention(
              qkv.get<bf16>(), b, hs.heads, hs.kv_heads, hs.head_dim, true, k.get<bf16>(),
              v.get<bf16>(), lens.get<int32_t>(), ctx, out.get<bf16>(), work.get(), ws, splits);
          kernels::check_decode_attention(ap);
          const double ns = time_ns(
              st, set, [&](int) { MASEP_KERNEL_CHECK(kernels::launch_decode_attention(ap, st)); });
          MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
          check_finite(out.get(), static_cast<int64_t>(b) * hs.heads * hs.head_dim,
                       "decode attention");
          t.points.push_back({ctx, ns});
          ++measured;
        }
        if (!t.points.empty()) cal.attention.push_back(std::move(t));
      }
    } catch (const std::exception& e) {
      if (cudaGetLastError() != cudaSuccess) throw;  // a real launch failure: stop
      while (!cal.attention.empty() && cal.attention.back().heads == hs.heads &&
             cal.attention.back().kv_heads == hs.kv_heads &&
             cal.attention.back().head_dim == hs.head_dim) {
        cal.attention.pop_back();
      }
      if (log) {
        log(fmt::format("  attention heads {} kv_heads {} head_dim {} skipped: {}", hs.heads,
                        hs.kv_heads, hs.head_dim, e.what()));
      }
    }
  }
  if (log) {
    log(
        fmt::format("attention: {} head shapes, {} points ({} over the {} GiB KV cap skipped), "
                    "outputs finite",
                    shapes.attention.size(), measured, skipped, kKvCap >> 30));
  }
}

// ---- element-wise, router, permute, combine
// -------------------------------------------------------

void profile_kernels(const Shapes& shapes, bool quick, const Settings& set, cudaStream_t st,
                     plan::Calibration& cal, const std::function<void(const std::string&)>& log) {
  const std::vector<int64_t> tokens = quick ? std::vector<int64_t>{1, 32, 1024}
                                            : std::vector<int64_t>{1, 4, 16, 64, 256, 1024, 4096};
  std::map<std::string, std::vector<plan::CalPoint>> pts;
  const float eps = 1e-6f;
  for (const models::Model& m : shapes.models) {
    const int64_t h = m.hidden, H = m.heads, KV = m.kv_heads, hd = m.head_dim, E = m.experts,
                  K = m.top_k, F = m.expert_ffn;
    const bool swiglu = m.activation == models::Activation::kSwiGLU;
    const int64_t in_cols = m.expert_in_columns();
    if (h % 8 != 0 || E > 256 || K > 8) {
      if (log)
        log(fmt::format("  kernels of model {} skipped (hidden % 8, experts or top-k)", m.name));
      continue;
    }
    try {  // a model whose shapes a kernel rejects (before launching) is skipped
      for (int64_t T : tokens) {
        const int64_t rows = T * K;
        const int64_t qkv_cols = (H + 2 * KV) * hd;
        DeviceBuffer a(std::max(rows, T) * std::max(h, in_cols) * kBf16),
            b(std::max(rows, T) * std::max(h, in_cols) * kBf16), res(T * h * kBf16), w(h * kBf16),
            qkv(T * qkv_cols * kBf16), logits(T * E * kBf16), ids(rows * 4), wts(rows * 4),
            counts(E * 4), prow(rows * 4), src(rows * 4), offs((E + 1) * 4), pos(T * 4);
        detail::fill_hash_bf16(a.get(), a.bytes() / kBf16, 31, 1.0f, st);
        detail::fill_hash_bf16(res.get(), T * h, 32, 1.0f, st);
        detail::fill_hash_bf16(w.get(), h, 33, 1.0f, st);
        detail::fill_hash_bf16(qkv.get(), T * qkv_cols, 34, 1.0f, st);
        detail::fill_hash_bf16(logits.get(), T * E, 35, 1.0f, st);
        MASEP_CUDA_CHECK(cudaMemsetAsync(pos.get(), 0, T * 4, st));
        auto add = [&](const char* name, int64_t bytes, double ns) {
          pts[name].push_back({bytes, ns});
        };

        add("rmsnorm", 2 * T * h * kBf16 + h * kBf16, time_ns(st, set, [&](int) {
              MASEP_KERNEL_CHECK(kernels::launch_rmsnorm(a.get<bf16>(), w.get<bf16>(),
                                                         b.get<bf16>(), static_cast<int>(T),
                                                         static_cast<int>(h), eps, st));
            }));
        add("add_norm", 4 * T * h * kBf16 + h * kBf16, time_ns(st, set, [&](int) {
              MASEP_KERNEL_CHECK(kernels::launch_add_rmsnorm(
                  res.get<bf16>(), a.get<bf16>(), w.get<bf16>(), b.get<bf16>(), static_cast<int>(T),
                  static_cast<int>(h), eps, st));
            }));
        kernels::RopeParams rp;
        rp.q = qkv.get<bf16>();
        rp.q_stride = qkv_cols;
        rp.k = qkv.get<bf16>() + H * hd;
        rp.k_stride = qkv_cols;
        rp.positions = pos.get<int32_t>();
        rp.tokens = static_cast<int>(T);
        rp.num_heads = static_cast<int>(H);
        rp.num_kv_heads = static_cast<int>(KV);
        rp.head_dim = static_cast<int>(hd);
        add("rope", 2 * T * (H + KV) * hd * kBf16,
            time_ns(st, set, [&](int) { MASEP_KERNEL_CHECK(kernels::launch_rope(rp, st)); }));
        add("act", T * (in_cols + F) * kBf16, time_ns(st, set, [&](int) {
              if (swiglu) {
                MASEP_KERNEL_CHECK(kernels::launch_swiglu(a.get<bf16>(), b.get<bf16>(), T,
                                                          static_cast<int>(F), st));
              } else {
                MASEP_KERNEL_CHECK(
                    kernels::launch_gelu(a.get<bf16>(), b.get<bf16>(), T, static_cast<int>(F), st));
              }
            }));
        MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
        check_finite(b.get(), T * F, "activation");

        kernels::RouterParams r;
        r.logits = logits.get();
        r.logits_dtype = kernels::DType::kBF16;
        r.topk_ids = ids.get<int32_t>();
        r.topk_weights = wts.get<float>();
        r.expert_counts = counts.get<int32_t>();
        r.tokens = static_cast<int>(T);
        r.num_experts = static_cast<int>(E);
        r.k = static_cast<int>(K);
        // As the executor launches a router op: top-k, then the forced-routing kernel that
        // installs the Program's experts (exec/src/device_init.cu; its outputs go to separate
        // buffers here so the permute below still sees the top-k kernel's).
        DeviceBuffer forced_in(rows * 4 * 2 + E * 4), forced_out(rows * 8 + E * 4);
        MASEP_CUDA_CHECK(cudaMemsetAsync(forced_in.get(), 0, forced_in.bytes(), st));
        const int32_t* f_orig = forced_in.get<int32_t>();
        add("router", T * E * kBf16 + T * K * 8, time_ns(st, set, [&](int) {
              MASEP_KERNEL_CHECK(kernels::launch_router_topk(r, st));
              detail::apply_forced_route(logits.get(), static_cast<int>(T), static_cast<int>(E),
                                         static_cast<int>(K), f_orig, f_orig + rows,
                                         f_orig + 2 * rows, static_cast<int>(E),
                                         forced_out.get<int32_t>(),
                                         reinterpret_cast<float*>(forced_out.get<int32_t>() + rows),
                                         forced_out.get<int32_t>() + 2 * rows, st);
              MASEP_CUDA_CHECK(cudaGetLastError());
            }));
        kernels::PermuteParams pp;
        pp.x = res.get<bf16>();
        pp.topk_ids = ids.get<int32_t>();
        pp.expert_counts = counts.get<int32_t>();
        pp.permuted_x = a.get<bf16>();
        pp.permuted_row = prow.get<int32_t>();
        pp.source_token = src.get<int32_t>();
        pp.expert_offsets = offs.get<int32_t>();
        pp.tokens = static_cast<int>(T);
        pp.hidden = static_cast<int>(h);
        pp.num_experts = static_cast<int>(E);
        pp.k = static_cast<int>(K);
        add("permute", T * h * kBf16 + rows * h * kBf16,
            time_ns(st, set, [&](int) { MASEP_KERNEL_CHECK(kernels::launch_permute(pp, st)); }));
        kernels::CombineParams cp;
        cp.expert_out = a.get<bf16>();
        cp.permuted_row = prow.get<int32_t>();
        cp.topk_weights = wts.get<float>();
        cp.residual = res.get<bf16>();
        cp.out = b.get<bf16>();
        cp.tokens = static_cast<int>(T);
        cp.hidden = static_cast<int>(h);
        cp.k = static_cast<int>(K);
        add("combine", (rows + 2 * T) * h * kBf16,
            time_ns(st, set, [&](int) { MASEP_KERNEL_CHECK(kernels::launch_combine(cp, st)); }));
        MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
        check_finite(b.get(), T * h, "combine");
        // The executor regroups rows on the MoE side with row-map kernels (real data flow:
        // kGatherRows for moe_permute, kScatterRows for moe_unpermute, exec/src/device_init.cu);
        // timed here with an identity map over rows = tokens x top-k rows of `hidden`.
        const int64_t copy = rows * h * kBf16;
        DeviceBuffer map(rows * 4);
        {
          std::vector<int32_t> id(static_cast<size_t>(rows));
          for (int64_t i = 0; i < rows; ++i) id[static_cast<size_t>(i)] = static_cast<int32_t>(i);
          MASEP_CUDA_CHECK(cudaMemcpy(map.get(), id.data(), static_cast<size_t>(rows) * 4,
                                      cudaMemcpyHostToDevice));
        }
        add("moe_permute", 2 * copy, time_ns(st, set, [&](int) {
              detail::gather_rows_bf16(b.get(), a.get(), nullptr, map.get<int32_t>(), rows, h, st);
              MASEP_CUDA_CHECK(cudaGetLastError());
            }));
        add("moe_unpermute", 2 * copy, time_ns(st, set, [&](int) {
              detail::scatter_rows_bf16(a.get(), b.get(), nullptr, map.get<int32_t>(), rows, h, st);
              MASEP_CUDA_CHECK(cudaGetLastError());
            }));
      }
    } catch (const std::exception& e) {
      if (cudaGetLastError() != cudaSuccess) throw;  // a real launch failure: stop
      if (log) log(fmt::format("  kernels of model {} stopped: {}", m.name, e.what()));
    }
  }
  for (auto& [name, p] : pts) cal.kernels.push_back({name, tidy(std::move(p))});
  if (log)
    log(fmt::format("kernels: {} tables over {} models x {} token counts, outputs finite",
                    cal.kernels.size(), shapes.models.size(), tokens.size()));
}

// ---- per-launch costs as the executor times them -------------------------------------------

// The executor records a CUDA event before and after every launch, with launches queued on the
// stream (the host runs ahead of the GPU). The tables above time back-to-back launches without
// events (throughput). This measures, for a tiny kernel (rmsnorm of one token), a cuBLAS GEMM
// and a larger kernel: (end − start) of each event pair, the gap from one launch's end event to
// the next one's start event, with launches queued behind a long copy so that the host is
// ahead as in the executor, and the back-to-back time of the same launch; then the three in
// turn (each after a different kernel, as in the executor). The overhead per launch is
// (event-pair time − back-to-back time) and the gap the end-to-start gap, medians over the
// interleaved sequence (the same-kernel figures go to the notes: the first H200 file used
// them, and the executor measured ~1.3 µs more per launch than they predict). Also the event
// pair around one tiny launch after the stream idled.
void profile_launch(const Settings& set, cudaStream_t st, plan::Calibration& cal,
                    const std::function<void(const std::string&)>& log) {
  constexpr int64_t h = 4096, big_tokens = 1024;
  const int n = std::max(set.iters, 20);
  DeviceBuffer x(big_tokens * h * kBf16), y(big_tokens * h * kBf16), w(h * kBf16),
      gw(h * h * kBf16);
  detail::fill_hash_bf16(x.get(), big_tokens * h, 41, 1.0f, st);
  detail::fill_hash_bf16(w.get(), h, 42, 1.0f, st);
  detail::fill_hash_bf16(gw.get(), h * h, 43, 0.02f, st);
  cublasHandle_t hb;
  MASEP_CUBLAS_CHECK(cublasCreate(&hb));
  MASEP_CUBLAS_CHECK(cublasSetStream(hb, st));
  DeviceBuffer ws(static_cast<int64_t>(detail::kCublasWorkspaceBytes));  // as the executor
  MASEP_CUBLAS_CHECK(cublasSetWorkspace(hb, ws.get(), detail::kCublasWorkspaceBytes));
  auto tiny = [&] {
    MASEP_KERNEL_CHECK(kernels::launch_rmsnorm(x.get<bf16>(), w.get<bf16>(), y.get<bf16>(), 1,
                                               static_cast<int>(h), 1e-6f, st));
  };
  auto big = [&] {
    MASEP_KERNEL_CHECK(kernels::launch_rmsnorm(x.get<bf16>(), w.get<bf16>(), y.get<bf16>(),
                                               static_cast<int>(big_tokens), static_cast<int>(h),
                                               1e-6f, st));
  };
  auto gemm = [&] { detail::gemm_bf16(hb, gw.get(), x.get(), y.get(), 8, h, h); };
  std::vector<cudaEvent_t> s(static_cast<size_t>(n)), e(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    MASEP_CUDA_CHECK(cudaEventCreate(&s[static_cast<size_t>(i)]));
    MASEP_CUDA_CHECK(cudaEventCreate(&e[static_cast<size_t>(i)]));
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  auto elapsed_ns = [](cudaEvent_t a, cudaEvent_t b) {
    float ms = 0;
    MASEP_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    return static_cast<double>(ms) * 1e6;
  };
  // Executor-style: the blocker first, so every launch below is queued.
  auto evented = [&](auto&& launch, double* pair_ns, double* gap_ns) {
    for (int i = 0; i < 3; ++i) launch();
    MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
    if (set.blocker == nullptr) throw std::logic_error("profile_launch needs a blocker");
    set.blocker->enqueue(st);
    for (int i = 0; i < n; ++i) {
      MASEP_CUDA_CHECK(cudaEventRecord(s[static_cast<size_t>(i)], st));
      launch();
      MASEP_CUDA_CHECK(cudaEventRecord(e[static_cast<size_t>(i)], st));
    }
    MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
    std::vector<double> pairs, gaps;
    for (int i = 0; i < n; ++i) {
      pairs.push_back(elapsed_ns(s[static_cast<size_t>(i)], e[static_cast<size_t>(i)]));
      if (i > 0)
        gaps.push_back(elapsed_ns(e[static_cast<size_t>(i - 1)], s[static_cast<size_t>(i)]));
    }
    *pair_ns = median(pairs);
    *gap_ns = median(gaps);
  };
  std::vector<double> overheads, gaps, same_overheads;
  std::string detail_text;
  double tiny_b2b = 0;
  try {
    const std::array<std::pair<const char*, std::function<void()>>, 3> launches = {
        {{"rmsnorm 1x4096", tiny}, {"gemm 8x4096x4096", gemm}, {"rmsnorm 1024x4096", big}}};
    std::vector<double> b2bs;
    for (const auto& [name, launch] : launches) {
      const double b2b = time_ns(st, set, [&](int) { launch(); });
      b2bs.push_back(b2b);
      double pair = 0, gap = 0;
      evented(launch, &pair, &gap);
      same_overheads.push_back(std::max(0.0, pair - b2b));
      if (detail_text.empty()) tiny_b2b = b2b;
      detail_text +=
          fmt::format("{}{}: back-to-back {:.0f} ns, event pair {:.0f} ns, gap {:.0f} ns",
                      detail_text.empty() ? "" : "; ", name, b2b, pair, gap);
    }
    // As the executor issues them: each launch follows a different kernel (the three in
    // turn), every one between its own event pair, all queued. The calibration's overhead and
    // gap come from this sequence; the same-kernel repeats above are kept in the notes.
    const int rounds = std::max(1, n / 3);
    for (int i = 0; i < 3; ++i) launches[i].second();
    MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
    set.blocker->enqueue(st);
    for (int i = 0; i < 3 * rounds && i < n; ++i) {
      MASEP_CUDA_CHECK(cudaEventRecord(s[static_cast<size_t>(i)], st));
      launches[i % 3].second();
      MASEP_CUDA_CHECK(cudaEventRecord(e[static_cast<size_t>(i)], st));
    }
    MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
    std::array<std::vector<double>, 3> mixed_pairs;
    for (int i = 0; i < 3 * rounds && i < n; ++i) {
      const double pair = elapsed_ns(s[static_cast<size_t>(i)], e[static_cast<size_t>(i)]);
      mixed_pairs[static_cast<size_t>(i % 3)].push_back(pair);
      overheads.push_back(std::max(0.0, pair - b2bs[static_cast<size_t>(i % 3)]));
      if (i > 0)
        gaps.push_back(elapsed_ns(e[static_cast<size_t>(i - 1)], s[static_cast<size_t>(i)]));
    }
    detail_text += fmt::format(
        "; interleaved: event pairs {:.0f} / {:.0f} / {:.0f} ns; same-kernel overhead {:.0f} ns",
        median(mixed_pairs[0]), median(mixed_pairs[1]), median(mixed_pairs[2]),
        median(same_overheads));
    // One tiny launch after the stream idled (host-bound: the launch latency shows in full).
    std::vector<double> idle;
    for (int i = 0; i < 10; ++i) {
      MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
      MASEP_CUDA_CHECK(cudaEventRecord(s[0], st));
      tiny();
      MASEP_CUDA_CHECK(cudaEventRecord(e[0], st));
      MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
      idle.push_back(elapsed_ns(s[0], e[0]));
    }
    cal.launch.idle_launch_ns = median(idle);
  } catch (...) {
    for (auto v : s) cudaEventDestroy(v);
    for (auto v : e) cudaEventDestroy(v);
    cublasDestroy(hb);
    throw;
  }
  for (auto v : s) cudaEventDestroy(v);
  for (auto v : e) cudaEventDestroy(v);
  cublasDestroy(hb);
  cal.launch.measured = true;
  cal.launch.event_overhead_ns = median(overheads);
  cal.launch.event_gap_ns = median(gaps);
  cal.launch.kernel_ns = tiny_b2b;
  cal.notes += "; launch: " + detail_text +
               fmt::format("; idle tiny launch event pair {:.0f} ns", cal.launch.idle_launch_ns);
  if (log) {
    log(fmt::format("launch: event overhead {:.0f} ns, gap {:.0f} ns, idle launch {:.0f} ns ({})",
                    cal.launch.event_overhead_ns, cal.launch.event_gap_ns,
                    cal.launch.idle_launch_ns, detail_text));
  }
}

// ---- NCCL -------------------------------------------------------------------------------------

// A 2 GiB copy per GPU (~1 ms), longer than the host takes to queue one point's timed calls.
constexpr int64_t kCommBlockerBytes = 2LL << 30;

// One host thread per GPU, released together; time = the slowest GPU's mean per launch.
class CommGroup {
 public:
  CommGroup(int n, int64_t max_bytes) : n_(n), comms_(static_cast<size_t>(n)) {
    std::vector<int> devs(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) devs[static_cast<size_t>(i)] = i;
    MASEP_NCCL_CHECK(ncclCommInitAll(comms_.data(), n, devs.data()));
    for (int i = 0; i < n; ++i) {
      MASEP_CUDA_CHECK(cudaSetDevice(i));
      cudaStream_t s;
      MASEP_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
      streams_.push_back(s);
      send_.emplace_back(max_bytes);
      recv_.emplace_back(max_bytes);
      blockers_.push_back(std::make_unique<Blocker>(kCommBlockerBytes));
    }
    MASEP_CUDA_CHECK(cudaSetDevice(0));
  }
  ~CommGroup() {
    for (int i = 0; i < n_; ++i) {
      cudaSetDevice(i);
      cudaStreamSynchronize(streams_[static_cast<size_t>(i)]);
      ncclCommDestroy(comms_[static_cast<size_t>(i)]);
      cudaStreamDestroy(streams_[static_cast<size_t>(i)]);
    }
    send_.clear();
    recv_.clear();
    blockers_.clear();
    cudaSetDevice(0);
  }
  int size() const { return n_; }
  void* send(int r) const { return send_[static_cast<size_t>(r)].get(); }
  void* recv(int r) const { return recv_[static_cast<size_t>(r)].get(); }
  ncclComm_t comm(int r) const { return comms_[static_cast<size_t>(r)]; }
  cudaStream_t stream(int r) const { return streams_[static_cast<size_t>(r)]; }

  /// Runs `launch(rank, stream)` on every GPU under the harness; returns ns per launch.
  template <class Launch>
  double time(const Settings& set, Launch launch) {
    std::vector<double> ns(static_cast<size_t>(n_), 0);
    std::barrier sync(n_);
    std::exception_ptr err;
    std::mutex mu;
    std::vector<std::thread> threads;
    for (int r = 0; r < n_; ++r) {
      threads.emplace_back([&, r] {
        try {
          MASEP_CUDA_CHECK(cudaSetDevice(r));
          ns[static_cast<size_t>(r)] = time_rank(r, set, launch, sync);
        } catch (...) {
          std::lock_guard<std::mutex> g(mu);
          if (!err) err = std::current_exception();
        }
      });
    }
    for (auto& t : threads) t.join();
    MASEP_CUDA_CHECK(cudaSetDevice(0));
    if (err) std::rethrow_exception(err);
    return *std::max_element(ns.begin(), ns.end());
  }

 private:
  // Every rank takes the barrier exactly twice, even if a launch throws, so no thread waits
  // forever (a failed NCCL call is then reported from the joined threads).
  template <class Launch>
  double time_rank(int r, const Settings& set, Launch& launch, std::barrier<>& sync) {
    cudaStream_t st = streams_[static_cast<size_t>(r)];
    std::exception_ptr err;
    double out = 0;
    try {
      for (int i = 0; i < set.warmup; ++i) launch(r, st);
      MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
    } catch (...) {
      err = std::current_exception();
    }
    sync.arrive_and_wait();
    if (!err) {
      try {
        // Behind this GPU's blocker, as the compute tables: the GPU's time per call with the
        // queue full (as in the executor), not the host's launch rate. Every GPU's blocker
        // starts after the barrier, so they end within the host's skew of each other.
        out = time_ns(st, Settings{0, set.iters, blockers_[static_cast<size_t>(r)].get()},
                      [&](int) { launch(r, st); });
      } catch (...) {
        err = std::current_exception();
      }
    }
    sync.arrive_and_wait();
    if (err) std::rethrow_exception(err);
    return out;
  }

  int n_;
  std::vector<ncclComm_t> comms_;
  std::vector<cudaStream_t> streams_;
  std::vector<DeviceBuffer> send_, recv_;
  std::vector<std::unique_ptr<Blocker>> blockers_;
};

// Compute slowed by communication on the same GPU (the simulator's comm_interference and
// comm_resident_interference): a weight-bound cuBLAS GEMM like the expert GEMMs (32 x 14336 x
// 4096, weights rotated over 4 copies) on GPU 0, back-to-back, alone and while NCCL runs
// `rounds` grouped send/recv of `chunk` bytes both ways between GPUs 0 and 1 on the comm
// streams (as the executor's exchanges), enough to outlast the GEMMs: 64 MB x 24 (bytes moving
// at full bandwidth) or 4 KB x 400 (latency-bound: NCCL kernels resident, little traffic).
// Small chunks are enqueued faster than the host can issue them, so for them both streams
// first wait behind 8 blocker copies on GPU 0 (~8 ms) while the rounds are enqueued: the
// GEMMs and the rounds then start together. Returns (time with NCCL) / (alone) - 1, the median
// of 3 trials.
double profile_comm_slowdown(CommGroup& cg, const std::function<void(const std::string&)>& log,
                             int64_t chunk, int rounds, const char* what) {
  constexpr int64_t m = 32, n = 14336, k = 4096, copies = 4;
  constexpr int iters = 20;
  MASEP_CUDA_CHECK(cudaSetDevice(0));
  cudaStream_t cs;
  MASEP_CUDA_CHECK(cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking));
  DeviceBuffer w(copies * n * k * kBf16), x(m * k * kBf16), c(m * n * kBf16),
      ws(static_cast<int64_t>(detail::kCublasWorkspaceBytes));
  detail::fill_hash_bf16(w.get(), copies * n * k, 51, 0.02f, cs);
  detail::fill_hash_bf16(x.get(), m * k, 52, 1.0f, cs);
  cublasHandle_t h;
  MASEP_CUBLAS_CHECK(cublasCreate(&h));
  cudaEvent_t c0 = nullptr, c1 = nullptr, g1 = nullptr, held = nullptr;
  const bool hold = chunk < (1LL << 20);
  std::unique_ptr<Blocker> blocker;
  if (hold) blocker = std::make_unique<Blocker>(2LL << 30);
  std::vector<double> slow;
  std::string detail_text;
  try {
    MASEP_CUBLAS_CHECK(cublasSetStream(h, cs));
    MASEP_CUBLAS_CHECK(cublasSetWorkspace(h, ws.get(), detail::kCublasWorkspaceBytes));
    MASEP_CUDA_CHECK(cudaEventCreate(&c0));
    MASEP_CUDA_CHECK(cudaEventCreate(&c1));
    MASEP_CUDA_CHECK(cudaEventCreate(&g1));
    MASEP_CUDA_CHECK(cudaEventCreate(&held));
    auto gemm = [&](int i) {
      const char* wi = w.get<char>() + (i % copies) * n * k * kBf16;
      detail::gemm_bf16(h, wi, x.get(), c.get(), m, n, k);
    };
    for (int trial = 0; trial < 3; ++trial) {
      const double alone = time_ns(cs, Settings{3, iters, nullptr}, gemm);
      MASEP_CUDA_CHECK(cudaSetDevice(0));
      if (hold) {
        for (int i = 0; i < 8; ++i) blocker->enqueue(cs);
        MASEP_CUDA_CHECK(cudaEventRecord(held, cs));
        for (int r = 0; r < 2; ++r) {
          MASEP_CUDA_CHECK(cudaSetDevice(r));
          MASEP_CUDA_CHECK(cudaStreamWaitEvent(cg.stream(r), held, 0));
        }
        MASEP_CUDA_CHECK(cudaSetDevice(0));
      }
      MASEP_CUDA_CHECK(cudaEventRecord(c0, cg.stream(0)));
      for (int i = 0; i < rounds; ++i) {
        MASEP_NCCL_CHECK(ncclGroupStart());
        for (int r = 0; r < 2; ++r) {
          MASEP_NCCL_CHECK(ncclSend(cg.send(r), static_cast<size_t>(chunk), ncclUint8, 1 - r,
                                    cg.comm(r), cg.stream(r)));
          MASEP_NCCL_CHECK(ncclRecv(cg.recv(r), static_cast<size_t>(chunk), ncclUint8, 1 - r,
                                    cg.comm(r), cg.stream(r)));
        }
        MASEP_NCCL_CHECK(ncclGroupEnd());
      }
      MASEP_CUDA_CHECK(cudaSetDevice(0));
      MASEP_CUDA_CHECK(cudaEventRecord(c1, cg.stream(0)));
      const double with = time_ns(cs, Settings{0, iters, nullptr}, gemm);
      MASEP_CUDA_CHECK(cudaEventRecord(g1, cs));
      for (int r = 0; r < 2; ++r) {
        MASEP_CUDA_CHECK(cudaSetDevice(r));
        MASEP_CUDA_CHECK(cudaStreamSynchronize(cg.stream(r)));
      }
      MASEP_CUDA_CHECK(cudaSetDevice(0));
      MASEP_CUDA_CHECK(cudaEventSynchronize(g1));
      float comm_ms = 0, tail_ms = 0;
      MASEP_CUDA_CHECK(cudaEventElapsedTime(&comm_ms, c0, c1));
      MASEP_CUDA_CHECK(cudaEventElapsedTime(&tail_ms, g1, c1));  // > 0: traffic outlasted
      if (tail_ms <= 0) {
        throw std::runtime_error(fmt::format(
            "profile: the NCCL traffic ({:.2f} ms) ended before the GEMMs it should overlap",
            comm_ms));
      }
      slow.push_back(with / alone - 1);
      detail_text += fmt::format("{}{:.0f} / {:.0f} ns (traffic {:.2f} ms)",
                                 detail_text.empty() ? "" : "; ", alone, with, comm_ms);
    }
  } catch (...) {
    if (c0) cudaEventDestroy(c0);
    if (c1) cudaEventDestroy(c1);
    if (g1) cudaEventDestroy(g1);
    if (held) cudaEventDestroy(held);
    cublasDestroy(h);
    cudaStreamDestroy(cs);
    throw;
  }
  cudaEventDestroy(c0);
  cudaEventDestroy(c1);
  cudaEventDestroy(g1);
  cudaEventDestroy(held);
  cublasDestroy(h);
  cudaStreamDestroy(cs);
  std::sort(slow.begin(), slow.end());
  const double med = slow[1];
  if (log) {
    log(
        fmt::format("interference: GEMM 32x14336x4096 alone / with NCCL {} ({} x {} B): {}; "
                    "slowdown {:+.1f}%",
                    what, rounds, chunk, detail_text, 100 * med));
  }
  return med;
}

uint8_t read_byte(const void* dev, int64_t offset, int device) {
  uint8_t v = 0;
  MASEP_CUDA_CHECK(cudaSetDevice(device));
  MASEP_CUDA_CHECK(
      cudaMemcpy(&v, static_cast<const char*>(dev) + offset, 1, cudaMemcpyDeviceToHost));
  return v;
}

float read_bf16(const void* dev, int device) {
  bf16 v;
  MASEP_CUDA_CHECK(cudaSetDevice(device));
  MASEP_CUDA_CHECK(cudaMemcpy(&v, dev, sizeof(v), cudaMemcpyDeviceToHost));
  return __bfloat162float(v);
}

void profile_comm(int gpus, bool quick, const Settings& set, plan::Calibration& cal,
                  const std::function<void(const std::string&)>& log) {
  std::vector<int64_t> sizes;
  for (int64_t s = 1024; s <= (256LL << 20); s *= quick ? 64 : 4) sizes.push_back(s);
  const int64_t max_bytes = sizes.back();
  for (int g = 2; g <= gpus; g *= 2) {
    CommGroup cg(g, max_bytes);
    auto fill = [&](int value_base, bool per_rank) {
      for (int r = 0; r < g; ++r) {
        MASEP_CUDA_CHECK(cudaSetDevice(r));
        MASEP_CUDA_CHECK(cudaMemset(cg.send(r), per_rank ? value_base + r : value_base,
                                    static_cast<size_t>(max_bytes)));
        MASEP_CUDA_CHECK(cudaMemset(cg.recv(r), 0, static_cast<size_t>(max_bytes)));
      }
      MASEP_CUDA_CHECK(cudaSetDevice(0));
    };
    auto settings_for = [&](int64_t bytes) {
      Settings s = set;
      if (bytes >= (16LL << 20)) {
        s.warmup = std::min(s.warmup, 3);
        s.iters = std::min(s.iters, 10);
      }
      return s;
    };
    auto fail = [&](const char* op, int64_t bytes, const std::string& what) {
      throw std::runtime_error(fmt::format(
          "profile: NCCL {} of {} bytes on {} GPUs: verification failed: {}", op, bytes, g, what));
    };
    // bf16 reductions: every byte 0x3F, i.e. every element 0x3F3F = 0.74609375.
    fill(0x3F, false);
    const float elem = 0.74609375f;
    plan::CommTable ar{"all_reduce", g, {}}, rs{"reduce_scatter", g, {}};
    for (int64_t s : sizes) {
      const size_t count = static_cast<size_t>(s / kBf16);
      ar.points.push_back({s, cg.time(settings_for(s), [&](int r, cudaStream_t st) {
                             MASEP_NCCL_CHECK(ncclAllReduce(cg.send(r), cg.recv(r), count,
                                                            ncclBfloat16, ncclSum, cg.comm(r), st));
                           })});
      const float got = read_bf16(cg.recv(g - 1), g - 1);
      if (std::fabs(got - g * elem) > 0.02f * g)
        fail("all_reduce", s, fmt::format("{} != {}", got, g * elem));
      rs.points.push_back({s, cg.time(settings_for(s), [&](int r, cudaStream_t st) {
                             MASEP_NCCL_CHECK(ncclReduceScatter(cg.send(r), cg.recv(r), count / g,
                                                                ncclBfloat16, ncclSum, cg.comm(r),
                                                                st));
                           })});
      const float got2 = read_bf16(cg.recv(g - 1), g - 1);
      if (std::fabs(got2 - g * elem) > 0.02f * g)
        fail("reduce_scatter", s, fmt::format("{} != {}", got2, g * elem));
    }
    // Byte-exact ops: rank r's buffer holds bytes 0x41 + r.
    fill(0x41, true);
    plan::CommTable ag{"all_gather", g, {}}, a2a{"all_to_all", g, {}}, sr{"send_recv", g, {}};
    for (int64_t s : sizes) {
      const int64_t chunk = s / g;
      ag.points.push_back({s, cg.time(settings_for(s), [&](int r, cudaStream_t st) {
                             MASEP_NCCL_CHECK(ncclAllGather(cg.send(r), cg.recv(r),
                                                            static_cast<size_t>(chunk), ncclUint8,
                                                            cg.comm(r), st));
                           })});
      for (int j = 0; j < g; ++j) {
        const uint8_t v = read_byte(cg.recv(0), j * chunk, 0);
        if (v != 0x41 + j) fail("all_gather", s, fmt::format("chunk {} holds 0x{:02x}", j, v));
      }
      // All-to-all as the executor runs it: grouped send/recv of S/g to every other rank.
      a2a.points.push_back(
          {s, cg.time(settings_for(s), [&](int r, cudaStream_t st) {
             MASEP_NCCL_CHECK(ncclGroupStart());
             for (int p = 0; p < g; ++p) {
               if (p == r) continue;
               MASEP_NCCL_CHECK(ncclSend(static_cast<char*>(cg.send(r)) + p * chunk,
                                         static_cast<size_t>(chunk), ncclUint8, p, cg.comm(r), st));
               MASEP_NCCL_CHECK(ncclRecv(static_cast<char*>(cg.recv(r)) + p * chunk,
                                         static_cast<size_t>(chunk), ncclUint8, p, cg.comm(r), st));
             }
             MASEP_NCCL_CHECK(ncclGroupEnd());
           })});
      for (int j = 1; j < g; ++j) {
        const uint8_t v = read_byte(cg.recv(0), j * chunk, 0);
        if (v != 0x41 + j)
          fail("all_to_all", s, fmt::format("chunk from rank {} holds 0x{:02x}", j, v));
      }
      if (g == 2) {
        // One direction, rank 0 -> rank 1, as a Program's send/recv pair.
        sr.points.push_back({s, cg.time(settings_for(s), [&](int r, cudaStream_t st) {
                               if (r == 0) {
                                 MASEP_NCCL_CHECK(ncclSend(cg.send(0), static_cast<size_t>(s),
                                                           ncclUint8, 1, cg.comm(0), st));
                               } else {
                                 MASEP_NCCL_CHECK(ncclRecv(cg.recv(1), static_cast<size_t>(s),
                                                           ncclUint8, 0, cg.comm(1), st));
                               }
                             })});
        const uint8_t v = read_byte(cg.recv(1), s - 1, 1);
        if (v != 0x41) fail("send_recv", s, fmt::format("received 0x{:02x}", v));
      }
    }
    for (auto* t : {&ar, &ag, &rs, &a2a}) cal.comm.push_back(std::move(*t));
    if (g == 2) {
      const double sd = profile_comm_slowdown(cg, log, 64LL << 20, 24, "traffic");
      if (sd < 0 && log) log("interference: GEMMs ran faster with traffic; recorded as 0");
      cal.launch.comm_slowdown = std::max(0.0, sd);
      const double rd = profile_comm_slowdown(cg, log, 4096, 400, "resident");
      if (rd < 0 && log) log("interference: GEMMs ran faster with NCCL resident; recorded as 0");
      cal.launch.comm_resident_slowdown = std::max(0.0, rd);
    }
    if (!sr.points.empty()) cal.comm.push_back(std::move(sr));
    if (log)
      log(fmt::format("nccl: {} GPUs, {} sizes {}..{} bytes, verified", g, sizes.size(),
                      sizes.front(), sizes.back()));
  }
}

std::string version(int v) { return fmt::format("{}.{}", v / 1000, (v % 1000) / 10); }

}  // namespace

plan::Calibration run_profile(const ProfileOptions& o) {
  const auto& log = o.progress;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count < 1) {
    throw std::runtime_error("profile: no CUDA GPU is visible");
  }
  const int gpus = o.gpus > 0 ? std::min(o.gpus, count) : count;
  // As the executor: NVLink SHARP (NVLS) off, before NCCL initialises.
  ::setenv("NCCL_NVLS_ENABLE", "0", 1);
  MASEP_CUDA_CHECK(cudaSetDevice(0));
  cudaDeviceProp prop{};
  MASEP_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));

  plan::Calibration cal;
  cal.device = prop.name;
  int drv = 0, rt = 0, nccl = 0, cb_major = 0, cb_minor = 0, cb_patch = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  ncclGetVersion(&nccl);
  cublasGetProperty(MAJOR_VERSION, &cb_major);
  cublasGetProperty(MINOR_VERSION, &cb_minor);
  cublasGetProperty(PATCH_LEVEL, &cb_patch);
  cal.driver = version(drv);
  cal.cuda = version(rt);
  cal.cublas = fmt::format("{}.{}.{}", cb_major, cb_minor, cb_patch);
  cal.nccl = fmt::format("{}.{}.{}", nccl / 10000, (nccl % 10000) / 100, nccl % 100);
  {
    const std::time_t now = std::time(nullptr);  // the measurement's date (metadata only)
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[16];
    std::strftime(buf, sizeof(buf), "%Y-%m-%d", &tm);
    cal.date = buf;
  }
  cal.gpus = gpus;
  Settings set;
  set.warmup = o.warmup > 0 ? o.warmup : (o.quick ? 5 : 10);
  set.iters = o.iters > 0 ? o.iters : (o.quick ? 20 : 50);
  cal.notes = fmt::format(
      "masep profile{}: warmup {}, iters {}, {} GPUs of {} ({} SMs); compute "
      "tables timed behind a 2 GiB copy (GPU time per launch, queue full); "
      "router = top-k + forced-routing kernel as the executor launches it",
      o.quick ? " --quick" : "", set.warmup, set.iters, gpus, prop.name, prop.multiProcessorCount);

  const Shapes shapes = collect_profile_shapes(o.programs, o.zoo_models, o.quick);
  if (log) {
    log(fmt::format("shapes: {} GEMM (n, k), {} attention head shapes, {} models",
                    shapes.gemm.size(), shapes.attention.size(), shapes.models.size()));
  }
  cudaStream_t st;
  MASEP_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  try {
    const Blocker blocker(2LL << 30);  // 2 GiB copied: ~1.4 ms on an H100
    set.blocker = &blocker;
    profile_gemm(shapes, o.quick, set, st, cal, log);
    profile_grouped_gemm(shapes, o.quick, set, st, cal, log);
    profile_attention(shapes, o.quick, set, st, prop.multiProcessorCount, cal, log);
    profile_kernels(shapes, o.quick, set, st, cal, log);
    profile_launch(set, st, cal, log);
    set.blocker = nullptr;
  } catch (...) {
    cudaStreamDestroy(st);
    throw;
  }
  cudaStreamDestroy(st);
  set.blocker = nullptr;
  if (gpus >= 2) {
    profile_comm(gpus, o.quick, set, cal, log);
  } else if (log) {
    log("nccl: 1 GPU, no communication tables");
  }
  plan::validate_calibration(cal);
  return cal;
}

}  // namespace masep::exec
