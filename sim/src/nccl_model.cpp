// NCCL's algorithm/protocol tuning model, re-derived for masep (see nccl_model.hpp for what
// was followed). The constants below are NCCL's published tuning data (NVIDIA/nccl
// src/graph/tuning.cc, search.cc, topo.h), cited per table; the code around them is masep's.
#include "masep/sim/nccl_model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <stdexcept>

namespace masep::sim {
namespace {

constexpr int kTree = 0, kRing = 1, kCnDirect = 2, kCnChain = 3, kNvls = 4, kNvlsTree = 5;
constexpr int kLL = 0, kLL128 = 1, kSimple = 2;
constexpr int kHwNvlink = 0, kHwPci = 1, kHwNet = 2;
constexpr int kAmpere = 0, kHopper = 1;

// tuning.cc baseLatencies (µs) [algo][proto].
constexpr double kBaseLat[kNcclAlgos][kNcclProtos] = {
    {6.8, 14.0, 8.4}, {6.6, 14.0, 8.4}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}};
// tuning.cc hwLatencies (µs) [NVLink, PCI, NET][algo][proto].
constexpr double kHwLat[3][kNcclAlgos][kNcclProtos] = {
    {{0.6, 1.25, 4.0}, {0.6, 1.9, 3.4}, {0, 0, 3.7}, {0, 0, 2.8}, {0, 0, 25}, {0, 0, 25}},
    {{1.0, 1.9, 4.0}, {1.0, 2.5, 5.7}, {0, 0, 3.7}, {0, 0, 2.8}, {0, 0, 0}, {0, 0, 0}},
    {{5.0, 8.5, 14}, {2.7, 4.0, 14.0}, {0, 0, 31}, {0, 0, 30}, {0, 0, 18}, {0, 0, 20.9}}};
// tuning.cc llMaxBws (GB/s): one node by GPU generation, [Ampere, Hopper]; several nodes by
// CPU (masep assumes x86 Intel hosts: NCCL's first row) for 2 and for more nodes.
constexpr double kLLMaxBwOneNode[2] = {87.7, 141.0};
constexpr double kLLMaxBwNodes[2] = {39.0, 20.4};  // index2 = 1 (2 nodes), 2 (more)
// Per-channel caps [arch][index2 = nodes 1, 2, more] (GB/s).
constexpr double kPerChRingLL128[2][3] = {{20.0, 20.0, 20.0}, {36.7, 36.7, 36.7}};
constexpr double kPerChTreeLL128[2][3] = {{20.0, 20.0, 20.0}, {36.7, 36.7, 29.0}};
constexpr double kPerChTree[2][3] = {{24.0, 23.6, 17.8}, {38.7, 41.4, 36.0}};
constexpr double kPerChNvlsTree[2][3] = {{24.0, 23.6, 17.8}, {0.0, 57.7, 45.5}};
constexpr double kNvlsEfficiency[2] = {0.0, 0.85};
// tuning.cc treeCorrectionFactor [proto][log2(bytes / 64)], 64 B .. 256 MB.
constexpr double kTreeCorrection[kNcclProtos][24] = {
    {1.0, 1.0, 1.0, 1.0, .9, .8, .7, .7,  .7,  .7,  .6,  .5,
     .4,  .4,  .5,  .6,  .7, .8, .9, 1.0, 1.0, 1.0, 1.0, 1.0},
    {1.0, 1.0, 1.0, 1.0, 1.0, .9, .8, .8, .8, .7,  .6,  .6,
     .6,  .6,  .6,  .6,  .8,  .9, .9, .9, .9, 1.0, 1.0, 1.0},
    {.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5,
     .5, .5, .5, .6, .7, .8, .7, .7, .8, .9, .9, .9}};
// search.cc speed ladders (GB/s per channel), sm80 and sm90, inside one node and across nodes.
constexpr double kSpeedIntra80[] = {40.0, 30.0, 20.0, 18.0, 15.0, 12.0, 10.0,
                                    9.0,  7.0,  6.0,  5.0,  4.0,  3.0};
constexpr double kSpeedIntra90[] = {60.0, 50.0, 40.0, 30.0, 24.0, 20.0, 15.0, 12.0, 11.0, 6.0, 3.0};
constexpr double kSpeedInter80[] = {48.0, 30.0, 28.0, 24.0, 20.0, 18.0, 15.0, 12.0, 10.0, 9.0,
                                    7.0,  6.0,  5.0,  4.0,  3.0,  2.4,  1.2,  0.24, 0.12};
constexpr double kSpeedInter90[] = {48.0, 45.0, 42.0, 40.0, 30.0, 24.0, 22.0, 20.0, 17.5,
                                    15.0, 12.0, 6.0,  3.0,  2.4,  1.2,  0.24, 0.12};
// topo.h: NCCL's bandwidth of one NVLink link (GB/s), and its local "bandwidth" of a GPU to
// itself (used when a node holds one member: the intra-node path never limits).
constexpr double kNvlinkBw80 = 20.0, kNvlinkBw90 = 20.6, kLocBw = 5000.0;
constexpr double kNominalLinkGBps = 25.0;  // NVLink3/4 per link per direction (datasheets)
// init.cc / device.h: ring graph at most MAXCHANNELS/2 = 32 channels; NVLS arity 32;
// CollNet-direct arity 7 (+1). enqueue.cc NCCL_P2P_LL_THRESHOLD = 16384 bytes.
constexpr int kMaxRingChannels = 32, kMaxNvlsArity = 32, kMaxDirectArity = 8;
constexpr double kP2pLLThreshold = 16384;
// tuning.cc getNetOverhead on x86 Intel (µs), ×3 for Simple.
constexpr double kNetOverheadUs = 1.0;

// masep's achieved-time layer (one node on NVLink; nccl_model.hpp). Fitted, not NCCL's:
// bandwidths and the Simple / LL128 latencies on the 4 × H100 host's comm tables
// (results/exec/h100x4-2026-11-27), LL and p2p latencies and the p2p rates on the 2 × H200
// host's (results/exec/h200x2-2026-11-27-r2); validated on the 4 × H200 host's
// (sim/calibration/h200.yaml). Bandwidth terms in ps per byte on the link.
constexpr double kWireEff = 0.936;          // remote stores: share of the links' datasheet rate
constexpr double kLoadPs = 0.14;            // per byte loaded by the channel's SM
constexpr double kLocalStorePs = 1.44;      // per byte stored to the GPU's own memory
constexpr double kSimpleBaseUs = 16.8, kSimpleStepUs = 1.64;
constexpr double kLLBaseUs = 5.16, kLLStepUs = 0.71, kLLRampUs = 0.18;
constexpr double kLLRampBytes = 4096;       // bytes per channel a call engages (ramp of nc)
constexpr double kLL128BaseUs = 12.3, kLL128StepUs = 1.71;
constexpr double kP2pTxPs = 0.20;           // per byte sent, on top of the wire
constexpr double kP2pRxPs = 1.28;           // per byte received (all-to-all), / sqrt(peers)
constexpr double kP2pBaseUs = 7.8;          // Simple p2p latency
constexpr double kP2pFillUs = 5.6;          // pipeline fill, reached at kP2pFillBytes per GPU
constexpr double kP2pFillBytes = 2.35e6;
constexpr double kP2pLLBaseUs = 6.7, kP2pLLGBps = 27.4;  // LL p2p (<= 16 KiB per peer)

int log2i(double v) {
  int r = -1;
  while (v >= 1) {
    v /= 2;
    ++r;
  }
  return r;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
  return s;
}

// Parses NCCL's list syntax into `out` (size n): "a,b" enables exactly those, "^a,b" all but.
template <size_t N>
bool parse_list(const std::string& text, const char* const (&names)[N], bool (&out)[N],
                const std::string& option) {
  std::string t = lower(text);
  if (t.empty() || t == "auto") return false;
  const bool negate = t[0] == '^';
  if (negate) t.erase(0, 1);
  bool listed[N] = {};
  size_t start = 0;
  while (start <= t.size()) {
    size_t end = t.find(',', start);
    if (end == std::string::npos) end = t.size();
    const std::string item = t.substr(start, end - start);
    size_t k = 0;
    while (k < N && lower(names[k]) != item) ++k;
    if (k == N) {
      std::string known;
      for (const char* nm : names) known += fmt::format("{}{}", known.empty() ? "" : ", ", nm);
      throw std::invalid_argument(fmt::format("{}: '{}' is not one of {} (or auto, or ^list)",
                                              option, item.empty() ? text : item, known));
    }
    listed[k] = true;
    start = end + 1;
  }
  for (size_t k = 0; k < N; ++k) out[k] = negate ? !listed[k] : listed[k];
  return true;
}

constexpr const char* kAlgoNames[kNcclAlgos] = {"tree",          "ring", "collnet_direct",
                                                "collnet_chain", "nvls", "nvls_tree"};
constexpr const char* kProtoNames[kNcclProtos] = {"LL", "LL128", "Simple"};

}  // namespace

