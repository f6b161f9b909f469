#include "masep/plan/faults.hpp"

namespace masep::plan {

const char* to_string(FaultKind k) {
  switch (k) {
    case FaultKind::kGpu:
      return "gpu";
    case FaultKind::kNic:
      return "nic";
    case FaultKind::kLink:
      return "link";
    case FaultKind::kStraggler:
      return "straggler";
  }
  return "?";
}

const char* to_string(KvLossPolicy p) {
  switch (p) {
    case KvLossPolicy::kFail:
      return "fail";
    case KvLossPolicy::kReprefill:
      return "re_prefill";
    case KvLossPolicy::kDrop:
      return "drop";
  }
  return "?";
}

const char* to_string(ExpertLossPolicy p) {
  switch (p) {
    case ExpertLossPolicy::kFail:
      return "fail";
    case ExpertLossPolicy::kReload:
      return "reload";
    case ExpertLossPolicy::kReroute:
      return "reroute";
  }
  return "?";
}

const char* to_string(WeightSource s) {
  switch (s) {
    case WeightSource::kNone:
      return "none";
    case WeightSource::kPeer:
      return "peer";
    case WeightSource::kHost:
      return "host";
  }
  return "?";
}

bool has_fault_features(const FaultTolerance& ft, const std::vector<FaultSpec>& faults) {
  return !faults.empty() || ft.kv_copies > 1 || ft.standby_gpus > 0;
}

}  // namespace masep::plan
