// NcclModel: which algorithm and protocol NCCL would pick for one collective call, and how
// long NCCL's own tuning model says it takes. Used by the simulator to time collectives
// (collectives.hpp, algorithm kNccl) and by `masep collective` to print the choice per row.
//
// Followed (learned from, not copied): NVIDIA/nccl src/graph/tuning.cc
// (ncclTopoTuneModel, ncclTopoGetAlgoTime; NCCL 2.28-era constants: base and per-hop
// latencies per algorithm/protocol/link class, LL/LL128/tree per-channel bandwidth caps per
// architecture, the NVLS efficiency, the tree correction factors), src/graph/search.cc (the
// per-architecture channel speed ladders, channel duplication) and src/graph/topo.h (NCCL's
// per-NVLink-link bandwidth: 20.0 GB/s on sm80, 20.6 GB/s on sm90). NCCL's topology search
// is replaced by a closed form (see NcclModel::graph_for): the widest ladder speed s that
// fits the per-path bandwidth, with as many channels as the GPU's total bandwidth holds.
//
// Units: bytes, ns, GB/s (== bytes/ns). NCCL's tables are in µs and GB/s; the model
// converts at its boundary. The time is NCCL's device-side estimate
//   time = latency + bytes / bandwidth
// with bytes = the collective's size as nccl-tests counts it (all-reduce / reduce-scatter
// input, all-gather output). It does not include the host cost of issuing the call (the
// simulator adds `nccl_call_overhead_ns`, parameters.hpp).
//
// All-to-all and send/recv are NCCL p2p operations, which tuning.cc does not model: masep's
// own assumption (documented in docs/simulator-model.md) is the ring's base latency plus one
// hop for the protocol (LL up to 16 KiB per peer, NCCL_P2P_LL_THRESHOLD, else Simple) and
// NCCL's path bandwidth (links × per-link bandwidth) per GPU, LL at half of it.
//
// Achieved time (one node on NVLink; docs/simulator-model.md, "Achieved time"). NCCL's
// estimate decides the algorithm and protocol, as in NCCL, but measured NCCL calls on
// NVSwitch hosts take longer than it says at large sizes and less at small ones. For ring
// collectives and p2p calls of communicators on one NVLink node the time is masep's
// measured-rate layer instead: ring Simple moves each link byte in
//   1 / (0.936 × the links' datasheet rate) + 0.14 ps × loads + 1.44 ps × local stores
// per byte on the link (the loads and local stores each ring step of the collective makes:
// all-gather 1 and 1/(n−1), reduce-scatter (2n−1)/(n−1) and 1/(n−1), all-reduce 1.5 and
// 1/(2(n−1))), capped by NCCL's channel bandwidth, after 16.8 µs + 1.64 µs per ring step;
// LL and LL128 keep NCCL's bandwidth with latencies 5.16 + 0.71/step (+0.18 µs per doubling
// of the channels a call engages) and 12.3 + 1.71/step µs; p2p is given in p2p_achieved.
// Constants fitted on the 4 × H100 host's tables (bandwidths, Simple and LL128 latencies)
// and the 2 × H200 host's (LL and p2p latencies), validated on the 4 × H200 host.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "masep/plan/program.hpp"
#include "masep/topology/topology.hpp"

