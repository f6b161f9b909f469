// The accepted ranges of every physical quantity and count masep reads (issue 21): a value
// outside its range is an InputError at its file, line and key when loaded, so an absurd
// but positive number (a link of 1e-300 GB/s, a latency of 1e300 ns) never reaches the
// simulator. docs/schema.md and docs/calibration.md list the same ranges; change both.
//
// Bounds are generous: a few orders of magnitude beyond any real device, tight enough that
// every derived duration stays far below the integer-nanosecond clock's range (time_ns.hpp).
#pragma once

#include <cstdint>

namespace masep::plan {

/// A closed interval [lo, hi] of accepted values with the unit named in messages.
struct Range {
  double lo;
  double hi;
  const char* unit;
};

/// Link, NIC, NVLink and HBM bandwidth, GB/s per direction (1 MB/s .. 1 PB/s).
inline constexpr Range kBandwidthGBps{1e-3, 1e6, "GB/s"};
/// Per-hop, per-NIC and switch latency, ns (0 .. 1 s).
inline constexpr Range kLatencyNs{0, 1e9, "ns"};
/// Peak compute, TFLOP/s (1 GFLOP/s .. 1 EFLOP/s).
inline constexpr Range kComputeTflops{1e-3, 1e6, "TFLOP/s"};
/// GPU memory, GB (1 MB .. 1 PB).
inline constexpr Range kMemoryGb{1e-3, 1e6, "GB"};
/// A calibrated (measured) op time, ns (1 ps .. 10 s).
inline constexpr Range kCalibratedTimeNs{1e-3, 1e10, "ns"};
/// Launch, event and gap overheads, ns (0 .. 1 s).
inline constexpr Range kOverheadNs{0, 1e9, "ns"};
/// A relative slowdown (a calibration's launch.comm_slowdown: compute takes 1 + this times
/// as long beside communication); 99 maps to the simulator's largest interference, 0.99.
inline constexpr Range kSlowdown{0, 99, "(relative slowdown)"};
/// Zipf routing exponent.
inline constexpr Range kZipfSkew{1e-6, 100, "(exponent)"};
/// One explicit routing weight (relative; the sum of 10^8 of them stays finite).
inline constexpr Range kRoutingWeight{1e-12, 1e12, "(relative weight)"};

/// Counts, checked at their key before anything is sized by them. With these every product
/// the compiler forms (batch x context tokens, hidden x expert_ffn x experts bytes, GPU sums)
/// fits in 64 bits; whether the whole run fits in memory is estimated arithmetically before
/// compiling (tools/sim_run.cpp).
inline constexpr int64_t kMaxLayers = 10000;
inline constexpr int64_t kMaxWidth = 1 << 18;    ///< hidden, expert_ffn
inline constexpr int64_t kMaxHeads = 1 << 14;    ///< heads, kv_heads, head_dim
inline constexpr int64_t kMaxExperts = 1 << 16;  ///< experts per layer
inline constexpr int64_t kMaxTopK = 1024;        ///< top_k, shared_experts
inline constexpr int64_t kMaxVocab = 1 << 24;    ///< vocabulary size
inline constexpr int64_t kMaxGpus = 1 << 20;     ///< any GPU count; nodes x gpus_per_node
inline constexpr int64_t kMaxMicroBatches = 1024;
inline constexpr int64_t kMaxBatch = 1 << 24;    ///< sequences
inline constexpr int64_t kMaxContext = 1 << 24;  ///< tokens per sequence
inline constexpr int64_t kMaxDecodeSteps = 1000000;
inline constexpr int64_t kMaxBatchShare = 1 << 20;  ///< plan.attention.replicas[i].batch_share

}  // namespace masep::plan
