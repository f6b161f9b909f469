// masep-bench-kernels: nccl-tests-shaped benchmark of the masep kernels.
//
// Measures two ceilings in the same run (device copy bandwidth through cudaMemcpyAsync D2D,
// counting bytes read + written; cuBLAS bf16 GEMM 8192^3 TFLOP/s), then for each kernel over
// a grid of shapes from the paper's model (hidden 4096, 32 heads MHA, head_dim 128, 16
// experts top-2, expert FFN 14336) and Mixtral-8x7B (32 heads, 8 kv heads, 8 experts top-2,
// FFN 14336): warm-up, timed iterations with CUDA events, and a table of time (us), GB/s
// (bytes the kernel must move at least, counted below per kernel), TFLOP/s and % of the
// relevant ceiling. Each kernel family is verified once against its CPU reference at a
// small shape before timing. Usage:
// masep-bench-kernels [--csv FILE] [--quick] [--eager-twice]
//                     [--only attention|target[N]|pdl|merge|split2|grouped|mla]
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "masep/kernels/activation.hpp"
#include "masep/kernels/attention.hpp"
#include "masep/kernels/attention_experiment.hpp"
#include "masep/kernels/expert_ffn.hpp"
#include "masep/kernels/grouped_gemm.hpp"
#include "masep/kernels/mla_attention.hpp"
#include "masep/kernels/norm.hpp"
#include "masep/kernels/permute.hpp"
#include "masep/kernels/reference.hpp"
#include "masep/kernels/rope.hpp"
#include "masep/kernels/router.hpp"

namespace mk = masep::kernels;
namespace ref = masep::kernels::ref;

#define CUDA_CHECK(call)                                                                          \
  do {                                                                                            \
    cudaError_t e_ = (call);                                                                      \
    if (e_ != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)
#define CUBLAS_CHECK(call)                                                             \
  do {                                                                                 \
    cublasStatus_t s_ = (call);                                                        \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                 \
      std::fprintf(stderr, "%s:%d: %s: cublas status %d\n", __FILE__, __LINE__, #call, \
                   static_cast<int>(s_));                                              \
      std::exit(1);                                                                    \
    }                                                                                  \
  } while (0)
#define KCHECK(call)                                                                         \
  do {                                                                                       \
    mk::Status s_ = (call);                                                                  \
    if (s_ != mk::Status::kOk) {                                                             \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, mk::to_string(s_)); \
      std::exit(1);                                                                          \
    }                                                                                        \
  } while (0)

namespace {

// Device allocation owned by the benchmark.
struct Buf {
  void* p = nullptr;
  std::size_t bytes = 0;
  explicit Buf(std::size_t n) : bytes(n) {
    CUDA_CHECK(cudaMalloc(&p, std::max<std::size_t>(n, 16)));
  }
  ~Buf() { cudaFree(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

__global__ void fill_random_bf16(mk::bf16* p, std::size_t n, std::uint32_t seed, float amp) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n;
       i += std::size_t{gridDim.x} * blockDim.x) {
    std::uint32_t h = static_cast<std::uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    const float u = (h & 0xffffff) / 16777216.f;  // [0, 1)
    p[i] = __float2bfloat16((u * 2.f - 1.f) * amp + 1e-3f);
  }
}

void fill(const Buf& b, std::uint32_t seed, float amp = 1.f) {
  fill_random_bf16<<<1024, 256>>>(b.as<mk::bf16>(), b.bytes / 2, seed, amp);
  CUDA_CHECK(cudaGetLastError());
}

cudaStream_t g_stream = nullptr;  // all timed work runs here (capturable, unlike stream 0)

using Launch = std::function<void(cudaStream_t)>;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Eager timing: `warmup` calls, then `repeats` times `iters` back-to-back launches between
// two events; the median of the per-call times, in us. Includes host launch throughput.
double time_us(const Launch& fn, int iters, int warmup = 5, int repeats = 5) {
  for (int i = 0; i < warmup; ++i) fn(g_stream);
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> per_call;
  for (int r = 0; r < repeats; ++r) {
    CUDA_CHECK(cudaEventRecord(a, g_stream));
    for (int i = 0; i < iters; ++i) fn(g_stream);
    CUDA_CHECK(cudaEventRecord(b, g_stream));
    CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    per_call.push_back(1e3 * ms / iters);
  }
  CUDA_CHECK(cudaEventDestroy(a));
  CUDA_CHECK(cudaEventDestroy(b));
  return median(per_call);
}

// Graph timing: `n` launches captured into one CUDA graph; after 2 warm replays, `repeats`
// replays each between two events; the median replay time / n, in us. This is GPU time per
// kernel with the host launch path out of the way (launch gaps inside a graph are < 1 us).
double time_graph_us(const Launch& fn, int n, int repeats = 7) {
  fn(g_stream);  // outside the capture: lazy module load, attribute set-up
  CUDA_CHECK(cudaStreamSynchronize(g_stream));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_CHECK(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < n; ++i) fn(g_stream);
  CUDA_CHECK(cudaStreamEndCapture(g_stream, &graph));
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 2; ++i) CUDA_CHECK(cudaGraphLaunch(exec, g_stream));
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> per_call;
  for (int r = 0; r < repeats; ++r) {
    CUDA_CHECK(cudaEventRecord(a, g_stream));
    CUDA_CHECK(cudaGraphLaunch(exec, g_stream));
    CUDA_CHECK(cudaEventRecord(b, g_stream));
    CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    per_call.push_back(1e3 * ms / n);
  }
  CUDA_CHECK(cudaEventDestroy(a));
  CUDA_CHECK(cudaEventDestroy(b));
  CUDA_CHECK(cudaGraphExecDestroy(exec));
  CUDA_CHECK(cudaGraphDestroy(graph));
  return median(per_call);
}

int iters_for(double bytes) { return bytes > 1e9 ? 10 : bytes > 1e8 ? 30 : 200; }

struct Row {
  std::string kernel, model, shape;
  double us, gbps, tflops, pct;
  std::string ceiling;
  double eager_us;  // back-to-back eager launches; NaN where only one timing was taken
};

struct Ceilings {
  double copy_GBps = 0;
  double gemm_tflops = 0;
};

std::vector<Row> g_rows;
Ceilings g_ceil;
double g_peak_GBps = 0;  // the device's peak memory bandwidth (attributes), for the split count
// --eager-twice: decode attention's eager time is taken twice more (and over 4x the launches)
// and printed beside the row's times (a diagnosis of eager-vs-graph gaps).
bool g_eager_twice = false;

// `us` is the time the row's rates are computed from (graph-timed where `eager_us` is
// also given); `eager_us` is the eager back-to-back time (NaN: not taken).
void report(const std::string& kernel, const std::string& model, const std::string& shape,
            double us, double bytes, double flops, bool compute_bound = false,
            double eager_us = NAN) {
  Row r{kernel, model, shape, us, bytes / (us * 1e3), flops / (us * 1e6), 0, "copy", eager_us};
  r.pct = 100.0 * r.gbps / g_ceil.copy_GBps;
  if (compute_bound) {
    r.pct = 100.0 * r.tflops / g_ceil.gemm_tflops;
    r.ceiling = "gemm";
  }
  std::printf("%-22s %-8s %-44s %10.2f %10.2f %9.1f %8.2f %7.1f%% %s\n", kernel.c_str(),
              model.c_str(), shape.c_str(), us, eager_us, r.gbps, r.tflops, r.pct,
              r.ceiling.c_str());
  std::fflush(stdout);
  g_rows.push_back(r);
}

void measure_ceilings(cublasHandle_t h) {
  const std::size_t bytes = std::size_t{1} << 30;
  Buf a(bytes), b(bytes);
  CUDA_CHECK(cudaMemset(a.p, 1, bytes));
  const double us = time_us(
      [&](cudaStream_t st) {
        CUDA_CHECK(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice, st));
      },
      20, 3);
  g_ceil.copy_GBps = 2.0 * bytes / (us * 1e3);
  const int n = 8192;
  Buf x(std::size_t{n} * n * 2), y(std::size_t{n} * n * 2), z(std::size_t{n} * n * 2);
  fill(x, 1);
  fill(y, 2);
  const float alpha = 1.f, beta = 0.f;
  CUBLAS_CHECK(cublasSetStream(h, g_stream));
  const double gus = time_us(
      [&](cudaStream_t) {
        CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, x.p, CUDA_R_16BF, n,
                                  y.p, CUDA_R_16BF, n, &beta, z.p, CUDA_R_16BF, n,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      },
      10, 3);
  g_ceil.gemm_tflops = 2.0 * n * n * n / (gus * 1e6);
  std::printf("# ceiling: device copy (cudaMemcpy D2D 1 GiB, read+write) %.1f GB/s\n",
              g_ceil.copy_GBps);
  std::printf("# ceiling: cuBLAS bf16 GEMM 8192^3 %.1f TFLOP/s\n", g_ceil.gemm_tflops);
}

