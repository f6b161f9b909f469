// Seeded data generation and small data-movement kernels on the GPU (weights, KV cache,
// activations, forced routing, row regrouping). Private to exec/.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace masep::exec::detail {

/// The cuBLAS workspace the executor and the profiler give their handle
/// (cublasSetWorkspace; NVIDIA's recommended size for Hopper), bytes.
inline constexpr size_t kCublasWorkspaceBytes = 32ull << 20;

/// p[i] = bf16((2·u(seed, i) − 1) · scale), u a splitmix64 hash of (seed, i) mapped to [0, 1).
void fill_hash_bf16(void* p, int64_t elements, uint64_t seed, float scale, cudaStream_t stream);

/// p[i] = bf16(shift + (2·u(seed, i) − 1) · scale) (norm weights: shift 1).
void fill_hash_bf16_shifted(void* p, int64_t elements, uint64_t seed, float scale, float shift,
                            cudaStream_t stream);

/// An FP8 block-scaled weight matrix [rows, cols] (kernels/weight_format.hpp, kFP8Block):
/// e4m3(448·(2·u(seed, i) − 1)) bytes, then every 128 × 128 block's fp32 scale scale/448, so
/// the values are those of fill_hash_bf16 (same seed) rounded to e4m3.
void fill_hash_fp8_block(void* p, int64_t rows, int64_t cols, uint64_t seed, float scale,
                         cudaStream_t stream);

/// Rows keyed by a global row number: p[r][c] = bf16((2·u(seed, first_row + r, c) − 1)·scale)
/// for r < rows, c < cols, so that the same sequence gets the same values whatever buffer
/// (plan) holds it.
void fill_rows_bf16(void* p, int64_t rows, int64_t cols, int64_t first_row, uint64_t seed,
                    float scale, cudaStream_t stream);

/// A KV cache block [batch][kv_heads][max_len][head_dim] keyed by (first_seq + b, head, pos, d)
/// (independent of batch and max_len, so every plan holding a sequence fills it alike).
void fill_kv_bf16(void* p, int batch, int kv_heads, int max_len, int head_dim, int64_t first_seq,
                  uint64_t seed, float scale, cudaStream_t stream);

/// Forced routing: for u tokens with the Program's expert ids (orig_ids [u·k], expert
/// numbers) and their slot ids (slot_ids [u·k], the permute's expert numbering), writes
/// topk_ids = slot_ids, topk_weights[t][j] = softmax(logits[t])[orig_ids[t][j]] renormalised
/// over the k chosen, and counts[s] = slot_counts[s] for s < slots.
void apply_forced_route(const void* logits_bf16, int tokens, int experts, int k,
                        const int32_t* orig_ids, const int32_t* slot_ids,
                        const int32_t* slot_counts, int slots, int32_t* topk_ids,
                        float* topk_weights, int32_t* counts, cudaStream_t stream);

/// Real gating: ids[i] = expert_slot[ids[i]] for i < n (the router's top-k experts become
/// permute slots), counts[s] = number of i with that slot, for s < slots (zeroed first).
/// One block; n = tokens·top_k.
void map_route_to_slots(int32_t* ids, int n, const int32_t* expert_slot, int slots, int32_t* counts,
                        cudaStream_t stream);

/// out[r] = map[r] >= 0 ? a[map[r]] : b[−map[r]−1]   (rows of `cols` bf16; cols % 8 == 0)
void gather_rows_bf16(void* out, const void* a, const void* b, const int32_t* map, int64_t rows,
                      int64_t cols, cudaStream_t stream);
/// (map[r] >= 0 ? a[map[r]] : b[−map[r]−1]) = in[r]
void scatter_rows_bf16(const void* in, void* a, void* b, const int32_t* map, int64_t rows,
                       int64_t cols, cudaStream_t stream);

/// Straggler mode (issue 18): straggler_mark writes the GPU's global timer (ns) to *slot;
/// straggler_stretch, issued after the op on the same stream, spins (one thread, nanosleep)
/// until the time since the mark is 1/speed of what it was when the stretch started, so the
/// op between the two takes 1/speed as long (0 < speed <= 1).
void straggler_mark(uint64_t* slot, cudaStream_t stream);
void straggler_stretch(const uint64_t* slot, double speed, cudaStream_t stream);

}  // namespace masep::exec::detail