const char* to_string(NcclAlgo a) {
  if (a == NcclAlgo::kP2p) return "p2p";
  return kAlgoNames[static_cast<int>(a)];
}
const char* to_string(NcclProto p) { return kProtoNames[static_cast<int>(p)]; }

NcclSelection NcclSelection::parse(const std::string& algos, const std::string& protos,
                                   const std::string& algo_option,
                                   const std::string& proto_option) {
  NcclSelection s;
  s.algo_forced = parse_list(algos, kAlgoNames, s.algo, algo_option);
  s.proto_forced = parse_list(protos, kProtoNames, s.proto, proto_option);
  return s;
}

NcclSystem NcclSystem::from_topology(const topology::TopologySpec& topo,
                                     const std::vector<int>& gpus) {
  NcclSystem s;
  const topology::GpuSpec& g = topo.gpu;
  // A GPU spec without compute_capability: FP8 tensor cores mean Hopper-class tables.
  s.compute_capability = g.compute_capability != 0 ? g.compute_capability
                         : g.fp8_tflops > 0        ? 90
                                                   : 80;
  s.fabric = topo.intra;
  s.intra_GBps = topo.intra_GBps;
  s.gpu_nvlink_GBps = g.nvlink_GBps;
  s.hybrid_cube_mesh = topo.nvlink_layout == topology::NVLinkLayout::kHybridCubeMesh;
  s.nvls = topo.nvls;
  s.ranks = static_cast<int>(gpus.size());
  std::vector<int> per_node;
  const int gpn = std::max(1, topo.gpus_per_node);
  for (int gpu : gpus) {
    const int node = gpu / gpn;
    if (node >= static_cast<int>(per_node.size()))
      per_node.resize(static_cast<size_t>(node) + 1, 0);
    ++per_node[static_cast<size_t>(node)];
  }
  s.nodes = 0;
  s.ranks_per_node = 0;
  for (int c : per_node) {
    if (c == 0) continue;
    ++s.nodes;
    s.ranks_per_node = std::max(s.ranks_per_node, c);
  }
  s.nodes = std::max(1, s.nodes);
  s.ranks_per_node = std::max(1, s.ranks_per_node);
  if (s.nodes > 1 && !topo.nics.empty()) {
    s.nics_per_node = static_cast<int>(topo.nics.size());
    s.nic_GBps = topo.nics.front().GBps;
    s.sharp = true;
    for (const topology::NicSpec& n : topo.nics) {
      s.nic_GBps = std::min(s.nic_GBps, n.GBps);
      s.sharp = s.sharp && n.sharp;
    }
  }
  return s;
}