// ---- verification at small shapes (CPU reference) -------------------------------------
template <typename T>
std::vector<T> download(const void* p, std::size_t n) {
  std::vector<T> h(n);
  CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}
template <typename T>
void upload(void* p, const std::vector<T>& h) {
  CUDA_CHECK(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
}

bool close_enough(const std::vector<ref::Bf16>& got, const std::vector<float>& want, float rtol,
                  float atol) {
  for (std::size_t i = 0; i < got.size(); ++i) {
    const float g = ref::to_float(got[i]);
    if (!(std::fabs(g - want[i]) <= atol + rtol * std::fabs(want[i]))) return false;
  }
  return true;
}

void verified(const char* what, bool ok) {
  std::printf("# verify %-28s %s\n", what, ok ? "OK" : "FAILED");
  if (!ok) std::exit(2);
}

// ---- decode attention ------------------------------------------------------------------
struct AttnOpt {
  int splits = 0;      // 0: decode_attention_num_splits (7-argument overload)
  int group_tile = 0;  // DecodeAttentionParams fields, 0 = default
  int variant = 0;
  int stages = 0;
  bool old_splits = false;  // splits from the 4-argument (CUDA-core) heuristic
  bool fused = false;       // fused_merge on an initialised workspace ("fm" in the shape)
  int warps = 0;            // block_warps ("w8" in the shape)
  int merge = 0;            // split_merge ("cm": 2, cluster merge, where it applies)
  bool dyn = false;         // dynamic_splits on an initialised workspace ("dyn")
  int pdl = 0;              // programmatic_launch ("pdl": 2, "nopdl": 1)
  int prefetch = -1;        // l2_prefetch_tiles ("pf=N" where >= 0)
  bool trace = false;       // also print a per-block timeline (globaltimer) summary
  bool rotate = false;      // rotate_tiles ("rot")
};

// Per-block stamps of `launches` graph-replayed launches (trace layout of attention.hpp):
// medians over launches 1.. of where the time goes, in us.
void summarize_trace(const std::vector<std::uint64_t>& t, int blocks, int launches,
                     const std::string& what, int splits = 0) {
  auto med = [](std::vector<double> v) { return v.empty() ? NAN : median(std::move(v)); };
  std::vector<double> span, gap, period, spread, wait, first, stream_med, stream_max, merge_med,
      tail, start_to_first, c_warp, c_sync, c_dsmem;
  // Two splits: per pair (blocks 2i, 2i + 1), rank 1's last-tile stamp minus rank 0's (us);
  // per launch, the rank of the block that exits last.
  std::vector<double> pair_d, last_rank1;
  double prev_end = 0, prev_start = 0;
  for (int l = 0; l < launches; ++l) {
    const std::uint64_t* s = t.data() + std::size_t(l) * blocks * 8;
    double k0 = 1e300, k1 = 0, e1 = 0;
    std::vector<double> w, f, st, mg, x, cw, cs, cd;
    for (int b = 0; b < blocks; ++b) {
      const std::uint64_t* q = s + 8 * b;
      if (q[0] == 0 || q[4] == 0) continue;
      k0 = std::min(k0, double(q[0]));
      e1 = std::max(e1, double(q[0]));
      k1 = std::max(k1, double(q[4]));
      w.push_back((q[1] - q[0]) * 1e-3);
      f.push_back(q[2] ? (double(q[2]) - double(q[1])) * 1e-3 : NAN);
      st.push_back(q[2] ? (double(q[3]) - double(q[2])) * 1e-3 : NAN);
      mg.push_back((double(q[4]) - double(q[3])) * 1e-3);
      x.push_back(double(q[4]));
      if (q[7] != 0) {  // cluster merge: SM cycles from stamp 3 (attention.hpp)
        cw.push_back(double(q[5]));
        cs.push_back(double(q[6]) - double(q[5]));
        cd.push_back(double(q[7]) - double(q[6]));
      }
    }
    if (x.empty()) continue;
    if (l > 0) {
      span.push_back((k1 - k0) * 1e-3);
      gap.push_back((k0 - prev_end) * 1e-3);
      period.push_back((k0 - prev_start) * 1e-3);
      spread.push_back((e1 - k0) * 1e-3);
      wait.push_back(med(w));
      first.push_back(med(f));
      stream_med.push_back(med(st));
      stream_max.push_back(*std::max_element(st.begin(), st.end()));
      merge_med.push_back(med(mg));
      tail.push_back((k1 - med(x)) * 1e-3);
      std::vector<double> ff;
      for (int b = 0; b < blocks; ++b) {
        const std::uint64_t* q = s + 8 * b;
        if (q[2]) ff.push_back((double(q[2]) - k0) * 1e-3);
      }
      start_to_first.push_back(med(ff));
      if (splits == 2) {
        int last = -1;
        double last_t = 0;
        for (int b = 0; b + 1 < blocks; b += 2) {
          const std::uint64_t* q0 = s + 8 * b;
          const std::uint64_t* q1 = q0 + 8;
          if (q0[3] && q1[3] && q1[2]) pair_d.push_back((double(q1[3]) - double(q0[3])) * 1e-3);
          for (int r = 0; r < 2; ++r) {
            if (double((q0 + 8 * r)[4]) > last_t) {
              last_t = double((q0 + 8 * r)[4]);
              last = r;
            }
          }
        }
        if (last >= 0) last_rank1.push_back(last);
      }
      if (!cw.empty()) {
        c_warp.push_back(med(cw));
        c_sync.push_back(med(cs));
        c_dsmem.push_back(med(cd));
      }
    }
    prev_end = k1;
    prev_start = k0;
  }
  std::printf(
      "# trace %s: period %.2f, span %.2f (first entry to last exit), gap from previous exit "
      "%.2f, entry spread %.2f, wait %.2f, entry->first tile %.2f (from kernel start %.2f), "
      "stream med %.2f max %.2f, merge med %.2f, tail (last exit - median exit) %.2f us\n",
      what.c_str(), med(period), med(span), med(gap), med(spread), med(wait), med(first),
      med(start_to_first), med(stream_med), med(stream_max), med(merge_med), med(tail));
  if (!c_warp.empty()) {
    std::printf(
        "# trace %s: cluster merge, median SM cycles: last tile -> warp merge done %.0f, first "
        "cluster barrier %.0f, DSMEM merge + output %.0f\n",
        what.c_str(), med(c_warp), med(c_sync), med(c_dsmem));
  }
  if (!pair_d.empty()) {
    std::vector<double> ad;
    int later = 0;
    for (double d : pair_d) {
      ad.push_back(std::fabs(d));
      later += d > 0 ? 1 : 0;
    }
    double r1 = 0;
    for (double v : last_rank1) r1 += v;
    std::printf(
        "# trace %s: pairs: rank 1 last tile - rank 0 last tile median %.2f us (|.| median "
        "%.2f), rank 1 later in %.0f%% of pairs; last block to exit is rank 1 in %.0f%% of "
        "launches\n",
        what.c_str(), med(pair_d), med(ad), 100.0 * later / pair_d.size(),
        last_rank1.empty() ? NAN : 100.0 * r1 / last_rank1.size());
  }
  std::fflush(stdout);
}

// Floors for one launch that reads `bytes` from HBM: a plain streaming-read kernel (all SMs,
// 16-byte loads, 4 in flight per thread per array), optionally as a programmatic dependent.
template <bool PDL>
__global__ void __launch_bounds__(256)
    read_floor_kernel(const uint4* a, const uint4* b, std::size_t n, unsigned* out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (PDL) {
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
  }
#endif
  unsigned acc = 0;
  const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
  std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    uint4 x[8];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      x[u] = __ldcs(a + i + u * stride);
      x[4 + u] = __ldcs(b + i + u * stride);
    }
#pragma unroll
    for (int u = 0; u < 8; ++u) acc ^= x[u].x ^ x[u].y ^ x[u].z ^ x[u].w;
  }
  for (; i < n; i += stride) {
    const uint4 x = a[i], y = b[i];
    acc ^= x.x ^ x.y ^ x.z ^ x.w ^ y.x ^ y.y ^ y.z ^ y.w;
  }
  if (acc == 0x9e3779b9u) out[blockIdx.x] = acc;  // keeps the loads
}