namespace masep::sim {

/// NCCL's algorithms (NCCL_ALGO names in comments). kP2p: grouped send/recv (all-to-all,
/// send/recv), which NCCL_ALGO does not select.
enum class NcclAlgo : uint8_t {
  kTree,           ///< "tree": double binary tree across nodes, chains inside a node
  kRing,           ///< "ring"
  kCollNetDirect,  ///< "collnetdirect": in-network reduction (SHARP NICs), direct to heads
  kCollNetChain,   ///< "collnetchain": in-network reduction, chain inside the node
  kNvls,           ///< "nvls": NVSwitch multicast/reduction (NVLink SHARP), Hopper+
  kNvlsTree,       ///< "nvlstree": NVLS inside nodes, tree across nodes
  kP2p,            ///< grouped point-to-point (not an NCCL_ALGO value)
};
inline constexpr int kNcclAlgos = 6;  ///< selectable algorithms (kP2p excluded)

/// NCCL's protocols (NCCL_PROTO names).
enum class NcclProto : uint8_t {
  kLL,      ///< "LL": 8-byte stores with inline flags, half the wire bandwidth, lowest latency
  kLL128,   ///< "LL128": 128-byte lines with flags (NVLink only), ~94% of the bandwidth
  kSimple,  ///< "Simple": bulk copies with fences, full bandwidth, highest latency
};
inline constexpr int kNcclProtos = 3;

const char* to_string(NcclAlgo a);   ///< "ring", "tree", "nvls", "nvls_tree", ...
const char* to_string(NcclProto p);  ///< "LL", "LL128", "Simple"

/// What NCCL's topology detection would see for one communicator: the GPU generation, the
/// intra-node fabric, the NICs and the communicator's shape. Plain data.
struct NcclSystem {
  int compute_capability = 80;  ///< 80 (Ampere) or 90 (Hopper); others round down to these
  topology::Fabric fabric = topology::Fabric::kNVSwitch;
  /// Topology intra_node.GBps: per GPU into the switch (NVSwitch, PCIe) or per GPU pair (mesh).
  double intra_GBps = 0;
  double gpu_nvlink_GBps = 0;     ///< the GPU's NVLink total per direction (caps a mesh)
  bool hybrid_cube_mesh = false;  ///< mesh where each GPU reaches 4 peers (DGX-1 class)
  bool nvls = false;              ///< NVSwitch with NVLink SHARP (multicast objects), Hopper+
  int nics_per_node = 0;          ///< NICs a node's members can use (0 on one node)
  double nic_GBps = 0;            ///< per NIC, per direction
  bool sharp = false;             ///< NICs / IB switches do in-network reduction (CollNet)
  int ranks = 1;                  ///< communicator size
  int nodes = 1;                  ///< nodes spanned by the communicator
  int ranks_per_node = 1;         ///< largest member count on one node

  /// The system NCCL would see for members `gpus` (topology GPU indices) of `topo`.
  /// compute_capability comes from the GPU spec, nvls and sharp from the topology.
  static NcclSystem from_topology(const topology::TopologySpec& topo, const std::vector<int>& gpus);
};

/// NCCL's bandwidth of one NVLink link over the link's datasheet rate (25 GB/s per direction):
/// 20.0/25 = 0.8 on sm80, 20.6/25 = 0.824 on sm90 (topo.h), for NVLink fabrics; 1 on PCIe.
/// The simulator's NCCL model moves point-to-point payloads inside a node (send/recv,
/// exchanges) at this share of the links' rate. Compute capability as from_topology infers it.
double nccl_p2p_intra_efficiency(const topology::TopologySpec& topo);

/// NCCL_ALGO / NCCL_PROTO-like selection: which algorithms and protocols may be chosen.
/// Parsed from NCCL's list syntax: "ring", "ring,tree", "^nvls" (all but), "auto" / ""
/// (everything NCCL enables by default). Names are case-insensitive; "nvls_tree" and
/// "nvlstree", "collnet_direct" and "collnetdirect" (likewise chain) are accepted, and
/// "simple"/"ll"/"ll128" for protocols.
struct NcclSelection {
  bool algo[kNcclAlgos] = {true, true, true, true, true, true};
  bool proto[kNcclProtos] = {true, true, true};
  bool algo_forced = false;   ///< the user named algorithms (not "auto")
  bool proto_forced = false;  ///< the user named protocols (not "auto")