double nccl_p2p_intra_efficiency(const topology::TopologySpec& topo) {
  if (topo.intra == topology::Fabric::kPCIe) return 1.0;
  const int cc = NcclSystem::from_topology(topo, {0}).compute_capability;
  return (cc >= 90 ? kNvlinkBw90 : kNvlinkBw80) / kNominalLinkGBps;
}

int NcclModel::coll_index(plan::OpKind kind) {
  switch (kind) {
    case plan::OpKind::kAllReduce:
      return 0;
    case plan::OpKind::kAllGather:
      return 1;
    case plan::OpKind::kReduceScatter:
      return 2;
    case plan::OpKind::kAllToAll:
      return 3;
    case plan::OpKind::kSend:
    case plan::OpKind::kRecv:
      return 4;
    default:
      throw std::invalid_argument("NcclModel: not a communication kind");
  }
}

NcclModel::NcclModel(const NcclSystem& sys, const NcclSelection& sel) : sys_(sys), sel_(sel) {
  if (sys_.ranks < 1 || sys_.nodes < 1 || sys_.ranks_per_node < 1) {
    throw std::invalid_argument("NcclModel: a communicator needs ranks, nodes and ranks per node");
  }
  const bool hopper = sys_.compute_capability >= 90;
  const double per_link = hopper ? kNvlinkBw90 : kNvlinkBw80;
  const int ppn = sys_.ranks_per_node;
  switch (sys_.fabric) {
    case topology::Fabric::kNVSwitch: {
      const double links = std::max(1.0, std::round(sys_.intra_GBps / kNominalLinkGBps));
      gpu_bw_ = pair_bw_ = links * per_link;
      gpu_wire_ = pair_wire_ = links * kNominalLinkGBps;
      break;
    }
    case topology::Fabric::kNVLinkMesh: {
      const double pair_links = std::max(1.0, std::round(sys_.intra_GBps / kNominalLinkGBps));
      pair_bw_ = pair_links * per_link;
      // Peers reached directly: all others on a full mesh, 4 of 7 on a hybrid cube-mesh.
      const int peers = sys_.hybrid_cube_mesh ? std::min(ppn - 1, 4) : ppn - 1;
      gpu_bw_ = std::max(1, peers) * pair_bw_;
      if (sys_.gpu_nvlink_GBps > 0) {
        const double all_links = std::max(1.0, std::round(sys_.gpu_nvlink_GBps / kNominalLinkGBps));
        gpu_bw_ = std::min(gpu_bw_, all_links * per_link);
      }
      gpu_wire_ = gpu_bw_ / per_link * kNominalLinkGBps;
      pair_wire_ = pair_bw_ / per_link * kNominalLinkGBps;
      break;
    }
    case topology::Fabric::kPCIe:
      gpu_bw_ = pair_bw_ = gpu_wire_ = pair_wire_ = sys_.intra_GBps;
      break;
  }
  for (int a = 0; a < kNcclAlgos; ++a) graph_for(static_cast<NcclAlgo>(a));
  tune();
}