void bench_read_floor(int batch, int kv_heads, int ctx, int sms) {
  const std::size_t bytes = std::size_t(batch) * kv_heads * ctx * 128 * 2;  // one of K, V
  Buf ka(bytes), va(bytes), o(std::size_t(sms) * 64 * 4), dst(bytes);
  fill(ka, 3);
  fill(va, 4);
  char shape[96];
  std::snprintf(shape, sizeof shape, "K+V of b=%d ctx=%d kv=%d (%.1f MB)", batch, ctx, kv_heads,
                2.0 * bytes / 1e6);
  for (int blocks_per_sm : {4, 8}) {
    for (int pdl = 0; pdl < 2; ++pdl) {
      const unsigned grid = static_cast<unsigned>(sms * blocks_per_sm);
      const Launch fn = [&](cudaStream_t st) {
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(grid);
        cfg.blockDim = dim3(256);
        cfg.stream = st;
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = attr;
        cfg.numAttrs = pdl ? 1 : 0;
        CUDA_CHECK(pdl ? cudaLaunchKernelEx(&cfg, read_floor_kernel<true>, ka.as<uint4>(),
                                            va.as<uint4>(), bytes / 16, o.as<unsigned>())
                       : cudaLaunchKernelEx(&cfg, read_floor_kernel<false>, ka.as<uint4>(),
                                            va.as<uint4>(), bytes / 16, o.as<unsigned>()));
      };
      const double eager = time_us(fn, 200, 3, 3);
      const double graph = time_graph_us(fn, 200, 5);
      report(pdl ? "read_floor_pdl" : "read_floor", "-",
             std::string(shape) + " " + std::to_string(blocks_per_sm) + "/SM", graph, 2.0 * bytes,
             0, false, eager);
    }
  }
  // cudaMemcpy D2D moving the same bytes (half read, half written).
  const Launch cp = [&](cudaStream_t st) {
    CUDA_CHECK(cudaMemcpyAsync(dst.p, ka.p, bytes, cudaMemcpyDeviceToDevice, st));
  };
  report("memcpy_d2d", "-", std::string(shape) + " read+write", time_graph_us(cp, 200, 5),
         2.0 * bytes, 0, false, time_us(cp, 200, 3, 3));
}

// The split heuristic the CUDA-core kernel was tuned with (the library's default before the
// tensor-core kernel): ~32 (seq, kv head, split) warps per SM, splits >= 128 tokens, <= 64.
int cc_num_splits(int batch, int num_kv_heads, int max_context, int sm_count) {
  const long items = std::max(1L, long{batch} * num_kv_heads);
  long splits = (long{sm_count} * 32 + items - 1) / items;
  splits = std::min({splits, std::max(1L, (long{max_context} + 127) / 128), 64L});
  return static_cast<int>(std::max(1L, splits));
}

void bench_attention(const char* model, int heads, int kv_heads, int batch, int ctx, int sms,
                     bool verify, AttnOpt o = {}) {
  const int hd = 128;
  const std::size_t cache_elems = std::size_t(batch) * kv_heads * ctx * hd;
  Buf kc(cache_elems * 2), vc(cache_elems * 2), q(std::size_t(batch) * heads * hd * 2),
      kn(std::size_t(batch) * kv_heads * hd * 2), vn(std::size_t(batch) * kv_heads * hd * 2),
      out(std::size_t(batch) * heads * hd * 2), lens(batch * 4);
  fill(kc, 3);
  fill(vc, 4);
  fill(q, 5);
  fill(kn, 6);
  fill(vn, 7);
  upload(lens.p, std::vector<std::int32_t>(batch, ctx - 1));  // attend over ctx tokens
  const int splits = o.splits       ? o.splits
                     : o.old_splits ? cc_num_splits(batch, kv_heads, ctx, sms)
                                    : mk::decode_attention_num_splits(batch, heads, kv_heads, hd,
                                                                      ctx, sms, g_peak_GBps);
  const std::size_t wsb = mk::decode_attention_workspace_bytes(batch, heads, hd, splits);
  Buf ws(wsb);
  if (o.fused || o.dyn) KCHECK(mk::decode_attention_workspace_init(ws.p, wsb, nullptr));
  mk::DecodeAttentionParams p;
  mk::DecodeAttentionExperiment ex;  // measured-and-lost variants (attention_experiment.hpp)
  p.q = q.as<mk::bf16>();
  p.k_new = kn.as<mk::bf16>();
  p.v_new = vn.as<mk::bf16>();
  p.k_cache = kc.as<mk::bf16>();
  p.v_cache = vc.as<mk::bf16>();
  p.kv_lens = lens.as<std::int32_t>();
  p.out = out.as<mk::bf16>();
  p.workspace = ws.p;
  p.workspace_bytes = wsb;
  p.batch = batch;
  p.num_heads = heads;
  p.num_kv_heads = kv_heads;
  p.head_dim = hd;
  p.max_kv_len = ctx;
  p.num_splits = splits;
  p.group_tile = o.group_tile;
  p.kernel_variant = o.variant;
  p.pipeline_stages = o.stages;
  ex.fused_merge = o.fused;
  p.block_warps = o.warps;
  p.split_merge = o.merge;
  ex.dynamic_splits = o.dyn;
  ex.programmatic_launch = o.pdl;
  ex.l2_prefetch_tiles = o.prefetch;
  ex.rotate_tiles = o.rotate;
  mk::check_decode_attention(p, ex);
  if (verify) {
    KCHECK(mk::launch_decode_attention(p, ex, nullptr));
    CUDA_CHECK(cudaDeviceSynchronize());
    auto qh = download<ref::Bf16>(q.p, std::size_t(batch) * heads * hd);
    auto kh = download<ref::Bf16>(kc.p, cache_elems);  // already holds the appended token
    auto vh = download<ref::Bf16>(vc.p, cache_elems);
    auto want = ref::decode_attention(qh, {}, {}, kh, vh, std::vector<std::int32_t>(batch, ctx),
                                      heads, kv_heads, hd, ctx, 0.f);
    verified(heads == kv_heads ? "decode_attention (MHA)" : "decode_attention (GQA)",
             close_enough(download<ref::Bf16>(out.p, want.size()), want, 2e-2f, 2e-3f));
  }
  const double bytes = 2.0 * cache_elems * 2 + 2.0 * batch * heads * hd * 2;
  const double flops = 4.0 * batch * heads * double(ctx) * hd;
  const Launch fn = [&](cudaStream_t st) { KCHECK(mk::launch_decode_attention(p, ex, st)); };
  const int iters = iters_for(bytes);
  // Graph first: its warm replays also warm the GPU up for the eager loop. (Timed first, the
  // eager loop of the large GQA launches ran 12-16% slower than it does a moment later, on
  // the H100 for ~20 launches; measured with --eager-twice, docs/kernels.md.)
  const double graph = time_graph_us(fn, iters, 5);
  const double eager = time_us(fn, iters, 3, 3);
  if (g_eager_twice) {
    const double eager_again = time_us(fn, iters, 3, 3);
    const double eager_long = time_us(fn, 4 * iters, 3, 3);
    std::printf("# eager twice %s b=%d ctx=%d h=%d/%d splits=%d: graph %.2f, eager %.2f, eager "
                "again %.2f, eager x%d launches %.2f us\n",
                model, batch, ctx, heads, kv_heads, splits, graph, eager, eager_again, 4 * iters,
                eager_long);
  }
  std::string shape = "b=" + std::to_string(batch) + " ctx=" + std::to_string(ctx) +
                      " h=" + std::to_string(heads) + "/" + std::to_string(kv_heads) +
                      " splits=" + std::to_string(splits);
  const bool tc = o.variant == 2 || (o.variant == 0 && o.group_tile == 0);
  shape += tc ? " tc" : " cc";
  if (o.group_tile) shape += " tile=" + std::to_string(o.group_tile);
  if (o.stages) shape += " st=" + std::to_string(o.stages);
  if (tc && o.fused && splits > 1) shape += " fm";
  if (tc && o.warps == 8) shape += " w8";
  if (tc && !o.fused && o.merge == 2 && splits > 1 && splits <= 8) shape += " cm";
  if (tc && o.merge == 1) shape += " rk";
  if (tc && o.dyn && splits > 1) shape += " dyn";
  if (tc && o.pdl == 2) shape += " pdl";
  if (tc && o.pdl == 1) shape += " nopdl";
  if (tc && o.prefetch >= 0) shape += " pf=" + std::to_string(o.prefetch);
  if (tc && o.rotate) shape += " rot";
  report("decode_attention", model, shape, graph, bytes, flops, false, eager);
  if (o.trace && tc) {
    const int subgroups = (heads / kv_heads + 15) / 16;
    const int blocks = batch * kv_heads * subgroups * splits;
    constexpr int kLaunches = 20;
    Buf tr(std::size_t(kLaunches) * blocks * 8 * 8);
    CUDA_CHECK(cudaMemset(tr.p, 0, tr.bytes));
    std::vector<mk::DecodeAttentionExperiment> xs(kLaunches, ex);
    for (int l = 0; l < kLaunches; ++l) {
      xs[l].trace = reinterpret_cast<std::uint64_t*>(tr.p) + std::size_t(l) * blocks * 8;
    }
    KCHECK(mk::launch_decode_attention(p, xs[0], g_stream));  // warm (attributes, module)
    CUDA_CHECK(cudaStreamSynchronize(g_stream));
    cudaGraph_t graph_t;
    cudaGraphExec_t exec;
    CUDA_CHECK(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeThreadLocal));
    for (int l = 0; l < kLaunches; ++l) KCHECK(mk::launch_decode_attention(p, xs[l], g_stream));
    CUDA_CHECK(cudaStreamEndCapture(g_stream, &graph_t));
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph_t, 0));
    for (int r = 0; r < 3; ++r) CUDA_CHECK(cudaGraphLaunch(exec, g_stream));
    CUDA_CHECK(cudaStreamSynchronize(g_stream));
    summarize_trace(download<std::uint64_t>(tr.p, std::size_t(kLaunches) * blocks * 8), blocks,
                    kLaunches, std::string(model) + " " + shape, splits);
    CUDA_CHECK(cudaGraphExecDestroy(exec));
    CUDA_CHECK(cudaGraphDestroy(graph_t));
  }
}

