// GPU tests: every kernel against its CPU reference (masep_kernels_ref) on fresh random
// inputs, with outputs poisoned (NaN / sentinel) before each launch so unwritten elements
// fail. Without a GPU every test prints MASEP_GPU_SKIP and is skipped.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
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
using ref::Bf16;

namespace {

bool gpu_present() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define REQUIRE_GPU()                \
  do {                               \
    if (!gpu_present()) {            \
      std::puts("MASEP_GPU_SKIP");   \
      GTEST_SKIP() << "no CUDA GPU"; \
    }                                \
  } while (0)

#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call

// Device buffer of T, owned; poisoned with the byte 0xFF (NaN for bf16 and fp32, -1 for int)
// unless filled from the host.
template <typename T>
class Dev {
 public:
  explicit Dev(std::size_t n) : n_(n) {
    if (cudaMalloc(&p_, std::max<std::size_t>(n, 1) * sizeof(T)) != cudaSuccess) p_ = nullptr;
    poison();
  }
  explicit Dev(const std::vector<T>& h) : Dev(h.size()) { upload(h); }
  ~Dev() { cudaFree(p_); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  void upload(const std::vector<T>& h) {
    cudaMemcpy(p_, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  void poison(int byte = 0xFF) { cudaMemset(p_, byte, std::max<std::size_t>(n_, 1) * sizeof(T)); }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
  }
  T* get() const { return p_; }
  template <typename U>
  U* as() const {
    return reinterpret_cast<U*>(p_);
  }

 private:
  T* p_ = nullptr;
  std::size_t n_;
};

std::vector<Bf16> random_bf16(std::size_t n, std::mt19937& rng, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<Bf16> v(n);
  for (auto& x : v) {
    float f = d(rng);
    if (f == 0.f) f = 0.5f * hi;  // never zeros
    x = ref::to_bf16(f);
  }
  return v;
}

std::vector<float> random_f32(std::size_t n, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// |gpu - ref| <= atol + rtol*|ref| for every element; NaN fails. Reports the first few misses.
template <typename Got>
void expect_close(const std::vector<Got>& got, const std::vector<float>& want, float rtol,
                  float atol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    float g;
    if constexpr (std::is_same_v<Got, Bf16>) {
      g = ref::to_float(got[i]);
    } else {
      g = static_cast<float>(got[i]);
    }
    const float tol = atol + rtol * std::fabs(want[i]);
    if (!(std::fabs(g - want[i]) <= tol)) {
      if (++bad <= 5) ADD_FAILURE() << what << " [" << i << "]: got " << g << " want " << want[i];
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " elements off";
}

float max_abs(const std::vector<float>& v) {
  float m = 0.f;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

// ---------------------------------------------------------------------------------------
struct AttnCase {
  int heads, kv_heads, head_dim;
  std::vector<int> lens;  // tokens in cache before the step
  int max_len;
  int splits;  // 0: decode_attention_num_splits (4 arguments); -1: the 6-argument overload
  bool append;
  int group_tile = 0;
  int variant = 0;      // DecodeAttentionParams::kernel_variant
  int stages = 0;       // DecodeAttentionParams::pipeline_stages
  bool fused = false;   // DecodeAttentionExperiment::fused_merge (workspace initialised)
  int warps = 0;        // DecodeAttentionParams::block_warps
  int merge = 0;        // DecodeAttentionParams::split_merge
  bool dyn = false;     // DecodeAttentionExperiment::dynamic_splits (workspace initialised)
  int pdl = 0;          // DecodeAttentionExperiment::programmatic_launch
  int prefetch = -1;    // DecodeAttentionExperiment::l2_prefetch_tiles
  bool rotate = false;  // DecodeAttentionExperiment::rotate_tiles
};

// Expects the fused-merge counters in the workspace header to be zero (as after every launch).
void expect_header_zero(const Dev<char>& ws) {
  std::vector<std::uint32_t> h(mk::kDecodeAttentionMergeCounters);
  ASSERT_EQ(cudaMemcpy(h.data(), ws.get(), h.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(std::count(h.begin(), h.end(), 0u), static_cast<long>(h.size()))
      << "merge counters not reset";
}

// `shared_ws`: a workspace already initialised by the caller (fused cases), else one is made
// here (poisoned; header zeroed for fused cases). Fused cases launch three times and check
// that every launch gives bit-identical out/lse/caches (the counters reset themselves).
void run_attention(const AttnCase& c, std::uint32_t seed, Dev<char>* shared_ws = nullptr,
                   std::size_t shared_ws_bytes = 0) {
  std::mt19937 rng(seed);
  const int batch = static_cast<int>(c.lens.size());
  const std::size_t cache_n = std::size_t(batch) * c.kv_heads * c.max_len * c.head_dim;
  auto q = random_bf16(std::size_t(batch) * c.heads * c.head_dim, rng);
  auto kc = random_bf16(cache_n, rng, -2.f, 2.f);
  auto vc = random_bf16(cache_n, rng);
  std::vector<Bf16> kn, vn;
  if (c.append) {
    kn = random_bf16(std::size_t(batch) * c.kv_heads * c.head_dim, rng, -2.f, 2.f);
    vn = random_bf16(std::size_t(batch) * c.kv_heads * c.head_dim, rng);
  }
  Dev<Bf16> dq(q), dkc(kc), dvc(vc), dkn(kn), dvn(vn);
  Dev<std::int32_t> dlens(std::vector<std::int32_t>(c.lens.begin(), c.lens.end()));
  Dev<Bf16> dout(q.size());
  Dev<float> dlse(std::size_t(batch) * c.heads);
  int max_ctx = *std::max_element(c.lens.begin(), c.lens.end()) + 1;
  const int splits =
      c.splits > 0 ? c.splits
      : c.splits == 0
          ? mk::decode_attention_num_splits(batch, c.kv_heads, max_ctx, 132)
          : mk::decode_attention_num_splits(batch, c.heads, c.kv_heads, c.head_dim, max_ctx, 132);
  const std::size_t need = mk::decode_attention_workspace_bytes(batch, c.heads, c.head_dim, splits);
  ASSERT_TRUE(shared_ws == nullptr || shared_ws_bytes >= need);
  const std::size_t ws_bytes = shared_ws != nullptr ? shared_ws_bytes : need;
  Dev<char> own_ws(shared_ws != nullptr ? 0 : ws_bytes);
  Dev<char>& ws = shared_ws != nullptr ? *shared_ws : own_ws;
  if ((c.fused || c.dyn) && shared_ws == nullptr) {
    ASSERT_EQ(mk::decode_attention_workspace_init(ws.get(), ws_bytes, nullptr), mk::Status::kOk);
  }
  mk::DecodeAttentionParams p;
  mk::DecodeAttentionExperiment ex;  // measured-and-lost variants
  p.q = dq.as<mk::bf16>();
  p.k_new = c.append ? dkn.as<mk::bf16>() : nullptr;
  p.v_new = c.append ? dvn.as<mk::bf16>() : nullptr;
  p.k_cache = dkc.as<mk::bf16>();
  p.v_cache = dvc.as<mk::bf16>();
  p.kv_lens = dlens.get();
  p.out = dout.as<mk::bf16>();
  p.lse = dlse.get();
  p.workspace = ws.get();
  p.workspace_bytes = ws_bytes;
  p.batch = batch;
  p.num_heads = c.heads;
  p.num_kv_heads = c.kv_heads;
  p.head_dim = c.head_dim;
  p.max_kv_len = c.max_len;
  p.num_splits = splits;
  p.group_tile = c.group_tile;
  p.kernel_variant = c.variant;
  p.pipeline_stages = c.stages;
  ex.fused_merge = c.fused;
  p.block_warps = c.warps;
  p.split_merge = c.merge;
  ex.dynamic_splits = c.dyn;
  ex.programmatic_launch = c.pdl;
  ex.l2_prefetch_tiles = c.prefetch;
  ex.rotate_tiles = c.rotate;
  ASSERT_NO_THROW(mk::check_decode_attention(p, ex));
  ASSERT_EQ(mk::launch_decode_attention(p, ex, nullptr), mk::Status::kOk);
  CUDA_OK(cudaDeviceSynchronize());
  if (c.dyn) {
    // Dynamic tiles: relaunch on the same workspace; the tile counters must be back at zero
    // after every launch; the last launch's output (poisoned before) is checked below. Not
    // compared bit for bit: which block sums which tiles depends on timing.
    expect_header_zero(ws);
    for (int rep = 0; rep < 2; ++rep) {
      dout.poison();
      dlse.poison();
      ASSERT_EQ(mk::launch_decode_attention(p, ex, nullptr), mk::Status::kOk);
      CUDA_OK(cudaDeviceSynchronize());
      expect_header_zero(ws);
    }
  }
  if (c.fused) {
    // Relaunch on the same workspace (same inputs: the append rewrites the same slot with the
    // same values): identical results, counters back to zero each time.
    expect_header_zero(ws);
    const auto out1 = dout.download();
    const auto lse1 = dlse.download();
    for (int rep = 0; rep < 2; ++rep) {
      dout.poison();
      dlse.poison();
      ASSERT_EQ(mk::launch_decode_attention(p, ex, nullptr), mk::Status::kOk);
      CUDA_OK(cudaDeviceSynchronize());
      const auto out2 = dout.download();
      const auto lse2 = dlse.download();
      EXPECT_EQ(0, std::memcmp(out1.data(), out2.data(), out1.size() * sizeof(Bf16)))
          << "fused relaunch " << rep << ": out differs";
      EXPECT_EQ(0, std::memcmp(lse1.data(), lse2.data(), lse1.size() * sizeof(float)))
          << "fused relaunch " << rep << ": lse differs";
    }
    expect_header_zero(ws);
  }

  std::vector<float> lse_ref;
  auto want = ref::decode_attention(q, kn, vn, kc, vc,
                                    std::vector<std::int32_t>(c.lens.begin(), c.lens.end()),
                                    c.heads, c.kv_heads, c.head_dim, c.max_len, 0.f, &lse_ref);
  expect_close(dout.download(), want, 2e-2f, 2e-3f, "attention out");
  expect_close(dlse.download(), lse_ref, 1e-4f, 1e-3f, "attention lse");
  // The caches after the step equal the reference's (new token appended, nothing else).
  auto kc_gpu = dkc.download();
  auto vc_gpu = dvc.download();
  EXPECT_EQ(0, std::memcmp(kc_gpu.data(), kc.data(), cache_n * sizeof(Bf16))) << "k cache";
  EXPECT_EQ(0, std::memcmp(vc_gpu.data(), vc.data(), cache_n * sizeof(Bf16))) << "v cache";
}

}  // namespace

TEST(GpuDecodeAttention, MhaHd128AppendVariableLengths) {
  REQUIRE_GPU();
  run_attention({4, 4, 128, {0, 37, 300}, 320, 4, true}, 1);  // empty splits for len 1
}

TEST(GpuDecodeAttention, GqaHd128AutoSplits) {
  REQUIRE_GPU();
  run_attention({32, 8, 128, {1000, 63}, 1100, 0, true}, 2);
  for (int tile : {1, 2, 4}) run_attention({32, 8, 128, {517, 2}, 600, 0, true, tile}, 30 + tile);
}

TEST(GpuDecodeAttention, GqaHd64NoAppend) {
  REQUIRE_GPU();
  run_attention({8, 2, 64, {5, 129, 1}, 130, 3, false}, 3);
}

TEST(GpuDecodeAttention, OddGroupSizesAndLargeGroups) {
  REQUIRE_GPU();
  run_attention({12, 2, 64, {33, 1}, 40, 2, true}, 4);     // group 6 -> sub-groups of 2
  run_attention({16, 1, 128, {95}, 100, 1, true}, 5);      // group 16 -> 2 sub-groups of 8
  run_attention({3, 1, 128, {17, 250}, 256, 7, true}, 6);  // group 3 -> 3 sub-groups of 1
}

// The tensor-core kernel (default for GQA): its own split heuristic, every pipeline depth,
// split boundaries not on 64-token tiles, splits with no tokens, more than 16 query heads
// per kv head (several 16-row sub-groups, the last one partial), MHA forced onto it, and the
// CUDA-core kernel forced for GQA.
TEST(GpuDecodeAttention, TensorCoreKernelVariantsAndStages) {
  REQUIRE_GPU();
  run_attention({32, 8, 128, {1000, 63}, 1100, -1, true}, 40);
  for (int st : {2, 3, 4}) {
    run_attention({32, 8, 128, {2500, 64, 127}, 2600, 3, true, 0, 0, st}, 41 + st);
    run_attention({8, 2, 64, {700, 1}, 720, 2, true, 0, 0, st}, 45 + st);
  }
  run_attention({8, 2, 128, {3, 70}, 80, 16, true}, 50);             // empty splits
  run_attention({32, 1, 128, {200, 7}, 256, 3, true}, 51);           // group 32: 2 x 16 rows
  run_attention({20, 1, 64, {77, 130}, 140, 2, false}, 52);          // group 20: 16 + 4 rows
  run_attention({6, 2, 128, {129, 0, 64}, 200, 2, true}, 53);        // group 3
  run_attention({4, 4, 128, {0, 37, 300}, 320, 4, true, 0, 2}, 54);  // MHA on tensor cores
  run_attention({4, 4, 64, {513, 5}, 600, 5, false, 0, 2, 2}, 55);   // MHA hd64, 2 stages
  run_attention({32, 8, 128, {1000, 63}, 1100, 0, true, 0, 1}, 56);  // GQA on CUDA cores
  run_attention({4, 4, 128, {0, 37, 300}, 320, 4, true, 0, 1}, 57);  // MHA on CUDA cores
  run_attention({32, 8, 128, {1000, 63}, 1100, 1, true}, 58);        // 1 split: no reduce
  run_attention({16, 16, 64, {90, 300}, 320, 1, false}, 59);         // MHA, 1 split
}

// In-kernel split merge (fused_merge): GQA/MHA, head_dim 64/128, empty splits, several
// 16-row sub-groups, 2..16 splits, stages; each case relaunched on its workspace (identical
// results, counters reset). Then one workspace shared by launches of different shapes, and a
// shape beyond the header's counters (falls back to the reduce kernel).
TEST(GpuDecodeAttention, FusedMergeRepeatedLaunches) {
  REQUIRE_GPU();
  auto fused = [](AttnCase c) {
    c.fused = true;
    return c;
  };
  run_attention(fused({32, 8, 128, {1000, 63}, 1100, -1, true}), 60);
  run_attention(fused({32, 8, 128, {2500, 64, 127}, 2600, 2, true}), 61);
  run_attention(fused({32, 8, 128, {2047, 2047, 2047, 2047}, 2048, 3, true}), 62);
  run_attention(fused({8, 2, 128, {3, 70}, 80, 16, true}), 63);             // empty splits
  run_attention(fused({32, 1, 128, {200, 7}, 256, 3, true}), 64);           // 2 sub-groups of 16
  run_attention(fused({20, 1, 64, {77, 130}, 140, 2, false}), 65);          // 16 + 4 rows
  run_attention(fused({4, 4, 128, {0, 37, 300}, 320, 4, true}), 66);        // MHA
  run_attention(fused({8, 2, 64, {700, 1}, 720, 5, true, 0, 0, 2}), 67);    // 2 stages
  run_attention(fused({8, 2, 64, {700, 1}, 720, 5, true, 0, 0, 4}), 68);    // 4 stages
  run_attention(fused({32, 8, 128, {1000, 63}, 1100, 1, true}), 69);        // 1 split: direct
  run_attention(fused({32, 8, 128, {1000, 63}, 1100, 3, true, 0, 1}), 70);  // CUDA cores

  // One workspace, initialised once, shared by launches of different shapes and splits.
  const std::size_t big = mk::decode_attention_workspace_bytes(4, 32, 128, 16);
  Dev<char> ws(big);  // poisoned, then the header zeroed
  ASSERT_EQ(mk::decode_attention_workspace_init(ws.get(), big, nullptr), mk::Status::kOk);
  for (int round = 0; round < 2; ++round) {
    run_attention(fused({32, 8, 128, {900, 17, 400, 1}, 1000, 16, true}), 71 + round, &ws, big);
    run_attention(fused({16, 16, 64, {90, 300}, 320, 3, false}), 73 + round, &ws, big);
    run_attention(fused({32, 8, 128, {511, 64}, 600, 2, true}), 75 + round, &ws, big);
  }
  expect_header_zero(ws);
  EXPECT_EQ(mk::decode_attention_workspace_init(nullptr, big, nullptr),
            mk::Status::kInvalidArgument);
  EXPECT_EQ(mk::decode_attention_workspace_init(ws.get(), 16, nullptr),
            mk::Status::kInvalidArgument);

  // 4160 (seq, kv head) groups > kDecodeAttentionMergeCounters: the reduce kernel merges.
  run_attention(fused({64, 64, 64, std::vector<int>(65, 70), 72, 2, true}), 77);
}

// Thread-block-cluster split merge (split_merge 2, sm_90; elsewhere it falls back to the
// reduce kernel and must give the same results) and 8-warp blocks (128-token tiles), alone and
// together: split counts 2..8 (the cluster limit) and 9 (fallback), empty splits, split
// boundaries off the tiles, sub-groups of 16 + 4 rows, MHA, head_dim 64 and 128, stages 2/3,
// one split (direct output).
TEST(GpuDecodeAttention, ClusterMergeAndEightWarps) {
  REQUIRE_GPU();
  auto with = [](AttnCase c, int warps, int merge) {
    c.warps = warps;
    c.merge = merge;
    return c;
  };
  for (int warps : {4, 8}) {
    for (int merge : {1, 2}) {
      const std::uint32_t sd = 100 + 20 * warps + 10 * merge;
      run_attention(with({32, 8, 128, {1000, 63}, 1100, -1, true}, warps, merge), sd);
      run_attention(with({32, 8, 128, {2047, 2047, 2047}, 2048, 2, true}, warps, merge), sd + 1);
      run_attention(with({32, 8, 128, {2500, 64, 127}, 2600, 3, true}, warps, merge), sd + 2);
      run_attention(with({8, 2, 128, {3, 70, 300}, 320, 8, true}, warps, merge), sd + 3);
      run_attention(with({8, 2, 128, {3, 700}, 720, 9, true}, warps, merge), sd + 4);
      run_attention(with({20, 1, 64, {77, 530}, 540, 4, false}, warps, merge), sd + 5);
      run_attention(with({4, 4, 128, {0, 37, 300}, 320, 4, true}, warps, merge), sd + 6);
      run_attention(with({8, 2, 64, {700, 1}, 720, 5, true, 0, 0, 2}, warps, merge), sd + 7);
      run_attention(with({32, 8, 128, {1000, 63}, 1100, 1, true}, warps, merge), sd + 8);
      // Group 12: the warp merge stores rows g + 8 < 12 of the second half only.
      run_attention(with({12, 1, 128, {300, 1029}, 1100, 2, true}, warps, merge), sd + 9);
    }
  }
}

// Two-split cluster merge: on cards with >= 4 TB/s peak memory bandwidth (the H200) and
// head_dim 128 the PAIR kernel (rank 1 writes its partial into rank 0's shared memory, rank 0
// merges alone; the new token appended at the kernel start), elsewhere the earlier cluster
// merge: stages 2/3/4, 4 and 8 warps, head_dim 64 and 128, MHA and GQA with 16 + 4-row
// sub-groups, an empty second split (length <= one tile), the new token in either split or
// on a split boundary, no append, dynamic tiles; against the CPU reference and the cache check.
TEST(GpuDecodeAttention, TwoSplitPairMergeAndEarlyAppend) {
  REQUIRE_GPU();
  auto pair = [](AttnCase c, int stages, int warps, bool dyn = false) {
    c.splits = 2;
    c.merge = 2;
    c.stages = stages;
    c.warps = warps;
    c.dyn = dyn;
    return c;
  };
  std::uint32_t sd = 900;
  for (int stages : {2, 3, 4}) {
    for (int warps : {4, 8}) {
      if (warps == 8 && stages == 4) continue;  // not a valid configuration
      run_attention(pair({32, 8, 128, {2047, 2047, 2047}, 2048, 2, true}, stages, warps), ++sd);
      run_attention(pair({32, 8, 128, {1000, 63, 0, 127}, 1100, 2, true}, stages, warps), ++sd);
      run_attention(pair({20, 1, 64, {77, 530, 1}, 540, 2, false}, stages, warps), ++sd);
      run_attention(pair({8, 8, 64, {3, 700, 64, 128}, 720, 2, true}, stages, warps), ++sd);
      run_attention(pair({12, 1, 128, {300, 1029}, 1100, 2, true}, stages, warps), ++sd);
      // Split 1 holding only the new token (64, 128), an empty split 1 (2), the new token at
      // the end of split 1 (1023); 16 + 4-row and 2 x 16-row sub-groups with head_dim 128.
      run_attention(pair({32, 8, 128, {64, 128, 2, 1023}, 1100, 2, true}, stages, warps), ++sd);
      run_attention(pair({20, 1, 128, {77, 530, 1}, 540, 2, false}, stages, warps), ++sd);
      run_attention(pair({32, 1, 128, {200, 7, 1000}, 1024, 2, true}, stages, warps), ++sd);
      // A cache shorter than one tile (split 0's first tile copied before the length is
      // known: rows past the cache zero-filled, then loaded again); lengths 63/64/65 around it.
      run_attention(pair({32, 8, 128, {10, 39, 0}, 40, 2, true}, stages, warps), ++sd);
      run_attention(pair({32, 8, 128, {63, 64, 65}, 80, 2, false}, stages, warps), ++sd);
      // Lengths around 4 tiles (the fixed first tiles of both blocks) and the new token on
      // the first / last slot of a block's remaining tiles.
      run_attention(pair({32, 8, 128, {319, 320, 256, 255}, 400, 2, true}, stages, warps), ++sd);
    }
  }
  for (int warps : {4, 8}) {
    run_attention(pair({32, 8, 128, {2047, 1000, 63}, 2048, 2, true}, 3, warps, true), ++sd);
    run_attention(pair({8, 8, 64, {3, 700, 64}, 720, 2, true}, 3, warps, true), ++sd);
  }
}

// Programmatic launch and L2 prefetch: every merge and block size, 1..9 splits, sub-groups,
// head_dim 64, MHA, no append, lengths off the tiles, prefetch of more tiles than a split has.
TEST(GpuDecodeAttention, ProgrammaticLaunchAndPrefetch) {
  REQUIRE_GPU();
  auto with = [](AttnCase c, int pdl, int pf, int merge = 0, int warps = 0) {
    c.pdl = pdl;
    c.prefetch = pf;
    c.merge = merge;
    c.warps = warps;
    c.rotate = pf == 1 || pf == 16;  // rotated tile order, with and without the other options
    return c;
  };
  std::uint32_t sd = 900;
  for (int pdl : {1, 2}) {
    for (int pf : {0, 1, 4, 16}) {
      run_attention(with({32, 8, 128, {2047, 2047, 2047}, 2048, 2, true}, pdl, pf), sd++);
      run_attention(with({32, 8, 128, {1000, 63}, 1100, -1, true}, pdl, pf, 1), sd++);
      run_attention(with({32, 8, 128, {2500, 64, 127}, 2600, 3, true}, pdl, pf, 2), sd++);
      run_attention(with({8, 2, 128, {3, 700}, 720, 9, true}, pdl, pf, 2), sd++);
      run_attention(with({20, 1, 64, {77, 530}, 540, 4, false}, pdl, pf), sd++);
      run_attention(with({4, 4, 128, {0, 37, 300}, 320, 1, true}, pdl, pf), sd++);
      run_attention(with({32, 8, 128, {1000, 63}, 1100, 1, true}, pdl, pf, 0, 8), sd++);
      run_attention(with({32, 8, 128, {1000, 63}, 1100, 2, true}, pdl, pf, 2, 8), sd++);
    }
  }
}

// Programmatic launch after kernels that change the lengths and the query: steps of
// (attention, advance lengths) back to back on one stream, each attention a programmatic
// dependent of the previous kernel with the L2 prefetch reading the length before its wait;
// the outputs and caches equal those of the same steps launched plainly.
TEST(GpuDecodeAttention, ProgrammaticLaunchAfterLengthUpdates) {
  REQUIRE_GPU();
  std::mt19937 rng(77);
  const int batch = 3, heads = 32, kvh = 8, hd = 128, max_len = 1200, steps = 6;
  const std::vector<std::int32_t> lens0 = {500, 63, 1000};
  const std::size_t cache_n = std::size_t(batch) * kvh * max_len * hd;
  const auto q = random_bf16(std::size_t(batch) * heads * hd * steps, rng);
  const auto kn = random_bf16(std::size_t(batch) * kvh * hd * steps, rng);
  const auto vn = random_bf16(std::size_t(batch) * kvh * hd * steps, rng);
  const auto kc = random_bf16(cache_n, rng);
  const auto vc = random_bf16(cache_n, rng);
  std::vector<std::vector<Bf16>> outs[2];
  std::vector<Bf16> caches[2];
  for (int pdl : {1, 2}) {
    Dev<Bf16> dq(q), dkn(kn), dvn(vn), dkc(kc), dvc(vc);
    Dev<std::int32_t> dlens(lens0);
    Dev<Bf16> dout(std::size_t(batch) * heads * hd * steps);
    dout.poison();
    const int splits = 2;
    const std::size_t wsb = mk::decode_attention_workspace_bytes(batch, heads, hd, splits);
    Dev<char> ws(wsb);
    cudaStream_t st;
    CUDA_OK(cudaStreamCreate(&st));
    for (int i = 0; i < steps; ++i) {
      mk::DecodeAttentionParams p;
      mk::DecodeAttentionExperiment ex;  // measured-and-lost variants
      p.q = dq.as<mk::bf16>() + std::size_t(i) * batch * heads * hd;
      p.k_new = dkn.as<mk::bf16>() + std::size_t(i) * batch * kvh * hd;
      p.v_new = dvn.as<mk::bf16>() + std::size_t(i) * batch * kvh * hd;
      p.k_cache = dkc.as<mk::bf16>();
      p.v_cache = dvc.as<mk::bf16>();
      p.kv_lens = dlens.get();
      p.out = dout.as<mk::bf16>() + std::size_t(i) * batch * heads * hd;
      p.workspace = ws.get();
      p.workspace_bytes = wsb;
      p.batch = batch;
      p.num_heads = heads;
      p.num_kv_heads = kvh;
      p.head_dim = hd;
      p.max_kv_len = max_len;
      p.num_splits = splits;
      p.split_merge = i % 2 ? 1 : 2;  // reduce kernel and cluster merge
      ex.programmatic_launch = pdl;
      ex.l2_prefetch_tiles = pdl == 2 ? 8 : 0;
      ASSERT_EQ(mk::launch_decode_attention(p, ex, st), mk::Status::kOk);
      ASSERT_EQ(mk::launch_advance_kv_lens(dlens.get(), batch, st), mk::Status::kOk);
    }
    CUDA_OK(cudaStreamSynchronize(st));
    CUDA_OK(cudaStreamDestroy(st));
    const auto all = dout.download();
    caches[pdl - 1] = dkc.download();
    const auto v = dvc.download();
    caches[pdl - 1].insert(caches[pdl - 1].end(), v.begin(), v.end());
    const auto l = dlens.download();
    for (int b = 0; b < batch; ++b) EXPECT_EQ(l[b], lens0[b] + steps);
    outs[pdl - 1].push_back(all);
  }
  EXPECT_EQ(0, std::memcmp(outs[0][0].data(), outs[1][0].data(), outs[0][0].size() * sizeof(Bf16)))
      << "programmatic launches gave different outputs";
  EXPECT_EQ(0, std::memcmp(caches[0].data(), caches[1].data(), caches[0].size() * sizeof(Bf16)))
      << "programmatic launches gave different caches";
  // The first step against the reference (the plain launches are covered by the tests above).
  std::vector<Bf16> q0(q.begin(), q.begin() + std::size_t(batch) * heads * hd);
  std::vector<Bf16> kn0(kn.begin(), kn.begin() + std::size_t(batch) * kvh * hd);
  std::vector<Bf16> vn0(vn.begin(), vn.begin() + std::size_t(batch) * kvh * hd);
  auto kc0 = kc, vc0 = vc;
  const auto want =
      ref::decode_attention(q0, kn0, vn0, kc0, vc0, lens0, heads, kvh, hd, max_len, 0.f);
  std::vector<Bf16> got0(outs[1][0].begin(), outs[1][0].begin() + want.size());
  expect_close(got0, want, 2e-2f, 2e-3f, "programmatic step 0");
}

// Dynamic tiles (dynamic_splits): with both merges and block sizes, 2..8 splits, more splits
// than tiles (blocks that get none), sequences of different lengths in one launch (different
// tile counts per group), sub-groups, head_dim 64, MHA, a full cache (NaN, counters untouched),
// and one workspace shared by launches of different shapes.
TEST(GpuDecodeAttention, DynamicTiles) {
  REQUIRE_GPU();
  auto dyn = [](AttnCase c, int warps, int merge) {
    c.dyn = true;
    c.warps = warps;
    c.merge = merge;
    return c;
  };
  for (int warps : {4, 8}) {
    for (int merge : {1, 2}) {
      const std::uint32_t sd = 300 + 20 * warps + 10 * merge;
      run_attention(dyn({32, 8, 128, {2047, 2047, 2047}, 2048, 2, true}, warps, merge), sd);
      run_attention(dyn({32, 8, 128, {2500, 64, 127, 1}, 2600, 3, true}, warps, merge), sd + 1);
      run_attention(dyn({8, 2, 128, {3, 70, 300}, 320, 8, true}, warps, merge), sd + 2);
      run_attention(dyn({20, 1, 64, {77, 530}, 540, 4, false}, warps, merge), sd + 3);
      run_attention(dyn({4, 4, 128, {0, 37, 300}, 320, 4, true}, warps, merge), sd + 4);
      run_attention(dyn({32, 8, 128, {1000, 63}, 1100, -1, true}, warps, merge), sd + 5);
      run_attention(dyn({32, 8, 128, {1000, 63}, 1100, 1, true}, warps, merge), sd + 6);
    }
  }
  const std::size_t big = mk::decode_attention_workspace_bytes(4, 32, 128, 8);
  Dev<char> ws(big);
  ASSERT_EQ(mk::decode_attention_workspace_init(ws.get(), big, nullptr), mk::Status::kOk);
  for (int round = 0; round < 2; ++round) {
    run_attention(dyn({32, 8, 128, {900, 17, 400, 1}, 1000, 8, true}, 4, 2), 390 + round, &ws, big);
    run_attention(dyn({16, 16, 64, {90, 300}, 320, 3, false}, 8, 1), 392 + round, &ws, big);
  }
  expect_header_zero(ws);
}

// The bandwidth-aware split count (pure function, no GPU needed): one split for Mixtral b=8
// (64 blocks) on an H100-like card (132 SMs, 3352 GB/s), the 6-argument model's two splits on
// an H200-like one (4915 GB/s); unchanged where the one-split launch has more than one block
// per two SMs or too few blocks to stream at 80% of the peak.
TEST(DecodeAttentionSplits, BandwidthAwareOneSplit) {
  const int model = mk::decode_attention_num_splits(8, 32, 8, 128, 2048, 132);
  EXPECT_EQ(model, 2);
  EXPECT_EQ(mk::decode_attention_num_splits(8, 32, 8, 128, 2048, 132, 3352.0), 1);
  EXPECT_EQ(mk::decode_attention_num_splits(8, 32, 8, 128, 2048, 132, 4915.0), model);
  EXPECT_EQ(mk::decode_attention_num_splits(8, 32, 8, 128, 8192, 132, 3352.0), 1);
  for (double bw : {0.0, 3352.0, 4915.0}) {
    // 8 blocks: far from the peak.
    EXPECT_EQ(mk::decode_attention_num_splits(1, 32, 8, 128, 8192, 132, bw),
              mk::decode_attention_num_splits(1, 32, 8, 128, 8192, 132));
    // 128 blocks: more than one per two SMs.
    EXPECT_EQ(mk::decode_attention_num_splits(16, 32, 8, 128, 2048, 132, bw),
              mk::decode_attention_num_splits(16, 32, 8, 128, 2048, 132));
  }
}

// Parameters of a small appending decode-attention launch over the given device buffers
// (every other field at its default: one split, the launcher's kernel choice). The buffers
// must outlive the launches.
mk::DecodeAttentionParams attention_params(const Dev<Bf16>& q, const Dev<Bf16>& k_new,
                                           const Dev<Bf16>& v_new, const Dev<Bf16>& k_cache,
                                           const Dev<Bf16>& v_cache,
                                           const Dev<std::int32_t>& lens, const Dev<Bf16>& out,
                                           const Dev<char>& ws, std::size_t ws_bytes, int batch,
                                           int heads, int kv_heads, int head_dim, int max_len) {
  mk::DecodeAttentionParams p;
  p.q = q.as<mk::bf16>();
  p.k_new = k_new.as<mk::bf16>();
  p.v_new = v_new.as<mk::bf16>();
  p.k_cache = k_cache.as<mk::bf16>();
  p.v_cache = v_cache.as<mk::bf16>();
  p.kv_lens = lens.get();
  p.out = out.as<mk::bf16>();
  p.workspace = ws.get();
  p.workspace_bytes = ws_bytes;
  p.batch = batch;
  p.num_heads = heads;
  p.num_kv_heads = kv_heads;
  p.head_dim = head_dim;
  p.max_kv_len = max_len;
  return p;
}

TEST(GpuDecodeAttention, FullCacheFusedMergeGivesNaN) {
  REQUIRE_GPU();
  std::mt19937 rng(8);
  const int hd = 128, max_len = 200, heads = 8, kvh = 2, splits = 3;
  auto q = random_bf16(2 * heads * hd, rng);
  auto kc = random_bf16(std::size_t(2) * kvh * max_len * hd, rng);
  Dev<Bf16> dq(q), dkc(kc), dvc(kc), dkn(random_bf16(2 * kvh * hd, rng)),
      dvn(random_bf16(2 * kvh * hd, rng));
  Dev<std::int32_t> dlens(std::vector<std::int32_t>{150, max_len});
  Dev<Bf16> dout(q.size());
  Dev<float> dlse(2 * heads);
  const std::size_t wsb = mk::decode_attention_workspace_bytes(2, heads, hd, splits);
  Dev<char> ws(wsb);
  ASSERT_EQ(mk::decode_attention_workspace_init(ws.get(), wsb, nullptr), mk::Status::kOk);
  mk::DecodeAttentionParams p =
      attention_params(dq, dkn, dvn, dkc, dvc, dlens, dout, ws, wsb, 2, heads, kvh, hd, max_len);
  mk::DecodeAttentionExperiment ex;  // measured-and-lost variants
  p.lse = dlse.get();
  p.num_splits = splits;
  // 0: fused merge; 1, 2: cluster merge with 4 and 8 warps per block; 3, 4: the same with
  // dynamic tiles; 5: dynamic tiles with the reduce kernel.
  for (int mode : {0, 1, 2, 3, 4, 5})
    for (int rep = 0; rep < 2; ++rep) {
      SCOPED_TRACE(::testing::Message() << "mode " << mode << " rep " << rep);
      ex.fused_merge = mode == 0;
      p.split_merge = mode == 0 || mode == 5 ? 0 : 2;
      p.block_warps = mode == 2 || mode == 4 ? 8 : 0;
      ex.dynamic_splits = mode >= 3;
      dout.poison(0);
      dlse.poison(0);
      ASSERT_EQ(mk::launch_decode_attention(p, ex, nullptr), mk::Status::kOk);
      CUDA_OK(cudaDeviceSynchronize());
      const auto out = dout.download();
      const auto lse = dlse.download();
      int nan_first = 0, nan_second = 0;
      for (int i = 0; i < heads * hd; ++i) {
        nan_first += std::isnan(ref::to_float(out[i])) ? 1 : 0;
        nan_second += std::isnan(ref::to_float(out[heads * hd + i])) ? 1 : 0;
      }
      EXPECT_EQ(nan_first, 0);
      EXPECT_EQ(nan_second, heads * hd);
      for (int h = 0; h < heads; ++h) {
        EXPECT_FALSE(std::isnan(lse[h]));
        EXPECT_TRUE(std::isnan(lse[heads + h]));
      }
      expect_header_zero(ws);
    }
}

// Two splits with the cluster merge (on >= 4 TB/s cards the PAIR kernel, whose split 0 copies
// its first tile before the length is known): a full cache gives NaN for that sequence only,
// with the speculative copies drained before the blocks exit; the other sequence is correct.
TEST(GpuDecodeAttention, FullCachePairKernelGivesNaN) {
  REQUIRE_GPU();
  std::mt19937 rng(11);
  const int hd = 128, heads = 4, max_len = 200;
  auto q = random_bf16(2 * heads * hd, rng);
  auto kc = random_bf16(2 * max_len * hd, rng);
  auto vc = random_bf16(2 * max_len * hd, rng);
  auto kn = random_bf16(2 * hd, rng);
  auto vn = random_bf16(2 * hd, rng);
  Dev<Bf16> dq(q), dkc(kc), dvc(vc), dkn(kn), dvn(vn);
  Dev<std::int32_t> dlens(std::vector<std::int32_t>{150, max_len});
  Dev<Bf16> dout(2 * heads * hd);
  const std::size_t wsb = mk::decode_attention_workspace_bytes(2, heads, hd, 2);
  Dev<char> ws(wsb);
  mk::DecodeAttentionParams p =
      attention_params(dq, dkn, dvn, dkc, dvc, dlens, dout, ws, wsb, 2, heads, 1, hd, max_len);
  p.num_splits = 2;
  p.split_merge = 2;
  for (int stages : {0, 3, 4}) {
    dout.poison();
    p.pipeline_stages = stages;
    ASSERT_EQ(mk::launch_decode_attention(p, nullptr), mk::Status::kOk);
    CUDA_OK(cudaDeviceSynchronize());
    const auto out = dout.download();
    int nan_first = 0, nan_second = 0;
    for (int i = 0; i < heads * hd; ++i) {
      nan_first += std::isnan(ref::to_float(out[i])) ? 1 : 0;
      nan_second += std::isnan(ref::to_float(out[heads * hd + i])) ? 1 : 0;
    }
    EXPECT_EQ(nan_first, 0) << "stages " << stages;
    EXPECT_EQ(nan_second, heads * hd) << "stages " << stages;
    // Sequence 0 against the reference (one sequence, its new token appended).
    std::vector<Bf16> q0(q.begin(), q.begin() + heads * hd);
    std::vector<Bf16> kc0(kc.begin(), kc.begin() + max_len * hd);
    std::vector<Bf16> vc0(vc.begin(), vc.begin() + max_len * hd);
    std::vector<Bf16> kn0(kn.begin(), kn.begin() + hd), vn0(vn.begin(), vn.begin() + hd);
    auto want = ref::decode_attention(q0, kn0, vn0, kc0, vc0, std::vector<std::int32_t>{150}, heads,
                                      1, hd, max_len, 0.f);
    std::vector<Bf16> got(out.begin(), out.begin() + heads * hd);
    expect_close(got, want, 2e-2f, 2e-3f, "pair kernel, sequence 0");
  }
}

TEST(GpuDecodeAttention, FullCacheGivesNaNNotOverrun) {
  REQUIRE_GPU();
  // Sequence 1 has a full cache (len == max_len) and appends: its output must be NaN.
  std::mt19937 rng(7);
  const int hd = 64, max_len = 8;
  auto q = random_bf16(2 * hd, rng);
  auto kc = random_bf16(2 * max_len * hd, rng);
  Dev<Bf16> dq(q), dkc(kc), dvc(kc), dkn(random_bf16(2 * hd, rng)), dvn(random_bf16(2 * hd, rng));
  Dev<std::int32_t> dlens(std::vector<std::int32_t>{3, max_len});
  Dev<Bf16> dout(2 * hd);
  const std::size_t wsb = mk::decode_attention_workspace_bytes(2, 1, hd, 1);
  Dev<char> ws(wsb);
  mk::DecodeAttentionParams p =
      attention_params(dq, dkn, dvn, dkc, dvc, dlens, dout, ws, wsb, 2, 1, 1, hd, max_len);
  mk::DecodeAttentionExperiment ex;  // measured-and-lost variants
  ASSERT_EQ(mk::launch_decode_attention(p, ex, nullptr), mk::Status::kOk);
  CUDA_OK(cudaDeviceSynchronize());
  auto out = dout.download();
  EXPECT_FALSE(std::isnan(ref::to_float(out[0])));
  EXPECT_TRUE(std::isnan(ref::to_float(out[hd])));
  // The same on the tensor-core kernel.
  dout.poison();
  p.kernel_variant = 2;
  ASSERT_EQ(mk::launch_decode_attention(p, ex, nullptr), mk::Status::kOk);
  CUDA_OK(cudaDeviceSynchronize());
  out = dout.download();
  EXPECT_FALSE(std::isnan(ref::to_float(out[0])));
  EXPECT_TRUE(std::isnan(ref::to_float(out[hd])));
  p.kernel_variant = 3;
  EXPECT_THROW(mk::check_decode_attention(p, ex), std::invalid_argument);
  p.kernel_variant = 0;
  ASSERT_NO_THROW(mk::check_decode_attention(p, ex));
  p.block_warps = 6;
  EXPECT_THROW(mk::check_decode_attention(p, ex), std::invalid_argument);
  p.block_warps = 8;
  p.pipeline_stages = 4;
  EXPECT_THROW(mk::check_decode_attention(p, ex), std::invalid_argument);
  p.block_warps = 0;
  p.pipeline_stages = 0;
  p.split_merge = 3;
  EXPECT_THROW(mk::check_decode_attention(p, ex), std::invalid_argument);
  p.split_merge = 0;
  ex.dynamic_splits = true;
  ex.fused_merge = true;
  EXPECT_THROW(mk::check_decode_attention(p, ex), std::invalid_argument);
  ex.fused_merge = false;
  p.pipeline_stages = 2;
  EXPECT_THROW(mk::check_decode_attention(p, ex), std::invalid_argument);
  p.pipeline_stages = 0;
  ex.dynamic_splits = false;
  p.kernel_variant = 0;
  p.pipeline_stages = 5;
  EXPECT_THROW(mk::check_decode_attention(p, ex), std::invalid_argument);
  p.pipeline_stages = 0;
  p.head_dim = 96;
  EXPECT_THROW(mk::check_decode_attention(p, ex), std::invalid_argument);
  EXPECT_EQ(mk::launch_decode_attention(p, nullptr), mk::Status::kInvalidArgument);
}

TEST(GpuDecodeAttention, AdvanceLengths) {
  REQUIRE_GPU();
  Dev<std::int32_t> d(std::vector<std::int32_t>{0, 5, 9});
  ASSERT_EQ(mk::launch_advance_kv_lens(d.get(), 3, nullptr), mk::Status::kOk);
  EXPECT_EQ(d.download(), (std::vector<std::int32_t>{1, 6, 10}));
}

// ---------------------------------------------------------------------------------------
TEST(GpuNorm, RmsnormAndFusedResidual) {
  REQUIRE_GPU();
  std::mt19937 rng(11);
  for (auto [tokens, hidden] : {std::pair{1, 4096}, {7, 24}, {3, 8}, {2, 20480}}) {
    auto x = random_bf16(std::size_t(tokens) * hidden, rng, -3.f, 3.f);
    auto w = random_bf16(hidden, rng, 0.5f, 1.5f);
    auto res = random_bf16(x.size(), rng, -3.f, 3.f);
    Dev<Bf16> dx(x), dw(w), dres(res), dout(x.size());
    ASSERT_EQ(mk::launch_rmsnorm(dx.as<mk::bf16>(), dw.as<mk::bf16>(), dout.as<mk::bf16>(), tokens,
                                 hidden, 1e-6f, nullptr),
              mk::Status::kOk);
    CUDA_OK(cudaDeviceSynchronize());
    expect_close(dout.download(), ref::rmsnorm(x, w, tokens, hidden, 1e-6f), 1e-2f, 1e-3f,
                 "rmsnorm");
    dout.poison();
    ASSERT_EQ(mk::launch_add_rmsnorm(dres.as<mk::bf16>(), dx.as<mk::bf16>(), dw.as<mk::bf16>(),
                                     dout.as<mk::bf16>(), tokens, hidden, 1e-6f, nullptr),
              mk::Status::kOk);
    CUDA_OK(cudaDeviceSynchronize());
    auto want = ref::add_rmsnorm(res, x, w, tokens, hidden, 1e-6f);
    expect_close(dout.download(), want, 1e-2f, 1e-3f, "add_rmsnorm out");
    expect_close(dres.download(), ref::to_float(res), 0.f, 0.f, "add_rmsnorm residual");
  }
  EXPECT_THROW(mk::check_rmsnorm(nullptr, nullptr, nullptr, 1, 12), std::invalid_argument);
}

TEST(GpuRope, FusedQkvBufferWithStrides) {
  REQUIRE_GPU();
  std::mt19937 rng(12);
  for (int hd : {128, 64}) {
    const int tokens = 5, heads = 4, kvh = 2, row = (heads + 2 * kvh) * hd;
    auto qkv = random_bf16(std::size_t(tokens) * row, rng);
    std::vector<std::int32_t> pos = {0, 1, 17, 4095, 8000};
    Dev<Bf16> d(qkv);
    Dev<std::int32_t> dpos(pos);
    mk::RopeParams p;
    p.q = d.as<mk::bf16>();
    p.q_stride = row;
    p.k = d.as<mk::bf16>() + heads * hd;
    p.k_stride = row;
    p.positions = dpos.get();
    p.tokens = tokens;
    p.num_heads = heads;
    p.num_kv_heads = kvh;
    p.head_dim = hd;
    ASSERT_NO_THROW(mk::check_rope(p));
    ASSERT_EQ(mk::launch_rope(p, nullptr), mk::Status::kOk);
    CUDA_OK(cudaDeviceSynchronize());
    // Reference on the q and k slices; v must be untouched.
    std::vector<Bf16> q(std::size_t(tokens) * heads * hd), k(std::size_t(tokens) * kvh * hd);
    for (int t = 0; t < tokens; ++t) {
      std::copy_n(qkv.begin() + t * row, heads * hd, q.begin() + t * heads * hd);
      std::copy_n(qkv.begin() + t * row + heads * hd, kvh * hd, k.begin() + t * kvh * hd);
    }
    auto wq = ref::rope(q, pos, tokens, heads, hd, 10000.f);
    auto wk = ref::rope(k, pos, tokens, kvh, hd, 10000.f);
    std::vector<float> want = ref::to_float(qkv);
    for (int t = 0; t < tokens; ++t) {
      std::copy_n(wq.begin() + t * heads * hd, heads * hd, want.begin() + t * row);
      std::copy_n(wk.begin() + t * kvh * hd, kvh * hd, want.begin() + t * row + heads * hd);
    }
    expect_close(d.download(), want, 1e-2f, 5e-3f, "rope");
  }
}

TEST(GpuActivation, SwigluAndGelu) {
  REQUIRE_GPU();
  std::mt19937 rng(13);
  for (auto [rows, ffn] : {std::pair{1, 8}, {33, 14336 / 4}, {5, 24}}) {
    auto in = random_bf16(std::size_t(rows) * 2 * ffn, rng, -4.f, 4.f);
    Dev<Bf16> din(in), dout(std::size_t(rows) * ffn);
    ASSERT_EQ(mk::launch_swiglu(din.as<mk::bf16>(), dout.as<mk::bf16>(), rows, ffn, nullptr),
              mk::Status::kOk);
    CUDA_OK(cudaDeviceSynchronize());
    expect_close(dout.download(), ref::swiglu(in, rows, ffn), 1e-2f, 1e-3f, "swiglu");
    std::vector<Bf16> g(in.begin(), in.begin() + std::size_t(rows) * ffn);
    Dev<Bf16> dg(g), dgo(g.size());
    ASSERT_EQ(mk::launch_gelu(dg.as<mk::bf16>(), dgo.as<mk::bf16>(), rows, ffn, nullptr),
              mk::Status::kOk);
    CUDA_OK(cudaDeviceSynchronize());
    expect_close(dgo.download(), ref::gelu(g, rows, ffn), 1e-2f, 1e-3f, "gelu");
  }
}

// ---------------------------------------------------------------------------------------
TEST(GpuRouter, TopKMatchesReference) {
  REQUIRE_GPU();
  std::mt19937 rng(14);
  struct C {
    int tokens, experts, k;
    bool bf16_logits;
    bool renorm;
  };
  for (C c : {C{1, 16, 2, false, true}, C{256, 16, 2, false, true}, C{37, 8, 1, true, false},
              C{100, 256, 8, true, true}, C{2000, 60, 4, false, true}, C{33, 5, 5, false, true},
              // 1024 tokens with <= 32 experts (used to fail to launch), the few-experts
              // kernel's one-block limit (512) and beyond it, the wide kernel's (1024).
              C{1024, 16, 2, false, true}, C{1024, 32, 2, true, true}, C{1024, 32, 8, false, false},
              C{512, 16, 2, true, true}, C{513, 32, 2, false, true}, C{1000, 16, 2, true, true},
              C{1025, 16, 2, false, true}, C{1024, 33, 2, false, true}}) {
    auto logits = random_f32(std::size_t(c.tokens) * c.experts, rng, -4.f, 4.f);
    std::vector<Bf16> lb = ref::to_bf16(logits);
    if (c.bf16_logits) logits = ref::to_float(lb);
    Dev<float> dl32(logits);
    Dev<Bf16> dl16(lb);
    Dev<std::int32_t> ids(std::size_t(c.tokens) * c.k), counts(c.experts);
    Dev<float> w(std::size_t(c.tokens) * c.k);
    counts.poison(0x7f);  // nonzero garbage: the launch must zero it
    mk::RouterParams p;
    p.logits = c.bf16_logits ? static_cast<const void*>(dl16.get()) : dl32.get();
    p.logits_dtype = c.bf16_logits ? mk::DType::kBF16 : mk::DType::kF32;
    p.topk_ids = ids.get();
    p.topk_weights = w.get();
    p.expert_counts = counts.get();
    p.tokens = c.tokens;
    p.num_experts = c.experts;
    p.k = c.k;
    p.renormalize = c.renorm;
    ASSERT_NO_THROW(mk::check_router(p));
    ASSERT_EQ(mk::launch_router_topk(p, nullptr), mk::Status::kOk);
    CUDA_OK(cudaDeviceSynchronize());
    auto want = ref::router_topk(logits, c.tokens, c.experts, c.k, c.renorm);
    EXPECT_EQ(ids.download(), want.topk_ids) << c.tokens << "x" << c.experts;
    EXPECT_EQ(counts.download(), want.expert_counts) << c.tokens << "x" << c.experts;
    expect_close(w.download(), want.topk_weights, 1e-4f, 1e-6f, "router weights");
  }
  mk::RouterParams bad;
  bad.tokens = 1;
  bad.num_experts = 300;
  bad.k = 2;
  EXPECT_THROW(mk::check_router(bad), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------
namespace {

void run_permute_combine(int tokens, int experts, int k, int hidden, int capacity,
                         const std::vector<std::int32_t>& ids, std::uint32_t seed) {
  std::mt19937 rng(seed);
  auto x = random_bf16(std::size_t(tokens) * hidden, rng);
  std::vector<std::int32_t> counts(experts, 0);
  for (int id : ids) ++counts[id];
  const std::int64_t rows = mk::permuted_rows(tokens, k, experts, capacity);
  Dev<Bf16> dx(x), dpx(rows * hidden);
  Dev<std::int32_t> dids(ids), dcounts(counts), dprow(ids.size()), dsrc(rows), doff(experts + 1);
  dprow.poison(0x7f);
  dsrc.poison(0x7f);
  doff.poison(0x7f);
  mk::PermuteParams p;
  p.x = dx.as<mk::bf16>();
  p.topk_ids = dids.get();
  p.expert_counts = dcounts.get();
  p.permuted_x = dpx.as<mk::bf16>();
  p.permuted_row = dprow.get();
  p.source_token = dsrc.get();
  p.expert_offsets = doff.get();
  p.tokens = tokens;
  p.hidden = hidden;
  p.num_experts = experts;
  p.k = k;
  p.capacity = capacity;
  ASSERT_NO_THROW(mk::check_permute(p));
  ASSERT_EQ(mk::launch_permute(p, nullptr), mk::Status::kOk);
  CUDA_OK(cudaDeviceSynchronize());
  auto want = ref::permute(x, ids, tokens, hidden, experts, k, capacity);
  EXPECT_EQ(dprow.download(), want.permuted_row);
  EXPECT_EQ(dsrc.download(), want.source_token);
  EXPECT_EQ(doff.download(), want.expert_offsets);
  auto px = dpx.download();
  for (std::int64_t r = 0; r < rows; ++r) {
    if (want.source_token[r] < 0) continue;  // unwritten row: left as it was
    ASSERT_EQ(0, std::memcmp(px.data() + r * hidden, want.permuted_x.data() + r * hidden,
                             hidden * sizeof(Bf16)))
        << "row " << r;
  }

  // Combine: random expert outputs for every row, random weights, with and without residual.
  auto eo = random_bf16(rows * hidden, rng, -2.f, 2.f);
  auto w = random_f32(ids.size(), rng, 0.05f, 1.f);
  auto res = random_bf16(x.size(), rng);
  Dev<Bf16> deo(eo), dres(res), dout(x.size());
  Dev<float> dw(w);
  for (bool with_res : {false, true}) {
    dout.poison();
    mk::CombineParams c;
    c.expert_out = deo.as<mk::bf16>();
    c.permuted_row = dprow.get();
    c.topk_weights = dw.get();
    c.residual = with_res ? dres.as<mk::bf16>() : nullptr;
    c.out = dout.as<mk::bf16>();
    c.tokens = tokens;
    c.hidden = hidden;
    c.k = k;
    ASSERT_NO_THROW(mk::check_combine(c));
    ASSERT_EQ(mk::launch_combine(c, nullptr), mk::Status::kOk);
    CUDA_OK(cudaDeviceSynchronize());
    auto wc = ref::combine(eo, want.permuted_row, w, with_res ? res : std::vector<Bf16>{}, tokens,
                           hidden, k);
    expect_close(dout.download(), wc, 1e-2f, 1e-3f, "combine");
  }
}

std::vector<std::int32_t> random_ids(int tokens, int experts, int k, std::mt19937& rng) {
  std::vector<std::int32_t> ids;
  std::vector<int> e(experts);
  for (int t = 0; t < tokens; ++t) {
    for (int i = 0; i < experts; ++i) e[i] = i;
    std::shuffle(e.begin(), e.end(), rng);
    ids.insert(ids.end(), e.begin(), e.begin() + k);
  }
  return ids;
}

}  // namespace

TEST(GpuPermute, PackedRandomRouting) {
  REQUIRE_GPU();
  std::mt19937 rng(15);
  run_permute_combine(256, 16, 2, 4096, 0, random_ids(256, 16, 2, rng), 16);
  run_permute_combine(1, 8, 2, 64, 0, random_ids(1, 8, 2, rng), 17);  // most experts get none
  run_permute_combine(77, 256, 8, 24, 0, random_ids(77, 256, 8, rng), 18);
}

// Both launch paths: the fused one-kernel path (tokens*k <= 4096 and <= 256 experts) at its
// limit, and the plan + gather path beyond it (more assignments, more experts), packed and
// with capacity drops.
TEST(GpuPermute, FusedAndTwoKernelPaths) {
  REQUIRE_GPU();
  std::mt19937 rng(23);
  run_permute_combine(2048, 16, 2, 64, 0, random_ids(2048, 16, 2, rng), 24);    // fused, n=4096
  run_permute_combine(2100, 16, 2, 64, 0, random_ids(2100, 16, 2, rng), 25);    // two kernels
  run_permute_combine(2100, 16, 2, 64, 200, random_ids(2100, 16, 2, rng), 26);  // + capacity
  run_permute_combine(50, 300, 2, 32, 0, random_ids(50, 300, 2, rng), 27);      // 300 experts
  run_permute_combine(900, 64, 4, 40, 50, random_ids(900, 64, 4, rng), 28);     // fused + cap
}

TEST(GpuPermute, OneExpertTakesAllAndCapacityDrops) {
  REQUIRE_GPU();
  // k = 1, every token to expert 3 of 8; then capacity 10 drops all but the first 10.
  std::vector<std::int32_t> ids(45, 3);
  run_permute_combine(45, 8, 1, 128, 0, ids, 19);
  run_permute_combine(45, 8, 1, 128, 10, ids, 20);
  std::mt19937 rng(21);
  run_permute_combine(40, 4, 2, 32, 24, random_ids(40, 4, 2, rng), 22);
}

// ---------------------------------------------------------------------------------------
TEST(GpuExpertFfn, PackedAndUniformMatchReference) {
  REQUIRE_GPU();
  std::mt19937 rng(23);
  cublasHandle_t h;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const int experts = 4, hidden = 256, ffn = 136;
  // Expert 0: 1 row, expert 1: none, expert 2: 37 rows, expert 3: 5 rows.
  const std::vector<std::int32_t> off = {0, 1, 1, 38, 43};
  const int rows = off.back();
  for (auto act : {mk::Activation::kSwiGLU, mk::Activation::kGELU}) {
    const bool sw = act == mk::Activation::kSwiGLU;
    const int up = sw ? 2 * ffn : ffn;
    auto x = random_bf16(std::size_t(rows) * hidden, rng);
    auto wu = random_bf16(std::size_t(experts) * up * hidden, rng, -0.15f, 0.15f);
    auto wd = random_bf16(std::size_t(experts) * hidden * ffn, rng, -0.15f, 0.15f);
    Dev<Bf16> dx(x), dwu(wu), dwd(wd), dout(std::size_t(rows) * hidden);
    mk::ExpertFfnShape s{experts, hidden, ffn, act};
    ASSERT_NO_THROW(mk::check_expert_ffn(s));
    const std::size_t wsb = mk::expert_ffn_workspace_bytes(s, rows);
    Dev<char> ws(wsb);
    mk::ExpertFfnWeights w{dwu.as<mk::bf16>(), dwd.as<mk::bf16>()};
    ASSERT_EQ(mk::run_expert_ffn(h, nullptr, s, w, dx.as<mk::bf16>(), dout.as<mk::bf16>(),
                                 off.data(), ws.get(), wsb),
              mk::Status::kOk);
    CUDA_OK(cudaDeviceSynchronize());
    auto want = ref::expert_ffn(x, wu, wd, off, experts, hidden, ffn, sw);
    const float scale = max_abs(want);
    expect_close(dout.download(), want, 2e-2f, 1e-2f * scale, sw ? "ffn swiglu" : "ffn gelu");

    // Uniform layout: capacity 40, expert e's rows copied to [e*40, e*40 + n_e).
    const int cap = 40;
    std::vector<Bf16> xu(std::size_t(experts) * cap * hidden, Bf16{0x3f80});
    std::vector<std::int32_t> uoff(experts + 1);
    std::vector<Bf16> xp;  // packed rows that fit the capacity, for the reference
    for (int e = 0; e < experts; ++e) {
      const int n = std::min(cap, off[e + 1] - off[e]);
      uoff[e + 1] = uoff[e] + n;
      std::copy_n(x.begin() + std::size_t(off[e]) * hidden, std::size_t(n) * hidden,
                  xu.begin() + std::size_t(e) * cap * hidden);
      xp.insert(xp.end(), x.begin() + std::size_t(off[e]) * hidden,
                x.begin() + std::size_t(off[e] + n) * hidden);
    }
    Dev<Bf16> dxu(xu), douu(xu.size());
    const std::size_t wsu = mk::expert_ffn_workspace_bytes(s, std::int64_t{experts} * cap);
    Dev<char> ws2(wsu);
    ASSERT_EQ(mk::run_expert_ffn_uniform(h, nullptr, s, w, dxu.as<mk::bf16>(), douu.as<mk::bf16>(),
                                         cap, ws2.get(), wsu),
              mk::Status::kOk);
    CUDA_OK(cudaDeviceSynchronize());
    auto wu_ref = ref::expert_ffn(xp, wu, wd, uoff, experts, hidden, ffn, sw);
    auto got = douu.download();
    std::vector<Bf16> gp;
    for (int e = 0; e < experts; ++e) {
      gp.insert(gp.end(), got.begin() + std::size_t(e) * cap * hidden,
                got.begin() + (std::size_t(e) * cap + (uoff[e + 1] - uoff[e])) * hidden);
    }
    expect_close(gp, wu_ref, 2e-2f, 1e-2f * max_abs(wu_ref), "ffn uniform");
  }
  cublasDestroy(h);
}

// ---------------------------------------------------------------------------------------
// The grouped decode GEMM against the CPU reference: every variant (CUDA cores at 1 and 2
// rows; tensor cores with 8-, 16- and 32-row tiles, and a group of more than 32 rows in two
// passes), empty groups, weights at scattered offsets with gaps, n not a multiple of the
// columns per block or of the 16-column tile, k not a multiple of the 32- or 256-element
// blocks.
TEST(GpuGroupedGemm, MatchesReferenceForEveryRowCountBranch) {
  REQUIRE_GPU();
  std::mt19937 rng(31);
  const int n = 138;
  // k = 1040: few blocks and k ≥ 8 × 128, so the tensor-core cases split k over 8 warps.
  for (const int k : {264, 1040}) {
    const std::vector<std::vector<int>> cases = {{1, 0, 1, 1},    {2, 1, 0, 2},   {3, 0, 0, 4},
                                                 {7, 8, 1, 0, 5}, {16, 9, 0, 13}, {37, 0, 5, 16, 1},
                                                 {20, 3, 31},     {0, 0, 0}};
    for (const auto& counts : cases) {
      std::vector<std::int32_t> roff = {0};
      std::vector<std::int64_t> woff;
      std::int64_t wlen = 0;
      for (std::size_t g = 0; g < counts.size(); ++g) {
        roff.push_back(roff.back() + counts[g]);
        woff.push_back(wlen + 8 * static_cast<std::int64_t>(g));  // a gap before every group
        wlen = woff.back() + std::int64_t{n} * k;
      }
      const int rows = roff.back();
      auto x = random_bf16(std::max<std::size_t>(1, std::size_t(rows) * k), rng);
      auto w = random_bf16(std::size_t(wlen), rng, -0.2f, 0.2f);
      Dev<Bf16> dx(x), dw(w), dy(std::max<std::size_t>(1, std::size_t(rows) * n));
      mk::GroupedGemmArgs a;
      a.w_base = dw.as<mk::bf16>();
      a.groups = static_cast<int>(counts.size());
      a.n = n;
      a.k = k;
      for (int g = 0; g < a.groups; ++g) {
        a.w_offset[g] = woff[g];
        a.row_offset[g] = roff[g];
      }
      a.row_offset[a.groups] = roff.back();
      ASSERT_EQ(mk::launch_grouped_gemm(a, dx.as<mk::bf16>(), dy.as<mk::bf16>(), nullptr),
                mk::Status::kOk);
      CUDA_OK(cudaDeviceSynchronize());
      if (rows == 0) {
        // Nothing launched: the poisoned output stays poisoned (all 0xFF bytes).
        EXPECT_EQ(dy.download()[0].bits, 0xFFFF);
        continue;
      }
      auto want = ref::grouped_gemm(x, w, woff, roff, n, k);
      auto got = dy.download();
      got.resize(want.size());
      expect_close(got, want, 1e-2f, 1e-2f * max_abs(want), "grouped gemm");
    }
  }
  // Invalid arguments are refused, not launched.
  mk::GroupedGemmArgs bad;
  Dev<Bf16> d(1024);
  bad.w_base = d.as<mk::bf16>();
  bad.groups = 1;
  bad.n = 8;
  bad.k = 12;  // not a multiple of 8
  bad.row_offset[1] = 1;
  EXPECT_EQ(mk::launch_grouped_gemm(bad, d.as<mk::bf16>(), d.as<mk::bf16>(), nullptr),
            mk::Status::kInvalidArgument);
  bad.k = 16;
  bad.w_offset[0] = 4;  // not 16-byte aligned
  EXPECT_EQ(mk::launch_grouped_gemm(bad, d.as<mk::bf16>(), d.as<mk::bf16>(), nullptr),
            mk::Status::kInvalidArgument);
  bad.w_offset[0] = 0;
  bad.groups = mk::kGroupedGemmMaxGroups + 1;
  EXPECT_EQ(mk::launch_grouped_gemm(bad, d.as<mk::bf16>(), d.as<mk::bf16>(), nullptr),
            mk::Status::kInvalidArgument);
}

// FP8 block-scaled weights (W8A16) against the CPU reference: every variant as above (k split
// over warps included) plus the 64-row tile (one group of 70 rows: two passes, as an attention
// projection of 70 tokens) and weights that are all subnormal e4m3 codes; n = 138 crosses a
// 128-row scale block, k = 272 has two full 128-wide k blocks and a partial one;
// random e4m3 bytes (normals and subnormals of both signs, no NaN codes) and a different
// scale per block, so a kernel that decoded, permuted or scaled wrongly fails.
TEST(GpuGroupedGemm, Fp8BlockScaledMatchesReference) {
  REQUIRE_GPU();
  std::mt19937 rng(47);
  const int n = 138;
  // k = 1040: few blocks and k ≥ 8 × 128, so the tensor-core cases split k over 8 warps.
  for (const int k : {272, 1040}) {
    const std::int64_t wbytes = mk::weight_bytes(mk::WeightFormat::kFP8Block, n, k);
    const int kb = (k + 127) / 128, nb = (n + 127) / 128;
    const std::vector<std::vector<int>> cases = {
        {1, 0, 1, 1},   {2, 1, 0, 2},      {3, 0, 0, 4}, {7, 8, 1, 0, 5},
        {16, 9, 0, 13}, {37, 0, 5, 16, 1}, {20, 3, 31},  {70}, {9, 2}};
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> sdist(0.002f, 0.02f);
    for (const auto& counts : cases) {
      std::vector<std::int32_t> roff = {0};
      std::vector<std::int64_t> woff;
      std::int64_t wlen = 0;
      for (std::size_t g = 0; g < counts.size(); ++g) {
        roff.push_back(roff.back() + counts[g]);
        woff.push_back(wlen + 16 * static_cast<std::int64_t>(g));  // a gap before every group
        wlen = woff.back() + wbytes;
      }
      std::vector<std::uint8_t> w(static_cast<std::size_t>(wlen));
      for (auto& b : w) {
        b = static_cast<std::uint8_t>(byte(rng));
        if ((b & 0x7f) == 0x7f) b ^= 1;  // no NaN codes
        // The last case has only subnormal e4m3 codes (exponent 0): their decoding alone
        // decides the result, so a kernel that read them as normals would fail.
        if (&counts == &cases.back()) b &= 0x87;
      }
      for (std::size_t g = 0; g < counts.size(); ++g) {
        for (int i = 0; i < nb * kb; ++i) {
          const float sc = sdist(rng);
          std::memcpy(w.data() + woff[g] + std::int64_t{n} * k + 4 * i, &sc, 4);
        }
      }
      const int rows = roff.back();
      auto x = random_bf16(std::size_t(rows) * k, rng);
      Dev<Bf16> dx(x), dy(std::size_t(rows) * n);
      Dev<std::uint8_t> dw(w);
      mk::GroupedGemmArgs a;
      a.w_base = dw.as<std::uint8_t>();
      a.format = mk::WeightFormat::kFP8Block;
      a.groups = static_cast<int>(counts.size());
      a.n = n;
      a.k = k;
      for (int g = 0; g < a.groups; ++g) {
        a.w_offset[g] = woff[g];
        a.row_offset[g] = roff[g];
      }
      a.row_offset[a.groups] = roff.back();
      ASSERT_EQ(mk::launch_grouped_gemm(a, dx.as<mk::bf16>(), dy.as<mk::bf16>(), nullptr),
                mk::Status::kOk);
      CUDA_OK(cudaDeviceSynchronize());
      auto want = ref::grouped_gemm_fp8(x, w, woff, roff, n, k);
      auto got = dy.download();
      got.resize(want.size());
      expect_close(got, want, 1e-2f, 1e-2f * max_abs(want), "fp8 grouped gemm");
    }
  }
  // FP8 needs k % 16 == 0 and 16-byte offsets.
  Dev<std::uint8_t> d(4096);
  mk::GroupedGemmArgs bad;
  bad.w_base = d.as<std::uint8_t>();
  bad.format = mk::WeightFormat::kFP8Block;
  bad.groups = 1;
  bad.n = 8;
  bad.k = 24;
  bad.row_offset[1] = 1;
  Dev<Bf16> dx(64), dy(64);
  EXPECT_EQ(mk::launch_grouped_gemm(bad, dx.as<mk::bf16>(), dy.as<mk::bf16>(), nullptr),
            mk::Status::kInvalidArgument);
  bad.k = 32;
  bad.w_offset[0] = 8;
  EXPECT_EQ(mk::launch_grouped_gemm(bad, dx.as<mk::bf16>(), dy.as<mk::bf16>(), nullptr),
            mk::Status::kInvalidArgument);
  bad.w_offset[0] = 16;
  EXPECT_EQ(mk::launch_grouped_gemm(bad, dx.as<mk::bf16>(), dy.as<mk::bf16>(), nullptr),
            mk::Status::kOk);
}

// ---------------------------------------------------------------------------------------
// MLA decode attention (mla_attention.hpp) against ref::mla_decode_attention.
namespace {

constexpr int kKl = mk::kMlaLatentDim;
constexpr int kDr = mk::kMlaRopeDim;

struct MlaCase {
  int heads;
  std::vector<int> lens;  // tokens in cache before the step
  int max_len;
  int splits;  // 0: mla_attention_num_splits(..., 132 SMs)
  bool append = true;
  float scale = 0.0722f;    // about DeepSeek-V3's 1/sqrt(192) x mscale
  bool head_major = false;  // q_lat [heads][batch][512] and out [heads][batch][512] (strided)
  int tile = 0;             // MlaAttentionParams::tile_tokens
};

// One launch on fresh random data, outputs poisoned; out, lse and the whole cache compared.
// The rope part of q is drawn 4x wider than the latent part so that a kernel dropping it (or
// mixing the two) misses by far more than the tolerance.
void run_mla(const MlaCase& c, std::uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << "heads " << c.heads << " batch " << c.lens.size()
                                    << " splits " << c.splits << " scale " << c.scale << " tile "
                                    << c.tile << (c.head_major ? " head-major" : ""));
  std::mt19937 rng(seed);
  const int batch = static_cast<int>(c.lens.size());
  const std::size_t row = kKl + kDr;
  const std::size_t cache_n = std::size_t(batch) * c.max_len * row;
  auto q_lat = random_bf16(std::size_t(batch) * c.heads * kKl, rng);
  auto q_rope = random_bf16(std::size_t(batch) * c.heads * kDr, rng, -4.f, 4.f);
  auto cache = random_bf16(cache_n, rng);
  std::vector<Bf16> c_new, r_new;
  if (c.append) {
    c_new = random_bf16(std::size_t(batch) * kKl, rng);
    r_new = random_bf16(std::size_t(batch) * kDr, rng);
  }
  // Device q_lat / out: [batch][heads][512] or head-major [heads][batch][512].
  auto to_head_major = [&](const std::vector<Bf16>& v) {
    std::vector<Bf16> hm(v.size());
    for (int b = 0; b < batch; ++b) {
      for (int h = 0; h < c.heads; ++h) {
        std::memcpy(&hm[(std::size_t(h) * batch + b) * kKl],
                    &v[(std::size_t(b) * c.heads + h) * kKl], kKl * sizeof(Bf16));
      }
    }
    return hm;
  };
  Dev<Bf16> dql(c.head_major ? to_head_major(q_lat) : q_lat), dqr(q_rope), dcache(cache),
      dcn(c_new), drn(r_new);
  Dev<std::int32_t> dlens(std::vector<std::int32_t>(c.lens.begin(), c.lens.end()));
  Dev<Bf16> dout(std::size_t(batch) * c.heads * kKl);
  Dev<float> dlse(std::size_t(batch) * c.heads);
  const int max_ctx = *std::max_element(c.lens.begin(), c.lens.end()) + (c.append ? 1 : 0);
  const int splits =
      c.splits > 0 ? c.splits : mk::mla_attention_num_splits(batch, c.heads, max_ctx, 132);
  const std::size_t ws_bytes = mk::mla_attention_workspace_bytes(batch, c.heads, splits);
  Dev<char> ws(ws_bytes);
  mk::MlaAttentionParams p;
  p.q_lat = dql.as<mk::bf16>();
  if (c.head_major) {
    p.q_lat_seq_stride = kKl;
    p.q_lat_head_stride = std::int64_t{batch} * kKl;
    p.out_seq_stride = kKl;
    p.out_head_stride = std::int64_t{batch} * kKl;
  }
  p.q_rope = dqr.as<mk::bf16>();
  p.c_kv_new = c.append ? dcn.as<mk::bf16>() : nullptr;
  p.k_rope_new = c.append ? drn.as<mk::bf16>() : nullptr;
  p.kv_cache = dcache.as<mk::bf16>();
  p.kv_lens = dlens.get();
  p.out = dout.as<mk::bf16>();
  p.lse = dlse.get();
  p.workspace = ws_bytes ? ws.get() : nullptr;
  p.workspace_bytes = ws_bytes;
  p.batch = batch;
  p.num_heads = c.heads;
  p.max_kv_len = c.max_len;
  p.num_splits = splits;
  p.scale = c.scale;
  p.tile_tokens = c.tile;
  ASSERT_NO_THROW(mk::check_mla_attention(p));
  ASSERT_EQ(mk::launch_mla_attention(p, nullptr), mk::Status::kOk);
  CUDA_OK(cudaDeviceSynchronize());

  std::vector<float> lse_ref;
  auto want = ref::mla_decode_attention(q_lat, q_rope, c_new, r_new, cache,
                                        std::vector<std::int32_t>(c.lens.begin(), c.lens.end()),
                                        c.heads, kKl, kDr, c.max_len, c.scale, &lse_ref);
  auto got = dout.download();
  if (c.head_major) {  // back to [batch][heads][512]
    std::vector<Bf16> bm(got.size());
    for (int b = 0; b < batch; ++b) {
      for (int h = 0; h < c.heads; ++h) {
        std::memcpy(&bm[(std::size_t(b) * c.heads + h) * kKl],
                    &got[(std::size_t(h) * batch + b) * kKl], kKl * sizeof(Bf16));
      }
    }
    got = bm;
  }
  // Tolerance: bf16 output rounding (2^-9 relative) plus P rounded to bf16 before P V (a
  // random error of ~2^-9 / sqrt(tokens) of the values); the outputs are weighted means of
  // values in [-1, 1], so the absolute part scales with the largest output (long contexts
  // average to small outputs). A wrong token, head or missing tile also moves lse.
  expect_close(got, want, 1e-2f, 4e-3f * max_abs(want) + 1e-5f, "mla out");
  expect_close(dlse.download(), lse_ref, 1e-4f, 2e-3f, "mla lse");
  auto cache_gpu = dcache.download();
  EXPECT_EQ(0, std::memcmp(cache_gpu.data(), cache.data(), cache_n * sizeof(Bf16)))
      << "cache after the step (new token appended, nothing else)";
}

}  // namespace

// 16 heads a block (TP-8 DeepSeek-V3 ranks): ragged lengths incl. an empty cache, one split,
// the model's split count, and more splits than a short sequence has tiles (empty splits).
TEST(GpuMlaAttention, SixteenHeadsRaggedLengths) {
  REQUIRE_GPU();
  run_mla({16, {0, 37, 300}, 320, 1}, 101);
  run_mla({16, {1000, 63, 5}, 1024, 0}, 102);
  run_mla({16, {2, 700}, 720, 7}, 103);
  run_mla({16, {64, 127, 128, 191}, 256, 2}, 104);  // lengths at tile edges
}

// 128 heads (data-parallel attention: two 64-head blocks share each tile), 32- and 64-head
// blocks with partial row groups (8, 40, 80 heads), and heads < 16.
TEST(GpuMlaAttention, HeadBlocksAndPartialRows) {
  REQUIRE_GPU();
  run_mla({128, {200, 7}, 256, 3}, 111);
  run_mla({128, {511, 33, 0}, 600, 1}, 112);
  run_mla({32, {129, 0, 64}, 200, 1}, 113);
  run_mla({32, {129, 0, 64}, 200, 4}, 114);
  run_mla({40, {90, 300}, 320, 2}, 115);
  run_mla({80, {90, 300}, 320, 0}, 116);
  run_mla({8, {17, 250}, 256, 1}, 117);
  run_mla({1, {3, 100}, 128, 2}, 118);
}

// Long contexts with a small batch (many splits, the reduce kernel), no append, the
// absorbed-K grouped GEMM's head-major q layout with a head-major output, and a large scale
// (peaked softmax: a kernel attending to the wrong token fails).
TEST(GpuMlaAttention, LongContextsLayoutsAndScales) {
  REQUIRE_GPU();
  run_mla({128, {4000}, 4096, 0}, 121);
  run_mla({16, {8191, 3000}, 8192, 0}, 122);
  run_mla({16, {40, 1}, 64, 1, false}, 123);
  run_mla({128, {300, 17}, 320, 3, false}, 124);
  {
    MlaCase c{128, {250, 3, 77}, 256, 2};
    c.head_major = true;
    run_mla(c, 125);
    c.splits = 1;
    c.heads = 16;
    run_mla(c, 126);
  }
  {
    MlaCase c{64, {500, 20}, 512, 2};
    c.scale = 0.4f;
    run_mla(c, 127);
    c.splits = 1;
    run_mla(c, 128);
  }
}

// Forced tile sizes: 64-token tiles for 64-head blocks (2 stages), 32-token tiles for 16- and
// 32-head blocks (3 stages; 16 heads then run in 32-head blocks), split boundaries on them.
TEST(GpuMlaAttention, ForcedTileSizes) {
  REQUIRE_GPU();
  auto tiled = [](MlaCase c, int tile) {
    c.tile = tile;
    return c;
  };
  run_mla(tiled({128, {200, 7, 64}, 256, 1}, 64), 141);
  run_mla(tiled({128, {1000, 31}, 1024, 5}, 64), 142);
  run_mla(tiled({80, {90, 300}, 320, 2}, 64), 143);
  run_mla(tiled({16, {0, 37, 300}, 320, 1}, 32), 144);
  run_mla(tiled({16, {1000, 63, 5}, 1024, 6}, 32), 145);
  run_mla(tiled({40, {129, 0, 64}, 200, 3}, 32), 146);
  run_mla(tiled({128, {511, 33}, 600, 4}, 32), 147);
}

// A sequence whose cache is full gets NaN (one split and several); its neighbours are right and
// no cache byte outside their new slots changes.
TEST(GpuMlaAttention, FullCacheGivesNaNNotOverrun) {
  REQUIRE_GPU();
  for (int splits : {1, 3}) {
    const int batch = 2, heads = 16, max_len = 128;
    std::mt19937 rng(131 + splits);
    const std::size_t row = kKl + kDr;
    auto q_lat = random_bf16(std::size_t(batch) * heads * kKl, rng);
    auto q_rope = random_bf16(std::size_t(batch) * heads * kDr, rng);
    auto cache = random_bf16(std::size_t(batch) * max_len * row, rng);
    auto c_new = random_bf16(std::size_t(batch) * kKl, rng);
    auto r_new = random_bf16(std::size_t(batch) * kDr, rng);
    Dev<Bf16> dql(q_lat), dqr(q_rope), dcache(cache), dcn(c_new), drn(r_new);
    Dev<std::int32_t> dlens(std::vector<std::int32_t>{max_len, 50});  // sequence 0 is full
    Dev<Bf16> dout(q_lat.size());
    Dev<float> dlse(std::size_t(batch) * heads);
    const std::size_t wsb = mk::mla_attention_workspace_bytes(batch, heads, splits);
    Dev<char> ws(wsb);
    mk::MlaAttentionParams p;
    p.q_lat = dql.as<mk::bf16>();
    p.q_rope = dqr.as<mk::bf16>();
    p.c_kv_new = dcn.as<mk::bf16>();
    p.k_rope_new = drn.as<mk::bf16>();
    p.kv_cache = dcache.as<mk::bf16>();
    p.kv_lens = dlens.get();
    p.out = dout.as<mk::bf16>();
    p.lse = dlse.get();
    p.workspace = wsb ? ws.get() : nullptr;
    p.workspace_bytes = wsb;
    p.batch = batch;
    p.num_heads = heads;
    p.max_kv_len = max_len;
    p.num_splits = splits;
    p.scale = 0.07f;
    ASSERT_EQ(mk::launch_mla_attention(p, nullptr), mk::Status::kOk);
    CUDA_OK(cudaDeviceSynchronize());
    auto out = dout.download();
    auto lse = dlse.download();
    for (int i = 0; i < heads * kKl; ++i) ASSERT_TRUE(std::isnan(ref::to_float(out[i]))) << i;
    for (int h = 0; h < heads; ++h) EXPECT_TRUE(std::isnan(lse[h]));
    // Sequence 1 against the reference alone.
    std::vector<Bf16> q1(q_lat.begin() + heads * kKl, q_lat.end());
    std::vector<Bf16> r1(q_rope.begin() + heads * kDr, q_rope.end());
    std::vector<Bf16> c1(cache.begin() + max_len * row, cache.end());
    std::vector<Bf16> cn1(c_new.begin() + kKl, c_new.end()), rn1(r_new.begin() + kDr, r_new.end());
    auto want =
        ref::mla_decode_attention(q1, r1, cn1, rn1, c1, {50}, heads, kKl, kDr, max_len, 0.07f);
    std::vector<Bf16> got1(out.begin() + heads * kKl, out.end());
    expect_close(got1, want, 1e-2f, 4e-3f, "mla out of the healthy sequence");
    auto cache_gpu = dcache.download();
    EXPECT_EQ(0, std::memcmp(cache_gpu.data(), cache.data(), max_len * row * sizeof(Bf16)))
        << "the full sequence's cache changed";
    EXPECT_EQ(0, std::memcmp(cache_gpu.data() + max_len * row, c1.data(), c1.size() * sizeof(Bf16)))
        << "the healthy sequence's cache";
  }
}

TEST(GpuMlaAttention, RefusesBadArguments) {
  REQUIRE_GPU();
  Dev<Bf16> d(1 << 16);
  Dev<std::int32_t> lens(std::vector<std::int32_t>{1});
  mk::MlaAttentionParams p;
  p.q_lat = p.q_rope = d.as<mk::bf16>();
  p.kv_cache = d.as<mk::bf16>();
  p.out = d.as<mk::bf16>() + 32768;  // apart from the inputs
  p.kv_lens = lens.get();
  p.batch = 1;
  p.num_heads = 16;
  p.max_kv_len = 8;
  p.scale = 0.f;  // required
  EXPECT_EQ(mk::launch_mla_attention(p, nullptr), mk::Status::kInvalidArgument);
  EXPECT_THROW(mk::check_mla_attention(p), std::invalid_argument);
  p.scale = 0.1f;
  EXPECT_EQ(mk::launch_mla_attention(p, nullptr), mk::Status::kOk);
  p.num_splits = 2;  // needs a workspace
  EXPECT_EQ(mk::launch_mla_attention(p, nullptr), mk::Status::kInvalidArgument);
  p.num_splits = 1;
  p.q_lat_head_stride = 4;  // not a multiple of 8
  EXPECT_EQ(mk::launch_mla_attention(p, nullptr), mk::Status::kInvalidArgument);
  p.q_lat_head_stride = 0;
  p.tile_tokens = 16;  // 0, 32 or 64
  EXPECT_EQ(mk::launch_mla_attention(p, nullptr), mk::Status::kInvalidArgument);
  p.tile_tokens = 0;
  p.c_kv_new = d.as<mk::bf16>();  // k_rope_new missing
  EXPECT_EQ(mk::launch_mla_attention(p, nullptr), mk::Status::kInvalidArgument);
  CUDA_OK(cudaDeviceSynchronize());
}
