// Recovery work after failures as a Program (issue 18): what the surviving GPUs do between
// detecting a failure and decoding again, as real ops the simulator times like any other.
//   every rank of the degraded plan: kCommRebuild (ncclCommShrink / re-init of the
//     communicators; a fixed cost, simulator parameter fault_comm_rebuild_ns)
//   then, on the comm streams, one kExchange of KV shards (kKvRebuild) from the mirrors to
//     the standbys that took over attention GPUs, then one kExchange of expert weights
//     (kWeightLoad) from surviving holders to new holders (restore_experts: peer, standbys)
//   kWeightLoad compute ops on new holders for weights re-loaded from host memory (timed at
//     the host link rate, fault_host_load_GBps)
//   kReprefill GEMMs per layer on the attention replicas that re-compute lost KV caches
//     (QKV + output projection + causal attention FLOPs of the re-prefilled tokens), and on
//     every MoE GPU the expert FFNs of those tokens (top_k rows each, spread evenly); the
//     activations' transfers between the two sides are not modelled (prefill is compute-bound)
// The Program has the degraded plan's ranks, groups and layout (compile with zero steps), so
// it passes check_program and runs on the same Platform.
#pragma once

#include "masep/plan/program.hpp"
#include "masep/plan/remap.hpp"

namespace masep::plan {

/// The recovery Program for `rm` (remap of the scenario at decode step `step`): ops carry
/// step = `step`, layer 0 (reprefill ops: their layer), micro-batch 0. Empty of ops only when
/// the degraded plan has no rank.
Program compile_recovery(const Remap& rm, int step);

/// Work of a GPU re-joining the plan after a temporary fault (the plan goes back to `s`):
/// communicator rebuild on every rank and the rejoining GPUs' weights re-loaded from host
/// memory (their experts, or the attention weights of their shard).
Program compile_rejoin(const Scenario& s, const std::vector<int>& rejoining_gpus, int step);

}  // namespace masep::plan