// ---- rmsnorm / rope / activations ------------------------------------------------------
void bench_norm_rope_act(int tokens) {
  const int hidden = 4096;
  Buf x(std::size_t(tokens) * hidden * 2), res(std::size_t(tokens) * hidden * 2), w(hidden * 2),
      out(std::size_t(tokens) * hidden * 2);
  fill(x, 8);
  fill(res, 9);
  fill(w, 10);
  char shape[96];
  std::snprintf(shape, sizeof shape, "tokens=%d hidden=%d", tokens, hidden);
  Launch fn = [&](cudaStream_t st) {
    KCHECK(mk::launch_add_rmsnorm(res.as<mk::bf16>(), x.as<mk::bf16>(), w.as<mk::bf16>(),
                                  out.as<mk::bf16>(), tokens, hidden, 1e-6f, st));
  };
  report("add_rmsnorm", "both", shape, time_graph_us(fn, 200), 4.0 * tokens * hidden * 2,
         4.0 * tokens * hidden, false, time_us(fn, 200));

  // RoPE on a fused QKV buffer, Mixtral shape (32 q heads, 8 kv heads, head_dim 128).
  const int hd = 128, heads = 32, kvh = 8, row = (heads + 2 * kvh) * hd;
  Buf qkv(std::size_t(tokens) * row * 2), pos(tokens * 4);
  fill(qkv, 11);
  std::vector<std::int32_t> ph(tokens);
  for (int t = 0; t < tokens; ++t) ph[t] = 100 + 37 * t;
  upload(pos.p, ph);
  mk::RopeParams rp;
  rp.q = qkv.as<mk::bf16>();
  rp.q_stride = row;
  rp.k = qkv.as<mk::bf16>() + heads * hd;
  rp.k_stride = row;
  rp.positions = pos.as<std::int32_t>();
  rp.tokens = tokens;
  rp.num_heads = heads;
  rp.num_kv_heads = kvh;
  rp.head_dim = hd;
  fn = [&](cudaStream_t st) { KCHECK(mk::launch_rope(rp, st)); };
  std::snprintf(shape, sizeof shape, "tokens=%d h=%d/%d hd=%d", tokens, heads, kvh, hd);
  report("rope", "mixtral", shape, time_graph_us(fn, 200), 2.0 * tokens * (heads + kvh) * hd * 2, 0,
         false, time_us(fn, 200));

  const int ffn = 14336;
  Buf in(std::size_t(tokens) * 2 * ffn * 2), ao(std::size_t(tokens) * ffn * 2);
  fill(in, 12);
  fn = [&](cudaStream_t st) {
    KCHECK(mk::launch_swiglu(in.as<mk::bf16>(), ao.as<mk::bf16>(), tokens, ffn, st));
  };
  std::snprintf(shape, sizeof shape, "rows=%d ffn=%d", tokens, ffn);
  report("swiglu", "both", shape, time_graph_us(fn, 200), 3.0 * tokens * ffn * 2, 0, false,
         time_us(fn, 200));
}

// ---- router / permute / combine ----------------------------------------------------------
void bench_routing(const char* model, int tokens, int experts, int k, bool verify) {
  const int hidden = 4096;
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> logits(std::size_t(tokens) * experts);
  for (auto& v : logits) v = nd(rng);
  Buf dl(logits.size() * 4), ids(std::size_t(tokens) * k * 4), w(std::size_t(tokens) * k * 4),
      counts(experts * 4);
  upload(dl.p, logits);
  mk::RouterParams rp;
  rp.logits = dl.p;
  rp.logits_dtype = mk::DType::kF32;
  rp.topk_ids = ids.as<std::int32_t>();
  rp.topk_weights = w.as<float>();
  rp.expert_counts = counts.as<std::int32_t>();
  rp.tokens = tokens;
  rp.num_experts = experts;
  rp.k = k;
  KCHECK(mk::launch_router_topk(rp, nullptr));
  CUDA_CHECK(cudaDeviceSynchronize());
  auto want = ref::router_topk(logits, tokens, experts, k, true);
  if (verify) {
    verified("router_topk", download<std::int32_t>(ids.p, want.topk_ids.size()) == want.topk_ids &&
                                download<std::int32_t>(counts.p, experts) == want.expert_counts);
  }
  char shape[96];
  std::snprintf(shape, sizeof shape, "tokens=%d experts=%d k=%d", tokens, experts, k);
  Launch fn = [&](cudaStream_t st) { KCHECK(mk::launch_router_topk(rp, st)); };
  report("router_topk", model, shape, time_graph_us(fn, 500), tokens * (experts * 4.0 + k * 8.0), 0,
         false, time_us(fn, 500));

  const std::int64_t rows = std::int64_t{tokens} * k;
  Buf x(std::size_t(tokens) * hidden * 2), px(rows * hidden * 2), prow(rows * 4), src(rows * 4),
      off((experts + 1) * 4), eo(rows * hidden * 2), out(std::size_t(tokens) * hidden * 2);
  fill(x, 13);
  fill(eo, 14);
  mk::PermuteParams pp;
  pp.x = x.as<mk::bf16>();
  pp.topk_ids = ids.as<std::int32_t>();
  pp.expert_counts = counts.as<std::int32_t>();
  pp.permuted_x = px.as<mk::bf16>();
  pp.permuted_row = prow.as<std::int32_t>();
  pp.source_token = src.as<std::int32_t>();
  pp.expert_offsets = off.as<std::int32_t>();
  pp.tokens = tokens;
  pp.hidden = hidden;
  pp.num_experts = experts;
  pp.k = k;
  KCHECK(mk::launch_permute(pp, nullptr));
  CUDA_CHECK(cudaDeviceSynchronize());
  if (verify) {
    auto xh = download<ref::Bf16>(x.p, std::size_t(tokens) * hidden);
    auto pr = ref::permute(xh, want.topk_ids, tokens, hidden, experts, k, 0);
    auto pxh = download<ref::Bf16>(px.p, pr.permuted_x.size());
    verified("permute", download<std::int32_t>(prow.p, rows) == pr.permuted_row &&
                            std::memcmp(pxh.data(), pr.permuted_x.data(), pxh.size() * 2) == 0);
  }
  std::snprintf(shape, sizeof shape, "tokens=%d experts=%d k=%d h=%d", tokens, experts, k, hidden);
  fn = [&](cudaStream_t st) { KCHECK(mk::launch_permute(pp, st)); };
  report("permute", model, shape, time_graph_us(fn, 500), (rows + tokens) * hidden * 2.0, 0, false,
         time_us(fn, 500));

  mk::CombineParams cp;
  cp.expert_out = eo.as<mk::bf16>();
  cp.permuted_row = prow.as<std::int32_t>();
  cp.topk_weights = w.as<float>();
  cp.residual = x.as<mk::bf16>();
  cp.out = out.as<mk::bf16>();
  cp.tokens = tokens;
  cp.hidden = hidden;
  cp.k = k;
  if (verify) {
    KCHECK(mk::launch_combine(cp, nullptr));
    CUDA_CHECK(cudaDeviceSynchronize());
    auto wc = ref::combine(
        download<ref::Bf16>(eo.p, rows * hidden),
        want.topk_ids.empty() ? std::vector<std::int32_t>{} : download<std::int32_t>(prow.p, rows),
        download<float>(w.p, rows), download<ref::Bf16>(x.p, std::size_t(tokens) * hidden), tokens,
        hidden, k);
    verified("combine", close_enough(download<ref::Bf16>(out.p, wc.size()), wc, 1e-2f, 1e-3f));
  }
  fn = [&](cudaStream_t st) { KCHECK(mk::launch_combine(cp, st)); };
  report("combine", model, shape, time_graph_us(fn, 500), (rows + 2.0 * tokens) * hidden * 2.0,
         2.0 * rows * hidden, false, time_us(fn, 500));
}