// NCCL searches channel graphs on its topology (search.cc). masep's closed form: start at the
// top of the generation's speed ladder, take the first speed s that one path carries and that
// the GPU's total bandwidth holds for the minimum channel count, fill as many channels as fit,
// then duplicate channels as ncclTopoDupChannels does and, for rings, step s up while the
// channels still fit (search.cc pass 2).
void NcclModel::graph_for(NcclAlgo algo) {
  const int a = static_cast<int>(algo);
  Graph& g = graph_[a];
  const bool hopper = sys_.compute_capability >= 90;
  const bool inter = sys_.nodes > 1;
  const int ppn = sys_.ranks_per_node;
  const bool nvls = algo == NcclAlgo::kNvls || algo == NcclAlgo::kNvlsTree;
  if (nvls && !(hopper && sys_.nvls && sys_.fabric == topology::Fabric::kNVSwitch && ppn >= 2)) {
    return;  // no graph: disabled
  }
  const bool collnet = algo == NcclAlgo::kCollNetDirect || algo == NcclAlgo::kCollNetChain;
  if (collnet && !(inter && sys_.sharp)) return;

  const double* intra_ladder = hopper ? kSpeedIntra90 : kSpeedIntra80;
  const int intra_n = hopper ? static_cast<int>(std::size(kSpeedIntra90))
                             : static_cast<int>(std::size(kSpeedIntra80));
  const double* inter_ladder = hopper ? kSpeedInter90 : kSpeedInter80;
  const int inter_n = hopper ? static_cast<int>(std::size(kSpeedInter90))
                             : static_cast<int>(std::size(kSpeedInter80));
  const double* ladder = inter ? inter_ladder : intra_ladder;
  const int nspeeds = inter ? inter_n : intra_n;

  double max_bw = ppn > 1 ? pair_bw_ : kLocBw;
  double total_bw = ppn > 1 ? gpu_bw_ : kLocBw;
  const int nics = std::max(1, std::min(sys_.nics_per_node, ppn));
  if (inter) max_bw = std::min(max_bw, sys_.nic_GBps);
  // Non-ring patterns need not close the ring back to the first GPU (search.cc).
  if (algo != NcclAlgo::kRing && ppn > 1) total_bw *= static_cast<double>(ppn) / (ppn - 1);

  int max_ch = kMaxRingChannels, min_ch = 1;
  if (algo == NcclAlgo::kTree || algo == NcclAlgo::kCollNetChain) {
    max_ch = std::max(1, graph_[kRing].channels);  // init.cc: at most the ring's channels
  } else if (nvls) {
    max_ch = std::min(kMaxNvlsArity, ppn);
    if (!inter) min_ch = max_ch;  // single-node NVLS pulls evenly from every GPU
  } else if (algo == NcclAlgo::kCollNetDirect) {
    max_ch = std::min(kMaxDirectArity, ppn);
  }
  // Channels that fit at speed s: the GPU's total bandwidth, and across nodes the NICs.
  auto fit = [&](double s) {
    int ch = std::min(max_ch, static_cast<int>(std::floor(total_bw / s + 1e-9)));
    if (inter) ch = std::min(ch, nics * static_cast<int>(std::floor(sys_.nic_GBps / s + 1e-9)));
    return ch;
  };
  int idx = 0;
  while (idx < nspeeds - 1 && (ladder[idx] > max_bw || fit(ladder[idx]) < min_ch)) ++idx;
  double s = ladder[idx];
  int ch = fit(s);
  if (ch < min_ch) {
    if (nvls) return;  // NVLS needs its channels
    ch = std::max(1, ch);
  }
  if (nvls) {
    // NVLS: bwIntra at s; pass 2 raises bwInter one ladder step while below 2 × bwIntra.
    g.channels = ch;
    g.bw_intra = s;
    g.bw_inter = s;
    if (inter) {
      // Each channel's head sends through a NIC: the widest inter-node speed the NICs hold.
      int j = 0;
      while (j < inter_n - 1 && inter_ladder[j] * ch > sys_.nic_GBps * nics + 1e-9) ++j;
      g.bw_inter = inter_ladder[j];
    } else if (idx > 0 && ladder[idx - 1] < 2 * s) {
      g.bw_inter = ladder[idx - 1];
    }
    return;
  }
  // ncclTopoDupChannels: fast channels are split in two.
  if (s >= 25.0 && !(hopper && s < 50.0 && ch > 4)) {
    const int dup = std::min(2 * ch, max_ch);
    const int div = (dup + ch - 1) / ch;
    s /= div;
    ch = dup;
    idx = 0;
    while (idx < nspeeds - 1 && ladder[idx] > s) ++idx;
  }
  if (algo == NcclAlgo::kRing) {
    while (idx > 0 && ladder[idx - 1] <= max_bw && fit(ladder[idx - 1]) >= ch) s = ladder[--idx];
  }
  g.channels = ch;
  g.bw_intra = g.bw_inter = s;
  if (inter && algo != NcclAlgo::kRing) {
    // Trees and CollNet: pass 2 raises bwIntra while the node's fabric holds it and it
    // stays below 2 × bwInter.
    int j = 0;
    while (j < intra_n - 1 && intra_ladder[j] > s) ++j;
    const double intra_total = ppn > 1 ? gpu_bw_ * ppn / std::max(1, ppn - 1) : kLocBw;
    while (j > 0 && intra_ladder[j - 1] < 2 * g.bw_inter &&
           intra_ladder[j - 1] * ch <= intra_total &&
           intra_ladder[j - 1] <= (ppn > 1 ? pair_bw_ : kLocBw)) {
      g.bw_intra = intra_ladder[--j];
    }
  }
}