  /// Throws std::invalid_argument naming `option` (e.g. "--algo") and the bad element.
  static NcclSelection parse(const std::string& algos, const std::string& protos,
                             const std::string& algo_option = "--algo",
                             const std::string& proto_option = "--proto");
};

/// One (algorithm, protocol) and its time for a call of `bytes`. NCCL picks by its own
/// estimate (nccl_*); the call then takes the achieved time (latency_ns, bw_GBps, time_ns),
/// which is masep's measured-rate layer where it applies (see NcclModel) and NCCL's estimate
/// elsewhere.
struct NcclChoice {
  NcclAlgo algo = NcclAlgo::kRing;
  NcclProto proto = NcclProto::kSimple;
  int channels = 0;            ///< channels of the algorithm's graph
  double latency_ns = 0;       ///< achieved latency term (ns)
  double bw_GBps = 0;          ///< achieved algorithm bandwidth (bytes / ns)
  double time_ns = 0;          ///< latency_ns + bytes / bw_GBps: the call's device time
  double nccl_latency_ns = 0;  ///< NCCL's own latency estimate (tuning.cc), ns
  double nccl_bw_GBps = 0;     ///< NCCL's own algorithm bandwidth estimate (bytes / ns)
  double nccl_time_ns = 0;     ///< NCCL's estimate, which the choice minimises
  bool achieved = false;       ///< the measured-rate layer timed it (else = NCCL's estimate)
};

/// NCCL's tuning model for one communicator. Cheap to build (a few hundred flops); value type.
class NcclModel {
 public:
  /// Builds the latency and bandwidth tables for `sys` (every collective, algorithm and
  /// protocol), then disables what NCCL disables by default and what `sel` excludes.
  explicit NcclModel(const NcclSystem& sys, const NcclSelection& sel = {});

  /// The fastest enabled (algorithm, protocol) for collective `kind` (kAllReduce, kAllGather,
  /// kReduceScatter, kAllToAll, kSend/kRecv = send/recv) of `bytes` (nccl-tests size), ties
  /// to the lower algorithm then protocol index (NCCL's order). Throws std::invalid_argument
  /// when the selection leaves nothing that can run it (e.g. --algo nvls on an A100).
  NcclChoice choose(plan::OpKind kind, double bytes) const;

  /// Every enabled candidate for `kind` and `bytes`, in NCCL's (algorithm, protocol) order.
  std::vector<NcclChoice> candidates(plan::OpKind kind, double bytes) const;

  /// The graph NCCL's search would settle on for `algo`: channels and per-channel speeds.
  struct Graph {
    int channels = 0;
    double bw_intra = 0;  ///< GB/s per channel inside a node
    double bw_inter = 0;  ///< GB/s per channel across nodes
  };
  const Graph& graph(NcclAlgo a) const { return graph_[static_cast<int>(a)]; }

  /// NCCL's bandwidth of one GPU's path into the fabric (GB/s): links × per-link bandwidth on
  /// NVLink, the PCIe link on PCIe. On an H100 NVSwitch host 18 × 20.6 = 370.8 GB/s, 82% of
  /// the 450 GB/s datasheet figure.
  double gpu_path_GBps() const { return gpu_bw_; }

  const NcclSystem& system() const { return sys_; }

 private:
  static int coll_index(plan::OpKind kind);  // 0 AR, 1 AG, 2 RS, 3 all-to-all, 4 send/recv
  void graph_for(NcclAlgo a);
  void tune();
  NcclChoice p2p(plan::OpKind kind, double bytes) const;
  bool achieved_applies() const;  // one node on NVLink: the measured-rate layer times calls
  void ring_achieved(int coll, double bytes, NcclChoice& c) const;
  void p2p_achieved(plan::OpKind kind, double bytes, NcclChoice& c) const;

  NcclSystem sys_;
  NcclSelection sel_;
  double gpu_bw_ = 0;   // per GPU into the fabric (NCCL's units)
  double pair_bw_ = 0;  // per GPU pair path (mesh) or = gpu_bw_
  double gpu_wire_ = 0;   // datasheet rate of the links behind gpu_bw_ (GB/s)
  double pair_wire_ = 0;  // datasheet rate of the links behind pair_bw_ (GB/s)
  Graph graph_[kNcclAlgos];
  // [coll 0..2][algo][proto]: GB/s (0 = disabled) and µs, as NCCL's tables.
  double bw_[3][kNcclAlgos][kNcclProtos] = {};
  double lat_[3][kNcclAlgos][kNcclProtos] = {};
};

}  // namespace masep::sim