// ---- expert FFN --------------------------------------------------------------------------
void bench_ffn(cublasHandle_t h, const char* model, int experts, int tokens_per_expert,
               bool verify) {
  const int hidden = 4096, ffn = 14336;
  mk::ExpertFfnShape s{experts, hidden, ffn, mk::Activation::kSwiGLU};
  const std::size_t wup = std::size_t(experts) * 2 * ffn * hidden,
                    wdn = std::size_t(experts) * hidden * ffn;
  static Buf* w_up = nullptr;
  static Buf* w_down = nullptr;
  static int w_experts = 0;
  if (w_experts != experts) {
    delete w_up;
    delete w_down;
    w_up = new Buf(wup * 2);
    w_down = new Buf(wdn * 2);
    fill(*w_up, 15, 0.02f);
    fill(*w_down, 16, 0.02f);
    w_experts = experts;
  }
  const std::int64_t rows = std::int64_t{experts} * tokens_per_expert;
  Buf x(rows * hidden * 2), out(rows * hidden * 2);
  fill(x, 17);
  const std::size_t wsb = mk::expert_ffn_workspace_bytes(s, rows);
  Buf ws(wsb);
  std::vector<std::int32_t> off(experts + 1);
  for (int e = 0; e <= experts; ++e) off[e] = e * tokens_per_expert;
  mk::ExpertFfnWeights w{w_up->as<mk::bf16>(), w_down->as<mk::bf16>()};
  cudaStream_t st = g_stream;
  CUBLAS_CHECK(cublasSetStream(h, st));
  if (verify) {
    // Check the first 2 rows of expert 0 against the CPU reference (one expert's weights).
    KCHECK(mk::run_expert_ffn(h, st, s, w, x.as<mk::bf16>(), out.as<mk::bf16>(), off.data(), ws.p,
                              wsb));
    CUDA_CHECK(cudaDeviceSynchronize());
    const int vr = std::min<std::int64_t>(2, tokens_per_expert);
    auto xh = download<ref::Bf16>(x.p, std::size_t(vr) * hidden);
    auto wuh = download<ref::Bf16>(w_up->p, std::size_t(2) * ffn * hidden);
    auto wdh = download<ref::Bf16>(w_down->p, std::size_t(hidden) * ffn);
    auto want = ref::expert_ffn(xh, wuh, wdh, {0, vr}, 1, hidden, ffn, true);
    float scale = 0;
    for (float v : want) scale = std::max(scale, std::fabs(v));
    verified("expert_ffn (swiglu)",
             close_enough(download<ref::Bf16>(out.p, want.size()), want, 2e-2f, 1e-2f * scale));
  }
  const double bytes = (wup + wdn) * 2.0 + rows * hidden * 2.0 * 2;
  const double flops = 2.0 * rows * hidden * ffn * 3;
  char shape[96];
  std::snprintf(shape, sizeof shape, "E=%d tok/exp=%d h=%d f=%d", experts, tokens_per_expert,
                hidden, ffn);
  double us = time_us(
      [&](cudaStream_t) {
        KCHECK(mk::run_expert_ffn(h, st, s, w, x.as<mk::bf16>(), out.as<mk::bf16>(), off.data(),
                                  ws.p, wsb));
      },
      iters_for(bytes), 3);
  report("expert_ffn_loop", model, shape, us, bytes, flops, tokens_per_expert > 256);
  us = time_us(
      [&](cudaStream_t) {
        KCHECK(mk::run_expert_ffn_uniform(h, st, s, w, x.as<mk::bf16>(), out.as<mk::bf16>(),
                                          tokens_per_expert, ws.p, wsb));
      },
      iters_for(bytes), 3);
  report("expert_ffn_batched", model, shape, us, bytes, flops, tokens_per_expert > 256);
}

// ---- grouped decode GEMM vs one cuBLAS GEMM per expert -------------------------------------
// The expert up projection ([E, 2*ffn, hidden], SwiGLU) and down projection ([E, hidden,
// ffn]) with `rpe` rows per expert: the grouped launch (grouped_gemm.hpp) against the
// executor's cuBLAS loop (one cublasGemmEx per expert, gemm_tn as in expert_ffn.cu). Bytes:
// all experts' weights + rows in and out; ceiling: device copy. Eager timings (the loop's
// host cost is part of what it costs).
void bench_grouped(cublasHandle_t h, const char* model, int experts, int hidden, int ffn,
                   int rpe, bool verify) {
  const std::int64_t rows = std::int64_t{experts} * rpe;
  for (int proj = 0; proj < 2; ++proj) {
    const int n = proj == 0 ? 2 * ffn : hidden, k = proj == 0 ? hidden : ffn;
    Buf w(std::size_t(experts) * n * k * 2), x(rows * k * 2), y(rows * n * 2);
    fill(w, 41, 0.05f);
    fill(x, 42);
    mk::GroupedGemmArgs a;
    a.w_base = w.as<mk::bf16>();
    a.groups = experts;
    a.n = n;
    a.k = k;
    for (int e = 0; e < experts; ++e) {
      a.w_offset[e] = std::int64_t{e} * n * k;
      a.row_offset[e] = e * rpe;
    }
    a.row_offset[experts] = static_cast<std::int32_t>(rows);
    cudaStream_t st = g_stream;
    CUBLAS_CHECK(cublasSetStream(h, st));
    const float alpha = 1.f, beta = 0.f;
    Launch loop = [&](cudaStream_t) {
      for (int e = 0; e < experts; ++e) {
        CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, rpe, k, &alpha,
                                  w.as<mk::bf16>() + std::int64_t{e} * n * k, CUDA_R_16BF, k,
                                  x.as<mk::bf16>() + std::int64_t{e} * rpe * k, CUDA_R_16BF, k,
                                  &beta, y.as<mk::bf16>() + std::int64_t{e} * rpe * n,
                                  CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      }
    };
    Launch grouped = [&](cudaStream_t s2) {
      KCHECK(mk::launch_grouped_gemm(a, x.as<mk::bf16>(), y.as<mk::bf16>(), s2));
    };
    if (verify) {
      loop(st);
      CUDA_CHECK(cudaDeviceSynchronize());
      auto want = download<ref::Bf16>(y.p, rows * n);
      CUDA_CHECK(cudaMemset(y.p, 0xFF, rows * n * 2));
      grouped(st);
      CUDA_CHECK(cudaDeviceSynchronize());
      auto got = download<ref::Bf16>(y.p, rows * n);
      std::vector<float> wf(want.size());
      for (std::size_t i = 0; i < want.size(); ++i) wf[i] = ref::to_float(want[i]);
      float scale = 0;
      for (float v : wf) scale = std::max(scale, std::fabs(v));
      verified("grouped_gemm vs cuBLAS loop", close_enough(got, wf, 2e-2f, 1e-2f * scale));
    }
    const double bytes = double(experts) * n * k * 2 + rows * (n + k) * 2.0;
    const double flops = 2.0 * rows * n * k;
    char shape[96];
    std::snprintf(shape, sizeof shape, "%s E=%d rows/exp=%d n=%d k=%d", proj ? "down" : "up",
                  experts, rpe, n, k);
    report("expert_gemm_cublas_loop", model, shape, time_us(loop, iters_for(bytes)), bytes,
           flops);
    report("expert_gemm_grouped", model, shape, time_us(grouped, iters_for(bytes)), bytes,
           flops);
  }
}

// The same expert projections with FP8 block-scaled weights (W8A16, weight_format.hpp): the
// grouped launch reads n·k e4m3 bytes + scales per expert. The weight bytes are random (the
// launch's cost does not depend on their values; correctness is the GPU test's
// GpuGroupedGemm.Fp8BlockScaledMatchesReference). Bytes: FP8 weights + bf16 rows in and out.
void bench_grouped_fp8(const char* model, int experts, int hidden, int ffn, int rpe) {
  const std::int64_t rows = std::int64_t{experts} * rpe;
  for (int proj = 0; proj < 2; ++proj) {
    const int n = proj == 0 ? 2 * ffn : hidden, k = proj == 0 ? hidden : ffn;
    const std::int64_t wb = mk::weight_bytes(mk::WeightFormat::kFP8Block, n, k);
    Buf w(std::size_t(experts) * wb), x(rows * k * 2), y(rows * n * 2);
    fill(w, 43);
    fill(x, 44);
    mk::GroupedGemmArgs a;
    a.w_base = w.p;
    a.format = mk::WeightFormat::kFP8Block;
    a.groups = experts;
    a.n = n;
    a.k = k;
    for (int e = 0; e < experts; ++e) {
      a.w_offset[e] = std::int64_t{e} * wb;
      a.row_offset[e] = e * rpe;
    }
    a.row_offset[experts] = static_cast<std::int32_t>(rows);
    Launch grouped = [&](cudaStream_t s2) {
      KCHECK(mk::launch_grouped_gemm(a, x.as<mk::bf16>(), y.as<mk::bf16>(), s2));
    };
    const double bytes = double(experts) * wb + rows * (n + k) * 2.0;
    char shape[96];
    std::snprintf(shape, sizeof shape, "%s E=%d rows/exp=%d n=%d k=%d", proj ? "down" : "up",
                  experts, rpe, n, k);
    report("expert_gemm_grouped_fp8", model, shape, time_us(grouped, iters_for(bytes)), bytes,
           2.0 * rows * n * k);
  }
}