// ncclTopoTuneModel, for all-reduce, all-gather and reduce-scatter.
void NcclModel::tune() {
  const int arch = sys_.compute_capability >= 90 ? kHopper : kAmpere;
  const int n = sys_.ranks, nodes = sys_.nodes, ppn = sys_.ranks_per_node;
  const int index2 = nodes <= 2 ? nodes - 1 : 2;
  const double ll_max = nodes == 1 ? kLLMaxBwOneNode[arch] : kLLMaxBwNodes[index2 - 1];
  const int intra_hw = sys_.fabric == topology::Fabric::kPCIe ? kHwPci : kHwNvlink;
  const bool ll128_ok = sys_.fabric != topology::Fabric::kPCIe;  // LL128 needs NVLink paths
  for (int c = 0; c < 3; ++c) {
    const bool ar = c == 0;
    const int nsteps = ar ? 2 * (n - 1) : n - 1;
    for (int a = 0; a < kNcclAlgos; ++a) {
      if (!ar && a != kRing && a != kNvls) continue;  // AG/RS: ring, NVLS (CollNet/PAT: no)
      const Graph& g = graph_[a];
      if (g.channels == 0) continue;
      if (a == kNvlsTree && nodes == 1) continue;
      if (a == kNvls && nodes > 1 && (!sys_.sharp || !ar)) continue;  // NVLS+SHARP across nodes
      if (a == kCnDirect && sys_.fabric != topology::Fabric::kNVSwitch) continue;
      for (int p = 0; p < kNcclProtos; ++p) {
        if ((a == kNvls || a == kNvlsTree || a == kCnDirect || a == kCnChain) && p != kSimple) {
          continue;
        }
        if (p == kLL128 && !ll128_ok) continue;
        const bool collnet = a == kCnDirect || a == kCnChain;
        double bw = nodes <= 2 || collnet ? g.bw_intra : g.bw_inter;
        if (a == kNvls || a == kNvlsTree) {
          double intra_bw = g.bw_intra * kNvlsEfficiency[arch] * (g.channels - 1) /
                            static_cast<double>(g.channels);
          intra_bw *= ar ? 2.0 : (ppn - 1) / static_cast<double>(ppn);
          const double inter_bw = g.bw_inter * ((nodes <= 2 && a == kNvlsTree) ? 2 : 1);
          bw = std::min(intra_bw, inter_bw);
          if (a == kNvlsTree) bw = std::min(bw, kPerChNvlsTree[arch][index2]);
        }
        double bus = g.channels * bw;
        if (a == kRing && p == kLL) bus = std::min(ll_max, bus * 0.5);
        if (a == kRing && p == kLL128)
          bus = std::min(bus * 0.92, g.channels * kPerChRingLL128[arch][index2]);
        if (a == kTree && ar) bus = std::min(bus * 0.92, g.channels * kPerChTree[arch][index2]);
        if (a == kTree && p == kLL) bus = std::min(bus / 3.8, ll_max);
        if (a == kTree && p == kLL128) {
          bus = std::min(bus * (nodes == 1 ? 7.0 / 9.0 : 120.0 / 128.0),
                         g.channels * kPerChTreeLL128[arch][index2]);
        }
        if (a == kCnDirect) {
          double factor = ppn / static_cast<double>(g.channels);  // GPUs per NIC head
          factor -= (factor - 1) / 2;
          bus /= factor;
          if (arch == kHopper) bus *= 0.85;
        }
        // Bus bandwidth to algorithm bandwidth.
        if (a == kRing || a == kNvls || a == kNvlsTree) {
          if (ar || a == kRing) bus *= static_cast<double>(n) / nsteps;
        } else {
          bus *= 0.5;
        }
        // Latency (µs).
        double lat = kBaseLat[a][p];
        double intra_lat = kHwLat[intra_hw][a][p];
        const double inter_lat = ppn == 1 ? kHwLat[kHwNet][kTree][p] : kHwLat[kHwNet][a][p];
        if (a == kRing) {
          double net_overhead = nodes > 1 ? kNetOverheadUs * (p == kSimple ? 3 : 1) : 0;
          intra_lat = std::max(intra_lat, net_overhead);
          const int inter_steps = nodes == 1 ? 0 : ar ? 2 * (nodes - 1) : nodes - 1;
          lat += (nsteps - inter_steps) * intra_lat + inter_steps * inter_lat;
        } else if (a == kTree) {
          lat += 2 * ((ppn - 1) * intra_lat + log2i(nodes) * inter_lat);
        } else if (a == kCnDirect) {
          lat += 2 * (std::min(1, ppn - 1) * intra_lat + (ppn - 1) * 0.4) + inter_lat;
        } else if (a == kCnChain) {
          lat += 2 * (ppn - 1) * intra_lat + inter_lat;
        } else if (a == kNvls) {
          lat = intra_lat + (nodes > 1 ? inter_lat : 0);
        } else if (a == kNvlsTree) {
          lat += intra_lat + 2 * log2i(nodes) * inter_lat;
        }
        if (!sel_.algo[a] || !sel_.proto[p]) bus = 0;
        bw_[c][a][p] = bus;
        lat_[c][a][p] = lat;
      }
    }
  }
}

