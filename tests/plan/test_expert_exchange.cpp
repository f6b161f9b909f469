// plan.expert_exchange (issue 14): the bytes of the dispatch and return as the compiler emits
// them — the fp8 dispatch payload with its per-128 scales, DeepEP-style hierarchical exchange
// (one inter-node copy per token and destination node, then NVLink forwarding), the
// low-latency mode (one message per token·expert pair, tagged for the simulator) — and the
// scenario keys' validation.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>

#include "fixtures.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/program_json.hpp"

namespace masep::plan {
namespace {

using testing::paper_scenario;

Scenario small(Scenario s) {
  s.workload.decode_steps = 2;
  return s;
}

// Per (step, layer, micro-batch): the bytes of the transfers of exchange ops named `name`.
std::map<std::tuple<int, int, int>, int64_t> bytes_by_call(const Program& p,
                                                           const std::string& name) {
  std::map<std::tuple<int, int, int>, int64_t> out;
  for (const Exchange& x : p.exchanges) {
    for (const Transfer& t : x.transfers) {
      const Op& o = p.ops[static_cast<size_t>(t.src_op)];
      if (o.name == name) out[{o.step, o.layer, o.micro_batch}] += t.bytes;
    }
  }
  return out;
}

TEST(ExpertExchange, Fp8DispatchCarriesScalesAndCombineIsBf16) {
  Scenario s = small(paper_scenario());
  s.model.precision.dispatch = models::DType::kFP8;
  s.topology.gpu.fp8_tflops = 1;  // the compiler does not check the GPU; the loader does
  const Program p = compile(s);
  const int64_t tokens = s.workload.batch / s.plan.micro_batches;
  // hidden 4096: 4096 fp8 bytes + 32 fp32 scales (one per 128) = 4224 bytes per row.
  const int64_t fp8_row = 4096 + 32 * 4;
  const auto dispatch = bytes_by_call(p, "dispatch");
  const auto ret = bytes_by_call(p, "return");
  ASSERT_EQ(dispatch.size(), static_cast<size_t>(p.steps * p.layers * p.micro_batches));
  for (const auto& [key, b] : dispatch) {
    EXPECT_EQ(b, tokens * s.model.top_k * fp8_row);
    EXPECT_EQ(ret.at(key), tokens * s.model.top_k * 4096 * 2);  // bf16 combine
  }
}

// The hierarchical exchange's bytes against a count from the recorded token routing: every
// token of attention rank a goes once to each node (other than a's) holding one of its
// experts, and once to each destination GPU.
void check_hierarchical(const Scenario& s) {
  CompileOptions o;
  o.record_token_routing = true;
  const Program p = compile(s, o);
  check_program(p);
  const int gpn = s.topology.gpus_per_node;
  const int64_t row = models::vector_bytes(s.model.precision.dispatch, 1, s.model.hidden);
  const int64_t row_back = models::vector_bytes(s.model.precision.combine, 1, s.model.hidden);
  auto node = [&](int rank) { return p.ranks[static_cast<size_t>(rank)].gpu / gpn; };
  // Expected per (step, layer, mb, sender): inter-node copies, and per (.., sender, MoE rank)
  // distinct tokens.
  std::map<std::tuple<int, int, int, int>, int64_t> want_rdma, got_rdma, got_rdma_back;
  std::map<std::tuple<int, int, int, int, int>, int64_t> want_rows;
  int64_t direct_bytes = 0;  // what mode nccl would send (one row per token·expert pair)
  for (const RoutingSample& rs : p.routing) {
    for (int a = 0; a < p.layout.attention_ranks; ++a) {
      const RankBatch& b =
          p.ranks[static_cast<size_t>(a)].batches[static_cast<size_t>(rs.micro_batch)];
      for (int64_t q = b.slice_first; q < b.slice_first + b.slice_tokens; ++q) {
        std::set<int> gpus, nodes;
        for (int j = 0; j < s.model.top_k; ++j) {
          const int e =
              rs.token_experts[static_cast<size_t>((q - rs.first_sequence) * s.model.top_k + j)];
          const auto& holders = p.layout.expert_holders[static_cast<size_t>(e)];
          const int g = p.layout.moe_base + holders[static_cast<size_t>(a) % holders.size()];
          gpus.insert(g);
          if (node(g) != node(a)) nodes.insert(node(g));
          direct_bytes += row;
        }
        want_rdma[{rs.step, rs.layer, rs.micro_batch, a}] +=
            static_cast<int64_t>(nodes.size()) * row;
        for (int g : gpus) ++want_rows[{rs.step, rs.layer, rs.micro_batch, a, g}];
      }
    }
  }
  int64_t rdma_total = 0, nvl_total = 0;
  for (const Exchange& x : p.exchanges) {
    for (const Transfer& t : x.transfers) {
      const Op& src = p.ops[static_cast<size_t>(t.src_op)];
      const Op& dst = p.ops[static_cast<size_t>(t.dst_op)];
      if (src.role != OpRole::kDispatch && src.role != OpRole::kReturn) continue;
      EXPECT_EQ(x.transport, ExchangeTransport::kDeepEpNormal) << src.name;
      EXPECT_EQ(x.sms, 20) << "hierarchical's default SMs (DeepSeek-V3: 20)";
      const bool rdma = src.name == "dispatch_rdma" || src.name == "return_rdma";
      // Inter-node stages cross nodes to the member with the sender's local index; NVLink
      // stages stay inside a node.
      if (rdma) {
        EXPECT_NE(node(src.rank), node(dst.rank)) << src.name;
        EXPECT_EQ(p.ranks[static_cast<size_t>(src.rank)].gpu % gpn,
                  p.ranks[static_cast<size_t>(dst.rank)].gpu % gpn)
            << src.name;
      } else {
        EXPECT_EQ(node(src.rank), node(dst.rank)) << src.name;
      }
      if (src.name == "dispatch_rdma") {
        got_rdma[{src.step, src.layer, src.micro_batch, src.rank}] += t.bytes;
        rdma_total += t.bytes;
      } else if (src.name == "return_rdma") {
        got_rdma_back[{dst.step, dst.layer, dst.micro_batch, dst.rank}] += t.bytes;
      } else if (src.name == "dispatch_nvl") {
        nvl_total += t.bytes;
      }
    }
  }
  // Drop senders with no inter-node copy from the expectation (no transfer is emitted).
  for (auto it = want_rdma.begin(); it != want_rdma.end();) {
    it = it->second == 0 ? want_rdma.erase(it) : std::next(it);
  }
  EXPECT_EQ(got_rdma, want_rdma);
  // The return's inter-node stage sends the same tokens back, in the combine format.
  ASSERT_EQ(got_rdma_back.size(), got_rdma.size());
  for (const auto& [key, b] : got_rdma) EXPECT_EQ(got_rdma_back.at(key), b / row * row_back);
  // Fewer bytes cross nodes than the direct exchange sends in all.
  EXPECT_GT(rdma_total, 0);
  EXPECT_LT(rdma_total, direct_bytes);
  EXPECT_GT(nvl_total, 0);
  // Each MoE rank's permute reads one row per (token, sender) it serves: the distinct tokens.
  std::map<std::tuple<int, int, int, int>, int64_t> want_moe_rows, got_moe_rows;
  for (const auto& [key, n] : want_rows) {
    const auto& [st, l, mb, a, g] = key;
    want_moe_rows[{st, l, mb, g}] += n;
  }
  for (const Op& o : p.ops) {
    if (o.role == OpRole::kMoePermute) got_moe_rows[{o.step, o.layer, o.micro_batch, o.rank}] = o.k;
  }
  EXPECT_EQ(got_moe_rows, want_moe_rows);
}

TEST(ExpertExchange, HierarchicalSendsOneInterNodeCopyPerTokenAndNode) {
  // The paper plan: attention GPUs 0-11 (nodes 0-2), MoE GPUs 12-15 (node 3): every token
  // crosses once, whatever its top-2.
  Scenario s = small(paper_scenario());
  s.plan.expert_exchange.mode = ExchangeMode::kHierarchical;
  check_hierarchical(s);
  const Program p = compile(s);
  for (const auto& [key, b] : bytes_by_call(p, "dispatch_rdma")) {
    EXPECT_EQ(b, s.workload.batch / s.plan.micro_batches * 4096 * 2);
  }
  // MoE GPUs on two nodes and attention GPUs on all four (some forward as proxies: GPU 8 on
  // node 2 receives for GPU 10 from senders with local index 0).
  s.plan.gpu_ranks = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15};
  check_hierarchical(s);
  // Zipf routing, dispatch in fp8.
  s.workload.routing.kind = RoutingKind::kZipf;
  s.workload.routing.zipf_skew = 1.2;
  s.model.precision.dispatch = models::DType::kFP8;
  s.topology.gpu.fp8_tflops = 1;
  check_hierarchical(s);
}

TEST(ExpertExchange, LowLatencySendsEveryTokenExpertPairTagged) {
  Scenario s = small(paper_scenario());
  const Program nccl = compile(s);
  s.plan.expert_exchange.mode = ExchangeMode::kLowLatency;
  const Program ll = compile(s);
  check_program(ll);
  ASSERT_EQ(ll.exchanges.size(), nccl.exchanges.size());
  for (size_t i = 0; i < ll.exchanges.size(); ++i) {
    EXPECT_EQ(ll.exchanges[i].transport, ExchangeTransport::kDeepEpLowLatency);
    EXPECT_EQ(ll.exchanges[i].sms, 0);  // the receive hook holds no SMs
    EXPECT_EQ(nccl.exchanges[i].transport, ExchangeTransport::kNccl);
    EXPECT_EQ(nccl.exchanges[i].sms, 0);
    ASSERT_EQ(ll.exchanges[i].transfers.size(), nccl.exchanges[i].transfers.size());
    for (size_t j = 0; j < ll.exchanges[i].transfers.size(); ++j) {
      EXPECT_EQ(ll.exchanges[i].transfers[j].bytes, nccl.exchanges[i].transfers[j].bytes);
    }
  }
  s.plan.expert_exchange.comm_sms = 8;
  for (const Exchange& x : compile(s).exchanges) EXPECT_EQ(x.sms, 8);
}

TEST(ExpertExchange, ProgramDumpKeepsTransportAndSms) {
  Scenario s = small(paper_scenario());
  s.plan.expert_exchange.mode = ExchangeMode::kHierarchical;
  const Program p = compile(s);
  std::stringstream out;
  write_program_json(p, out);
  EXPECT_NE(out.str().find("\"transport\":\"deepep_normal\""), std::string::npos);
  const Program back = read_program_json(out, "dump");
  ASSERT_EQ(back.exchanges.size(), p.exchanges.size());
  for (size_t i = 0; i < p.exchanges.size(); ++i) {
    EXPECT_EQ(back.exchanges[i].transport, ExchangeTransport::kDeepEpNormal);
    EXPECT_EQ(back.exchanges[i].sms, 20);
  }
  // NCCL exchanges without SMs write neither key (dumps of such Programs as before).
  std::stringstream plain;
  write_program_json(compile(small(paper_scenario())), plain);
  EXPECT_EQ(plain.str().find("transport"), std::string::npos);
  EXPECT_EQ(plain.str().find("\"sms\""), std::string::npos);
  // A bad transport is named with its place.
  std::string text = out.str();
  const std::string key = "\"transport\":\"deepep_normal\"";
  text.replace(text.find(key), key.size(), "\"transport\":\"rdma\"");
  std::istringstream bad(text);
  try {
    read_program_json(bad, "dump");
    ADD_FAILURE() << "unknown transport accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("exchanges[0].transport"), std::string::npos) << e.what();
  }
}

// Parses `text` expecting an InputError; returns its message.
std::string parse_error(const std::string& text) {
  try {
    parse_scenario(text, "t.yaml");
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for:\n" << text;
  return "";
}

TEST(ExpertExchange, ScenarioKeysAreReadAndCheckedWithTheirLine) {
  const std::string base = testing::kPaperScenarioText;
  const std::string at = "  micro_batches: 2\n";  // line 8
  auto with = [&](const std::string& lines) {
    std::string t = base;
    t.replace(t.find(at), at.size(), at + lines);  // from line 9
    return t;
  };
  const Scenario s =
      parse_scenario(with("  expert_exchange: {mode: hierarchical, comm_sms: 24}\n"), "t.yaml");
  EXPECT_EQ(s.plan.expert_exchange.mode, ExchangeMode::kHierarchical);
  EXPECT_EQ(s.plan.expert_exchange.sms(), 24);
  EXPECT_EQ(parse_scenario(base, "t.yaml").plan.expert_exchange.mode, ExchangeMode::kNccl);
  std::string e = parse_error(with("  expert_exchange: {mode: deepep}\n"));
  EXPECT_NE(e.find("t.yaml:9"), std::string::npos) << e;
  EXPECT_NE(e.find("plan.expert_exchange.mode"), std::string::npos) << e;
  EXPECT_NE(e.find("low_latency"), std::string::npos) << e;  // lists the spellings
  e = parse_error(with("  expert_exchange:\n    mode: hierarchical\n    comm_sms: 108\n"));
  EXPECT_NE(e.find("t.yaml:11"), std::string::npos) << e;
  EXPECT_NE(e.find("plan.expert_exchange.comm_sms"), std::string::npos) << e;
  EXPECT_NE(e.find("108 SMs"), std::string::npos) << e;
  e = parse_error(with("  expert_exchange: {comm_sms: -1}\n"));
  EXPECT_NE(e.find("plan.expert_exchange.comm_sms"), std::string::npos) << e;
  e = parse_error(with("  expert_exchange: {mode: nccl, sms: 4}\n"));
  EXPECT_NE(e.find("sms"), std::string::npos) << e;
}

}  // namespace
}  // namespace masep::plan