// One projection of `rows` tokens (an attention projection: qkv, out_proj): one cuBLAS GEMM
// (the executor's bf16 path), the grouped launch as one group with bf16 weights, and with FP8
// weights (the executor's FP8 path; few blocks, so k is split over warps from k >= 1024).
// Weights rotate over >= 512 MiB so every launch reads them from HBM.
void bench_projection(cublasHandle_t h, const char* model, const char* name, int n, int k,
                      int rows) {
  const std::int64_t wb16 = std::int64_t{n} * k * 2;
  const std::int64_t wb8 = mk::weight_bytes(mk::WeightFormat::kFP8Block, n, k);
  const int slots = static_cast<int>(std::max<std::int64_t>(2, (std::int64_t{512} << 20) / wb16));
  Buf w(std::size_t(slots) * wb16), x(std::size_t(rows) * k * 2), y(std::size_t(rows) * n * 2);
  fill(w, 45, 0.05f);
  fill(x, 46);
  cudaStream_t st = g_stream;
  CUBLAS_CHECK(cublasSetStream(h, st));
  const float alpha = 1.f, beta = 0.f;
  int slot = 0;
  Launch cublas = [&](cudaStream_t) {
    slot = (slot + 1) % slots;
    CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k, &alpha,
                              static_cast<char*>(w.p) + slot * wb16, CUDA_R_16BF, k, x.p,
                              CUDA_R_16BF, k, &beta, y.p, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
  };
  // FP8 weights are the same random bytes read as e4m3 (and scales): timing only.
  auto grouped_of = [&](mk::WeightFormat f) {
    return Launch([&, f](cudaStream_t s2) {
      slot = (slot + 1) % slots;
      mk::GroupedGemmArgs a;
      a.w_base = w.p;
      a.format = f;
      a.groups = 1;
      a.n = n;
      a.k = k;
      a.w_offset[0] = slot * wb16 / (f == mk::WeightFormat::kBF16 ? 2 : 1);
      a.row_offset[1] = rows;
      KCHECK(mk::launch_grouped_gemm(a, x.as<mk::bf16>(), y.as<mk::bf16>(), s2));
    });
  };
  char shape[96];
  std::snprintf(shape, sizeof shape, "%s rows=%d n=%d k=%d", name, rows, n, k);
  const double io = double(rows) * (n + k) * 2.0, flops = 2.0 * rows * n * k;
  report("projection_cublas", model, shape, time_us(cublas, iters_for(wb16 + io)), wb16 + io, flops);
  report("projection_grouped", model, shape,
         time_us(grouped_of(mk::WeightFormat::kBF16), iters_for(wb16 + io)), wb16 + io, flops);
  report("projection_grouped_fp8", model, shape,
         time_us(grouped_of(mk::WeightFormat::kFP8Block), iters_for(wb8 + io)), wb8 + io,
         flops);
}

// ---- MLA decode attention (DeepSeek-V3: latent 512 + rope 64, 128 heads) ---------------
// `heads` query heads of one rank (16: TP 8, 32: TP 4, 128: data-parallel attention) over
// `batch` latent caches of `ctx` tokens (the new token appended: ctx - 1 cached). Bytes: the
// cache read once (ctx x 1152 a sequence), q read, out written. FLOPs: 2 x heads x ctx x
// (576 + 512) a sequence. The row's ceiling is the roofline's: copy bandwidth where the bytes
// take longer at the copy rate than the FLOPs at the GEMM rate, else the GEMM ceiling.
void bench_mla(int heads, int batch, int ctx, int sms, bool verify, int splits_override = 0,
               int tile = 0) {
  constexpr int kl = mk::kMlaLatentDim, dr = mk::kMlaRopeDim, row = kl + dr;
  const std::size_t cache_elems = std::size_t(batch) * ctx * row;
  Buf cache(cache_elems * 2), ql(std::size_t(batch) * heads * kl * 2),
      qr(std::size_t(batch) * heads * dr * 2), cn(std::size_t(batch) * kl * 2),
      rn(std::size_t(batch) * dr * 2), out(std::size_t(batch) * heads * kl * 2), lens(batch * 4);
  fill(cache, 11);
  fill(ql, 12);
  fill(qr, 13);
  fill(cn, 14);
  fill(rn, 15);
  upload(lens.p, std::vector<std::int32_t>(batch, ctx - 1));
  const int splits =
      splits_override ? splits_override : mk::mla_attention_num_splits(batch, heads, ctx, sms);
  const std::size_t wsb = mk::mla_attention_workspace_bytes(batch, heads, splits);
  Buf ws(wsb);
  mk::MlaAttentionParams p;
  p.q_lat = ql.as<mk::bf16>();
  p.q_rope = qr.as<mk::bf16>();
  p.c_kv_new = cn.as<mk::bf16>();
  p.k_rope_new = rn.as<mk::bf16>();
  p.kv_cache = cache.as<mk::bf16>();
  p.kv_lens = lens.as<std::int32_t>();
  p.out = out.as<mk::bf16>();
  p.workspace = wsb ? ws.p : nullptr;
  p.workspace_bytes = wsb;
  p.batch = batch;
  p.num_heads = heads;
  p.max_kv_len = ctx;
  p.num_splits = splits;
  p.scale = 0.0722f;  // 1/sqrt(192) x DeepSeek-V3's YaRN mscale (about 1.0)
  p.tile_tokens = tile;
  mk::check_mla_attention(p);
  if (verify) {
    KCHECK(mk::launch_mla_attention(p, nullptr));
    CUDA_CHECK(cudaDeviceSynchronize());
    auto qlh = download<ref::Bf16>(ql.p, std::size_t(batch) * heads * kl);
    auto qrh = download<ref::Bf16>(qr.p, std::size_t(batch) * heads * dr);
    auto ch = download<ref::Bf16>(cache.p, cache_elems);  // already holds the appended token
    auto want = ref::mla_decode_attention(
        qlh, qrh, {}, {}, ch, std::vector<std::int32_t>(batch, ctx), heads, kl, dr, ctx, p.scale);
    verified("mla_attention",
             close_enough(download<ref::Bf16>(out.p, want.size()), want, 1e-2f, 4e-3f));
  }
  const double bytes = 2.0 * cache_elems + 2.0 * batch * heads * (kl + dr + kl);
  const double flops = 2.0 * batch * heads * double(ctx) * (row + kl);
  const Launch fn = [&](cudaStream_t st) { KCHECK(mk::launch_mla_attention(p, st)); };
  const int iters = iters_for(bytes);
  const double graph = time_graph_us(fn, iters, 5);
  const double eager = time_us(fn, iters, 3, 3);
  const bool compute_bound = flops / (g_ceil.gemm_tflops * 1e12) > bytes / (g_ceil.copy_GBps * 1e9);
  const std::string shape = "b=" + std::to_string(batch) + " ctx=" + std::to_string(ctx) +
                            " h=" + std::to_string(heads) +
                            " blk=" + std::to_string(mk::mla_attention_block_heads(heads)) +
                            " splits=" + std::to_string(splits) +
                            (tile ? " tile=" + std::to_string(tile) : std::string());
  report("mla_attention", "dsv3", shape, graph, bytes, flops, compute_bound, eager);
}

