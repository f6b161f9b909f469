// Host-side sizing of MLA decode attention (mla_attention_config.hpp). Plain C++: no CUDA.
#include "masep/kernels/mla_attention_config.hpp"

#include "masep/kernels/attention_config.hpp"

#include <algorithm>

namespace masep::kernels {

namespace {
std::size_t align256(std::size_t n) { return (n + 255) / 256 * 256; }
}  // namespace

int mla_attention_block_heads(int num_heads) {
  const int h16 = (std::max(1, num_heads) + 15) / 16 * 16;
  return h16 >= 64 ? 64 : h16 > 16 ? 32 : 16;
}

int mla_attention_tile_tokens(int num_heads) {
  return mla_attention_block_heads(num_heads) == 64 ? 32 : 64;
}

std::size_t mla_attention_workspace_bytes(int batch, int num_heads, int num_splits) {
  if (num_splits <= 1) return 0;
  const std::size_t rows = std::size_t(std::max(0, batch)) * std::max(0, num_heads) * num_splits;
  return align256(rows * kMlaLatentDim * sizeof(float)) + 2 * align256(rows * sizeof(float));
}

int mla_attention_num_splits(int batch, int num_heads, int max_context, int sm_count) {
  const int hb = mla_attention_block_heads(num_heads);
  const long head_blocks = (std::max(1, num_heads) + hb - 1) / hb;
  const long items = std::max(1L, long{std::max(1, batch)} * head_blocks);
  return wave_cost_num_splits(items, max_context, std::max(1, sm_count),
                              mla_attention_tile_tokens(num_heads));
}

}  // namespace masep::kernels