std::vector<NcclChoice> NcclModel::candidates(plan::OpKind kind, double bytes) const {
  const int c = coll_index(kind);
  std::vector<NcclChoice> out;
  if (c >= 3) {
    out.push_back(p2p(kind, bytes));
    return out;
  }
  const int log_size = log2i(std::floor(bytes / 64));
  for (int a = 0; a < kNcclAlgos; ++a) {
    for (int p = 0; p < kNcclProtos; ++p) {
      double bw = bw_[c][a][p];
      if (bw <= 0) continue;
      double lat = lat_[c][a][p];
      if (a == kTree && c == 0 && log_size >= 0 && log_size < 23) {
        bw *= kTreeCorrection[p][log_size];
      }
      if (a == kRing && p == kSimple && sys_.nodes > 1 && c == 0 &&
          bytes / (std::max(1, graph_[kRing].channels) * sys_.ranks) >= 64) {
        lat *= 1.4;  // ring plateau (sm80+)
      }
      NcclChoice ch;
      ch.algo = static_cast<NcclAlgo>(a);
      ch.proto = static_cast<NcclProto>(p);
      ch.channels = graph_[a].channels;
      ch.nccl_latency_ns = lat * 1e3;
      ch.nccl_bw_GBps = bw;
      ch.nccl_time_ns = ch.nccl_latency_ns + bytes / bw;  // GB/s == bytes/ns
      ch.latency_ns = ch.nccl_latency_ns;
      ch.bw_GBps = ch.nccl_bw_GBps;
      ch.time_ns = ch.nccl_time_ns;
      if (a == kRing && achieved_applies()) ring_achieved(c, bytes, ch);
      out.push_back(ch);
    }
  }
  return out;
}