void write_csv(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    std::exit(1);
  }
  std::fprintf(f,
               "kernel,model,shape,time_us,eager_us,GBps,TFLOPs,pct_of_ceiling,ceiling,copy_GBps,"
               "gemm_TFLOPs\n");
  for (const Row& r : g_rows) {
    std::fprintf(f, "%s,%s,\"%s\",%.3f,%.3f,%.1f,%.3f,%.1f,%s,%.1f,%.1f\n", r.kernel.c_str(),
                 r.model.c_str(), r.shape.c_str(), r.us, r.eager_us, r.gbps, r.tflops, r.pct,
                 r.ceiling.c_str(), g_ceil.copy_GBps, g_ceil.gemm_tflops);
  }
  std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
  std::string csv;
  bool quick = false;
  bool attention_only = false;
  bool target_only = false;
  int target_variant = -1;
  bool pdl_only = false;
  bool merge_only = false;
  bool split2_only = false;
  bool grouped_only = false;
  bool mla_only = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--csv") && i + 1 < argc) {
      csv = argv[++i];
    } else if (!std::strcmp(argv[i], "--quick")) {
      quick = true;
    } else if (!std::strcmp(argv[i], "--eager-twice")) {
      g_eager_twice = true;
    } else if (!std::strcmp(argv[i], "--only") && i + 1 < argc &&
               !std::strcmp(argv[i + 1], "attention")) {
      attention_only = true;  // ceilings and the decode-attention rows only
      ++i;
    } else if (!std::strcmp(argv[i], "--only") && i + 1 < argc &&
               !std::strcmp(argv[i + 1], "pdl")) {
      pdl_only = true;  // ceilings, read floors, programmatic launch / L2 prefetch sweep
      ++i;
    } else if (!std::strcmp(argv[i], "--only") && i + 1 < argc &&
               !std::strcmp(argv[i + 1], "merge")) {
      merge_only = true;  // ceilings, the target shape (trace, 4 stages), defaults >= 16K tokens
      ++i;
    } else if (!std::strcmp(argv[i], "--only") && i + 1 < argc &&
               !std::strcmp(argv[i + 1], "grouped")) {
      grouped_only = true;  // ceilings, grouped decode GEMM vs the cuBLAS loop per model
      ++i;
    } else if (!std::strcmp(argv[i], "--only") && i + 1 < argc &&
               !std::strcmp(argv[i + 1], "mla")) {
      mla_only = true;  // ceilings, MLA decode attention (DeepSeek-V3 shapes)
      ++i;
    } else if (!std::strcmp(argv[i], "--only") && i + 1 < argc &&
               !std::strcmp(argv[i + 1], "split2")) {
      split2_only = true;  // ceilings, target: default vs 4 stages interleaved, shapes >= 16K
      ++i;
    } else if (!std::strcmp(argv[i], "--only") && i + 1 < argc &&
               !std::strncmp(argv[i + 1], "target", 6)) {
      // Ceilings and Mixtral b=8 ctx=2048 (for a profiler run); "targetN": variant N only.
      target_only = true;
      if (argv[i + 1][6] != '\0') target_variant = std::atoi(argv[i + 1] + 6);
      ++i;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--csv FILE] [--quick] [--eager-twice] [--only "
                   "attention|target[N]|pdl|merge|split2|grouped|mla]\n",
                   argv[0]);
      return 1;
    }
  }
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::puts("MASEP_GPU_SKIP: no CUDA device");
    return 0;
  }
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("# device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20);
  CUDA_CHECK(cudaStreamCreate(&g_stream));
  cublasHandle_t h;
  CUBLAS_CHECK(cublasCreate(&h));
  measure_ceilings(h);
  std::printf("# time_us: CUDA-graph replay per launch where eager_us is given, else eager\n");
  std::printf("%-22s %-8s %-44s %10s %10s %9s %8s %8s\n", "kernel", "model", "shape", "time_us",
              "eager_us", "GB/s", "TFLOP/s", "%ceil");
  const int sms = prop.multiProcessorCount;
  g_peak_GBps = mk::decode_attention_peak_memory_GBps();
  std::printf("# peak memory bandwidth (clock x bus width) %.0f GB/s\n", g_peak_GBps);
  if (pdl_only) {
    // Where the time of a small decode-attention launch goes (per-block globaltimer
    // stamps), what one launch of plain reads of the same bytes costs, and the programmatic
    // launch / L2 prefetch options at Mixtral b=8 ctx=2048, then at every shape.
    bench_read_floor(8, 8, 2048, sms);
    bench_read_floor(8, 8, 8192, sms);
    auto opt = [](int pdl, int pf, bool trace = false) {
      AttnOpt o;
      o.pdl = pdl;
      o.prefetch = pf;
      o.trace = trace;
      return o;
    };
    bench_attention("mixtral", 32, 8, 8, 2048, sms, true, opt(0, -1, true));
    bench_attention("mixtral", 32, 8, 8, 2048, sms, false, opt(2, 0, true));
    bench_attention("mixtral", 32, 8, 8, 2048, sms, true, opt(2, 4, true));
    bench_attention("mixtral", 32, 8, 8, 2048, sms, false, opt(1, 4, true));
    for (int pf : {1, 2, 8, 16}) bench_attention("mixtral", 32, 8, 8, 2048, sms, false, opt(2, pf));
    for (int s : {1, 3, 4}) {
      for (int pdl : {1, 2}) {
        AttnOpt o = opt(pdl, 0, pdl == 1 && s != 3);
        o.splits = s;
        o.merge = s == 4 ? 1 : 0;
        bench_attention("mixtral", 32, 8, 8, 2048, sms, false, o);
      }
    }
    // Rotated tile order (default split and merge, then 1 split 8 warps, 4 splits reduce).
    for (int s : {0, 1, 4}) {
      AttnOpt o = opt(0, -1, s == 0);
      o.rotate = true;
      o.splits = s;
      o.merge = s == 4 ? 1 : 0;
      bench_attention("mixtral", 32, 8, 8, 2048, sms, s == 0, o);
    }
    {
      AttnOpt o = opt(0, -1);
      o.rotate = true;
      bench_attention("mixtral", 32, 8, 8, 8192, sms, false, o);
      bench_attention("paper", 32, 32, 8, 2048, sms, false, o);
    }
    {
      AttnOpt o = opt(0, -1);  // 4 stages, cluster merge (the fastest H200 row before)
      o.stages = 4;
      o.merge = 2;
      bench_attention("mixtral", 32, 8, 8, 2048, sms, false, o);
    }
    for (int pf : {-1, 0, 4}) {
      bench_attention("mixtral", 32, 8, 8, 8192, sms, false, opt(pf < 0 ? 0 : 2, pf, pf == 4));
    }
    for (int batch : {1, 8, 32, 128}) {
      for (int ctx : {2048, 8192}) {
        for (int pf : {-1, 0, 4}) {
          const AttnOpt o = opt(pf < 0 ? 0 : 2, pf);
          bench_attention("paper", 32, 32, batch, ctx, sms, false, o);
          bench_attention("mixtral", 32, 8, batch, ctx, sms, false, o);
        }
      }
    }
    bench_attention("mixtral", 32, 8, 8, 2048, sms, false, opt(0, -1));  // noise check
    bench_attention("mixtral", 32, 8, 8, 2048, sms, false, opt(2, 4));
    if (!csv.empty()) write_csv(csv);
    cublasDestroy(h);
    cudaStreamDestroy(g_stream);
    return 0;
  }
  if (mla_only) {
    // Verified at two small shapes (one split; many splits + reduce), then heads per rank
    // 16 / 32 / 128 over batches and contexts, and at b=1 and b=8 128 heads a split sweep.
    bench_mla(16, 2, 1024, sms, true);
    bench_mla(128, 1, 2048, sms, true);
    bench_mla(128, 2, 1024, sms, true, 0, 64);
    bench_mla(16, 2, 1024, sms, true, 0, 32);
    for (int heads : {16, 32, 128}) {
      for (int batch : {1, 8, 32, 64, 128}) {
        for (int ctx : {2048, 8192}) {
          if (quick && batch * ctx > 65536) continue;
          bench_mla(heads, batch, ctx, sms, false);
        }
      }
    }
    if (!quick) {
      for (int batch : {1, 8}) {
        for (int s : {1, 2, 4, 8, 16, 32, 64}) bench_mla(128, batch, 8192, sms, false, s);
      }
      for (int s : {1, 2, 4, 8, 16}) bench_mla(16, 8, 8192, sms, false, s);
      // Forced tiles: 64-token tiles for 128 heads (Q re-read half as often), 32-token tiles
      // (3 stages) for 16 and 32 heads, at the default split count.
      for (int batch : {8, 32, 128}) {
        for (int ctx : {2048, 8192}) {
          bench_mla(128, batch, ctx, sms, false, 0, 64);
          bench_mla(16, batch, ctx, sms, false, 0, 32);
          bench_mla(32, batch, ctx, sms, false, 0, 32);
        }
      }
    }
    if (!csv.empty()) write_csv(csv);
    cublasDestroy(h);
    cudaStreamDestroy(g_stream);
    return 0;
  }
  if (grouped_only) {
    // Models with many small experts (Qwen3-30B-A3B: 128 × 768 wide, hidden 2048), a 64-expert
    // model (hidden 2048, width 1408) and the paper's 16 wide experts (hidden 4096, 14336).
    for (int rpe : {1, 2, 4, 8, 16, 32, 64}) {
      bench_grouped(h, "qwen3-30b", 128, 2048, 768, rpe, rpe == 4 || rpe == 64);
    }
    for (int rpe : {1, 4, 16, 32}) bench_grouped(h, "64x1408", 64, 2048, 1408, rpe, false);
    for (int rpe : {1, 4, 16, 32}) bench_grouped(h, "paper", 16, 4096, 14336, rpe, rpe == 16);
    // FP8 weights: the same shapes, and DeepSeek-V3's experts (hidden 7168, width 2048; 32
    // local experts as on one GPU of EP 8).
    for (int rpe : {1, 2, 4, 8, 16, 32, 64}) bench_grouped_fp8("qwen3-30b", 128, 2048, 768, rpe);
    for (int rpe : {1, 4, 16, 32}) bench_grouped_fp8("paper", 16, 4096, 14336, rpe);
    for (int rpe : {1, 2, 4, 8, 16, 32}) bench_grouped_fp8("deepseek-v3", 32, 7168, 2048, rpe);
    // Attention projections (one group of every token): Qwen3-30B-A3B and the paper's model.
    for (int rows : {1, 8, 64, 128}) {
      bench_projection(h, "qwen3-30b", "qkv", 5120, 2048, rows);
      bench_projection(h, "qwen3-30b", "out_proj", 2048, 4096, rows);
      bench_projection(h, "paper", "qkv", 12288, 4096, rows);
      bench_projection(h, "paper", "out_proj", 4096, 4096, rows);
    }
    if (!csv.empty()) write_csv(csv);
    cublasDestroy(h);
    cudaStreamDestroy(g_stream);
    return 0;
  }
  if (split2_only) {
    // Mixtral b=8 ctx=2048: the default (verified, then with a trace: the trace runs 3
    // stages), 3 and 4 pipeline stages explicitly (verified), then default / 3 / 4 stages
    // interleaved three times; Mixtral b=8 ctx=8192 the same; the default at every shape with
    // batch x context >= 16K; the target rows again.
    AttnOpt tr;
    tr.trace = true;
    AttnOpt s3;
    s3.stages = 3;
    AttnOpt s4;
    s4.stages = 4;
    bench_attention("mixtral", 32, 8, 8, 2048, sms, true, AttnOpt{});
    bench_attention("mixtral", 32, 8, 8, 2048, sms, false, tr);
    bench_attention("mixtral", 32, 8, 8, 2048, sms, true, s3);
    bench_attention("mixtral", 32, 8, 8, 2048, sms, true, s4);
    for (int ctx : {2048, 2048, 2048, 8192, 8192}) {
      bench_attention("mixtral", 32, 8, 8, ctx, sms, false, AttnOpt{});
      bench_attention("mixtral", 32, 8, 8, ctx, sms, false, s3);
      bench_attention("mixtral", 32, 8, 8, ctx, sms, false, s4);
    }
    for (int batch : {8, 32, 128}) {
      for (int ctx : {2048, 8192}) {
        bench_attention("paper", 32, 32, batch, ctx, sms, false, AttnOpt{});
        bench_attention("mixtral", 32, 8, batch, ctx, sms, false, AttnOpt{});
      }
    }
    for (const AttnOpt& o : {AttnOpt{}, s3, s4}) {
      bench_attention("mixtral", 32, 8, 8, 2048, sms, false, o);
    }
    if (!csv.empty()) write_csv(csv);
    cublasDestroy(h);
    cudaStreamDestroy(g_stream);
    return 0;
  }
  if (merge_only) {
    // The post-tile phase of decode attention: Mixtral b=8 ctx=2048 default (with a trace),
    // 4 stages with the cluster merge, then the default at every shape with batch x context
    // >= 16K tokens (unverified: the verified rows above cover the kernels), the target again.
    AttnOpt tr;
    tr.trace = true;
    bench_attention("mixtral", 32, 8, 8, 2048, sms, true, AttnOpt{});
    bench_attention("mixtral", 32, 8, 8, 2048, sms, false, tr);
    AttnOpt s4;
    s4.stages = 4;
    s4.merge = 2;
    bench_attention("mixtral", 32, 8, 8, 2048, sms, false, s4);
    // More splits with the cluster merge (its DSMEM loads now issued together): 3 and 4
    // splits (192 / 256 blocks: more blocks streaming, shorter blocks), 4 with a trace.
    for (int sp : {3, 4}) {
      AttnOpt o;
      o.splits = sp;
      o.merge = 2;
      bench_attention("mixtral", 32, 8, 8, 2048, sms, sp == 4, o);
      o.trace = sp == 4;
      if (o.trace) bench_attention("mixtral", 32, 8, 8, 2048, sms, false, o);
      o.trace = false;
      o.stages = 4;
      bench_attention("mixtral", 32, 8, 8, 2048, sms, false, o);
    }
    bench_attention("paper", 32, 32, 8, 2048, sms, true, AttnOpt{});
    for (int batch : {8, 32, 128}) {
      for (int ctx : {2048, 8192}) {
        bench_attention("paper", 32, 32, batch, ctx, sms, false, AttnOpt{});
        bench_attention("mixtral", 32, 8, batch, ctx, sms, false, AttnOpt{});
      }
    }
    bench_attention("mixtral", 32, 8, 8, 2048, sms, false, AttnOpt{});
    bench_attention("mixtral", 32, 8, 8, 2048, sms, false, s4);
    if (!csv.empty()) write_csv(csv);
    cublasDestroy(h);
    cudaStreamDestroy(g_stream);
    return 0;
  }
  if (target_only) {
    // Mixtral b=8 ctx=2048: reduce-kernel merge, default, 8 warps.
    for (int v = 0; v < 3; ++v) {
      if (target_variant >= 0 && v != target_variant) continue;
      AttnOpt o;  // 0: reduce kernel, 1: default, 2: 8 warps
      o.merge = v == 0 ? 1 : 0;
      o.warps = v == 2 ? 8 : 0;
      bench_attention("mixtral", 32, 8, 8, 2048, sms, false, o);
    }
    if (!csv.empty()) write_csv(csv);
    cublasDestroy(h);
    cudaStreamDestroy(g_stream);
    return 0;
  }

  if (!attention_only) {
    bench_routing("paper", 256, 16, 2, true);
    bench_routing("mixtral", 256, 8, 2, false);
    bench_routing("paper", 32, 16, 2, false);
    bench_routing("paper", 1024, 16, 2, false);
    bench_routing("paper", 2048, 16, 2, false);
    for (int t : {32, 128, 256}) bench_norm_rope_act(t);
  }

  bool first = true;
  for (int batch : {1, 8, 32, 128}) {
    for (int ctx : {2048, 8192}) {
      if (quick && batch * ctx > 65536) continue;
      bench_attention("paper", 32, 32, batch, ctx, sms, first);
      bench_attention("mixtral", 32, 8, batch, ctx, sms, first);
      first = false;
    }
  }
  if (!quick) {
    // Same run, same shapes: the reduce-kernel merge forced (rk; the default uses the
    // cluster merge at 2 splits with one block per SM on sm_90), and 8-warp blocks (w8).
    for (int batch : {1, 8, 32, 128}) {
      for (int ctx : {2048, 8192}) {
        const bool v = batch == 1 && ctx == 2048;
        for (int variant = 0; variant < 2; ++variant) {
          AttnOpt o;
          o.merge = variant == 0 ? 1 : 0;
          o.warps = variant == 1 ? 8 : 0;
          bench_attention("paper", 32, 32, batch, ctx, sms, v, o);
          bench_attention("mixtral", 32, 8, batch, ctx, sms, v, o);
        }
      }
    }
    // Split count x block size x merge (cluster: <= 8 splits) at Mixtral b=8, and dynamic
    // tiles (dyn) with 8 warps and the cluster merge.
    for (int ctx : {2048, 8192}) {
      for (int s : {1, 2, 3, 4}) {
        for (int warps : {4, 8}) {
          for (int merge : {1, 2}) {
            if (s == 1 && merge == 2) continue;  // one split: no merge
            AttnOpt o;
            o.splits = s;
            o.warps = warps;
            o.merge = merge;
            bench_attention("mixtral", 32, 8, 8, ctx, sms, false, o);
          }
        }
      }
      AttnOpt o;
      o.warps = 8;
      o.merge = 2;
      o.dyn = true;
      bench_attention("mixtral", 32, 8, 8, ctx, sms, false, o);
    }
    // Pipeline depth at the target shape with the cluster merge.
    for (int st : {2, 4}) {
      AttnOpt o;
      o.stages = st;
      o.merge = 2;
      bench_attention("mixtral", 32, 8, 8, 2048, sms, false, o);
    }
    // Noise check: the target shape again at the end of the run (default, rk).
    for (int merge : {0, 1}) {
      AttnOpt o;
      o.merge = merge;
      bench_attention("mixtral", 32, 8, 8, 2048, sms, false, o);
    }
  }
  if (!quick && !attention_only) {
    // Before/after in the same run: the CUDA-core kernel (the default before the tensor-core
    // kernel) with its own split heuristic, at every grid shape.
    for (int batch : {1, 8, 32, 128}) {
      for (int ctx : {2048, 8192}) {
        AttnOpt o;
        o.variant = 1;
        o.old_splits = true;
        bench_attention("paper", 32, 32, batch, ctx, sms, false, o);
        bench_attention("mixtral", 32, 8, batch, ctx, sms, false, o);
      }
    }
  }

  if (!attention_only) {
    bool vf = true;
    for (int tpe : {1, 8, 16, 32, 64, 128}) {
      bench_ffn(h, "paper", 16, tpe, vf);
      vf = false;
    }
    for (int tpe : {1, 16, 64}) bench_ffn(h, "mixtral", 8, tpe, false);
  }

  if (!csv.empty()) write_csv(csv);
  cublasDestroy(h);
  cudaStreamDestroy(g_stream);
  return 0;
}
