// Seeded hashing, one definition for the whole code base: the routing and context samplers
// (plan/), the executor's weight and KV identities (exec/launch_plan.cpp, rank_runner.cpp) and
// its GPU data generation (exec/src/device_init.cu) all hash with these, so a value derived
// from (seed, what it is) is the same wherever it is computed. Header-only and constexpr; the
// functions are also callable in CUDA device code (no CUDA header is included: the
// annotation exists only when a CUDA compiler reads this file).
#pragma once

#include <cstdint>
#include <string_view>

#if defined(__CUDACC__)
#define MASEP_HOST_DEVICE __host__ __device__
#else
#define MASEP_HOST_DEVICE
#endif

namespace masep::plan {

/// splitmix64's step and finaliser (Steele, Lea, Flood 2014): a well-mixed 64-bit hash of x.
MASEP_HOST_DEVICE constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// FNV-1a 64-bit hash of a text (tensor names in weight identities).
constexpr uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  return h;
}

}  // namespace masep::plan
