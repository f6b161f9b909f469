// A simulated run with faults (issue 18): the scenario's `faults:` (plan/faults.hpp) applied
// to a decode run, segment by segment. Between faults the plan in force (the original, or the
// degraded plan plan::remap() gives) is compiled for its window of steps and simulated; at a
// GPU, NIC or link failure the survivors first detect it (heartbeat / op timeout, below), then
// run the recovery Program (plan/recovery.hpp: communicator rebuild, KV and weight re-loads as
// real transfers, re-prefill as real compute) on the same modelled cluster; a NIC whose node
// keeps another NIC sends through it (PXN: the sibling GPU's NIC, over NVLink); a straggler
// slows one GPU's compute ops. Everything is deterministic (integer ns).
//
// Simplifications (docs/fault-tolerance.md): a fault given by step happens at that step's
// start (by at_ms: inside the step running then, whose work so far is wasted and re-done);
// KV mirrors of sequences that moved are taken as re-established without cost; a GPU that
// comes back after a temporary fault re-joins at a step boundary after a communicator rebuild
// and re-loading its weights from host memory (KV of sequences moving back is not charged).
#pragma once

#include <cstdint>
#include <ostream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "masep/plan/scenario.hpp"
#include "masep/sim/simulator.hpp"

namespace masep::sim {

/// Tunables of failure detection and recovery, declared once (like parameters.hpp).
struct FaultParams {
  double heartbeat_interval_ns = 100e6;  ///< a rank's heartbeat period
  double heartbeat_misses = 3;           ///< missed heartbeats that declare a rank dead
  double op_timeout_ns = 1e9;            ///< a blocked collective / exchange gives up after this
  double comm_rebuild_ns = 200e6;        ///< one communicator shrink / rebuild on every rank
  double host_load_GBps = 20;            ///< host memory -> GPU weight re-load rate, GB/s
};

/// One row of the table.
struct FaultParamInfo {
  const char* name;
  const char* unit;
  double default_value;
  const char* doc;
  double FaultParams::*field;
  double min_value, max_value;
};

/// The table, in documentation order (static storage).
std::span<const FaultParamInfo> fault_parameter_table();
/// Defaults with NAME=VALUE overrides; throws std::invalid_argument for an unknown name or a
/// value out of range.
FaultParams resolve_fault_params(const std::vector<std::pair<std::string, double>>& overrides);
/// Markdown table (name | unit | default | meaning) for docs.
std::string fault_parameter_table_markdown();
/// Time from a hard failure to the survivors acting on it: the earlier of the heartbeat
/// verdict (interval x misses) and the op timeout, ns.
int64_t detection_ns(const FaultParams& p);

/// One decode step of the run.
struct FaultStep {
  int step = 0;
  int64_t end_ns = 0;  ///< end of the step on the run's clock
  double tpot_ms = 0;  ///< end minus the previous step's end (includes any outage)
  int64_t tokens = 0;  ///< tokens produced (sequences served)
  int gpus = 0;        ///< GPUs of the plan in force
  std::string phase;   ///< "normal", "fault" (absorbs detection + recovery), "degraded",
                       ///< "straggler", "rejoin"
};

/// One fault or repair applied.
struct FaultEvent {
  int step = 0;           ///< the step it hit
  int64_t at_ns = 0;      ///< run clock when it happened
  std::string what;       ///< e.g. "faults[0]: GPU 3 fails"
  int64_t wasted_ns = 0;  ///< work of the interrupted step thrown away
  int64_t detect_ns = 0;
  int64_t recovery_ns = 0;  ///< the recovery Program's makespan
  int64_t recovery_ops = 0;
  std::vector<std::string> remap;  ///< plan::Remap::describe()
};

struct FaultRunResult {
  std::vector<FaultStep> steps;
  std::vector<FaultEvent> events;
  int64_t makespan_ns = 0;
  int64_t baseline_makespan_ns = 0;  ///< the same scenario with no fault
  double baseline_tpot_ms = 0;
  int64_t tokens_offered = 0;  ///< batch x decode steps
  int64_t tokens_served = 0;
  int64_t tokens_lost = 0;        ///< offered - served (dropped sequences)
  int64_t tokens_recomputed = 0;  ///< re-prefilled KV entries + tokens of interrupted steps
  double degraded_pairs = 0;      ///< token-expert pairs re-routed (expected count)
  double availability = 0;        ///< served / offered
  double uptime = 0;              ///< 1 - (wasted + detection + recovery) / makespan
  int plan_gpus = 0, standby_gpus = 0;
  double tpot_before_ms = 0;      ///< mean TPOT before the first event
  double tpot_fault_ms = 0;       ///< largest TPOT of a step that absorbed an outage
  double tpot_after_ms = 0;       ///< mean TPOT after the last event
  double tokens_per_s_after = 0;  ///< throughput after the last event
};

/// Runs `s` with its faults. `options` as for simulate() (calibration, network tier, ...).
/// Throws std::runtime_error when a fault cannot be survived at the moment it happens (the
/// loader's check takes the faults together and normally refuses such a scenario first).
FaultRunResult simulate_faults(const plan::Scenario& s, const SimOptions& options,
                               const FaultParams& params = {});

/// The result as one JSON object (deterministic), steps included.
void write_fault_json(std::ostream& out, const FaultRunResult& r);
/// Per-step CSV: step,end_ms,tpot_ms,tokens,gpus,phase.
void write_fault_csv(std::ostream& out, const FaultRunResult& r);

}  // namespace masep::sim