NcclChoice NcclModel::choose(plan::OpKind kind, double bytes) const {
  const std::vector<NcclChoice> all = candidates(kind, bytes);
  if (all.empty()) {
    throw std::invalid_argument(fmt::format(
        "NCCL model: no enabled algorithm/protocol can run {} on this system ({} ranks, {} "
        "nodes, compute capability {}{})",
        plan::to_string(kind), sys_.ranks, sys_.nodes, sys_.compute_capability,
        sys_.nvls ? ", NVLS" : ""));
  }
  const NcclChoice* best = &all.front();
  for (const NcclChoice& c : all) {
    if (c.nccl_time_ns < best->nccl_time_ns) best = &c;  // NCCL decides by its own estimate
  }
  return *best;
}

bool NcclModel::achieved_applies() const {
  return sys_.nodes == 1 && sys_.ranks >= 2 && sys_.fabric != topology::Fabric::kPCIe;
}

// Ring collectives on one NVLink node (nccl_model.hpp, "Achieved time").
void NcclModel::ring_achieved(int coll, double bytes, NcclChoice& c) const {
  const int n = sys_.ranks;
  const bool ar = coll == 0;
  const int nsteps = ar ? 2 * (n - 1) : n - 1;
  const double to_alg = static_cast<double>(n) / nsteps;  // bus -> algorithm bandwidth
  double lat_us = 0;
  double bw = c.nccl_bw_GBps;
  switch (c.proto) {
    case NcclProto::kSimple: {
      // Loads and local stores per byte on the link, from the ring's steps (send, recv-reduce-
      // send, recv-reduce-copy(-send), recv-copy-send, direct receives).
      double loads = 1, local_stores = 1.0 / (n - 1);          // all-gather
      if (coll == 2) loads = (2.0 * n - 1) / (n - 1);          // reduce-scatter
      if (ar) loads = 1.5, local_stores = 1.0 / (2.0 * (n - 1));
      const double ns_per_byte =
          1.0 / (kWireEff * gpu_wire_) + (kLoadPs * loads + kLocalStorePs * local_stores) * 1e-3;
      const double bus = std::min(1.0 / ns_per_byte, graph_[kRing].channels * graph_[kRing].bw_intra);
      bw = bus * to_alg;
      lat_us = kSimpleBaseUs + nsteps * kSimpleStepUs;
      break;
    }
    case NcclProto::kLL: {
      const double engaged =
          std::clamp(bytes / kLLRampBytes, 1.0, static_cast<double>(std::max(1, c.channels)));
      lat_us = kLLBaseUs + nsteps * kLLStepUs + kLLRampUs * std::log2(engaged);
      break;
    }
    case NcclProto::kLL128:
      lat_us = kLL128BaseUs + nsteps * kLL128StepUs;
      break;
  }
  c.latency_ns = lat_us * 1e3;
  c.bw_GBps = bw;
  c.time_ns = c.latency_ns + bytes / bw;
  c.achieved = true;
}

// Grouped send/recv on one NVLink node: LL up to 16 KiB per peer at a latency and a low
// rate; Simple at the wire (the pair's links for send/recv, the GPU's for all-to-all) plus a
// per-byte send cost and, for all-to-all, a receive cost that more peers share, after a
// latency that grows with the pipeline's fill until kP2pFillBytes per GPU.
void NcclModel::p2p_achieved(plan::OpKind kind, double bytes, NcclChoice& c) const {
  const bool a2a = kind == plan::OpKind::kAllToAll;
  const int n = sys_.ranks;
  const double moved = a2a ? bytes * (n - 1) / n : bytes;  // bytes each GPU sends
  double lat_us = 0, t_bytes = 0;
  if (c.proto == NcclProto::kLL) {
    lat_us = kP2pLLBaseUs;
    t_bytes = moved / kP2pLLGBps;
  } else {
    lat_us = kP2pBaseUs + kP2pFillUs * std::min(1.0, moved / kP2pFillBytes);
    double ns_per_byte = 1.0 / (kWireEff * (a2a ? gpu_wire_ : pair_wire_)) + kP2pTxPs * 1e-3;
    if (a2a) ns_per_byte += kP2pRxPs * 1e-3 / std::sqrt(static_cast<double>(n - 1));
    t_bytes = moved * ns_per_byte;
  }
  c.latency_ns = lat_us * 1e3;
  c.time_ns = c.latency_ns + t_bytes;
  c.bw_GBps = t_bytes > 0 ? bytes / t_bytes : 0;
  c.achieved = true;
}

// Grouped send/recv (masep's assumption; tuning.cc has no p2p model): LL up to 16 KiB per
// peer, else Simple; the ring's base latency plus one hop of the path's class; each GPU moves
// its bytes at NCCL's path bandwidth (NVLink/PCIe inside a node, its share of the node's NICs
// across nodes), LL at half of it.
NcclChoice NcclModel::p2p(plan::OpKind kind, double bytes) const {
  const bool a2a = kind == plan::OpKind::kAllToAll;
  const int n = sys_.ranks, ppn = sys_.ranks_per_node;
  const double per_peer = a2a ? bytes / std::max(1, n) : bytes;
  int p = per_peer <= kP2pLLThreshold ? kLL : kSimple;
  if (!sel_.proto[p]) p = p == kLL ? kSimple : kLL;
  if (!sel_.proto[p]) {
    throw std::invalid_argument(
        "NCCL model: send/recv and all-to-all use LL or Simple, and the protocol selection "
        "excludes both");
  }
  const bool remote = sys_.nodes > 1;
  const int hw = remote ? kHwNet : sys_.fabric == topology::Fabric::kPCIe ? kHwPci : kHwNvlink;
  NcclChoice c;
  c.algo = NcclAlgo::kP2p;
  c.proto = static_cast<NcclProto>(p);
  c.latency_ns = (kBaseLat[kRing][p] + kHwLat[hw][kRing][p]) * 1e3;
  const double proto_eff = p == kLL ? 0.5 : 1.0;
  const double intra_bw = (a2a ? gpu_bw_ : pair_bw_) * proto_eff;
  const double nic_share =
      remote ? sys_.nic_GBps * std::max(1, std::min(sys_.nics_per_node, ppn)) / ppn * proto_eff : 0;
  double t = 0;
  if (a2a) {
    const double intra_bytes = bytes * (ppn - 1) / n;
    const double inter_bytes = bytes * (n - ppn) / n;
    t = intra_bytes / intra_bw;
    if (inter_bytes > 0) t = std::max(t, inter_bytes / nic_share);
  } else {
    t = bytes / (remote ? std::min(intra_bw, nic_share) : intra_bw);
  }
  c.bw_GBps = t > 0 ? bytes / t : 0;
  c.time_ns = c.latency_ns + t;
  c.nccl_latency_ns = c.latency_ns;
  c.nccl_bw_GBps = c.bw_GBps;
  c.nccl_time_ns = c.time_ns;
  if (achieved_applies()) p2p_achieved(kind, bytes, c);
  return c;
}

}  // namespace masep::sim
