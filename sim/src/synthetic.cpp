#include "masep/sim/synthetic.hpp"

#include <stdexcept>
#include <utility>

namespace masep::sim {

using plan::OpId;
using plan::OpKind;

ProgramBuilder::ProgramBuilder(int ranks, std::vector<int> gpus) {
  if (!gpus.empty() && static_cast<int>(gpus.size()) != ranks) {
    throw std::invalid_argument("ProgramBuilder: gpus must list one GPU per rank");
  }
  p_.scenario = "hand-made";
  p_.ranks.resize(ranks);
  p_.stream_ops.resize(ranks);
  for (int r = 0; r < ranks; ++r) p_.ranks[r].gpu = gpus.empty() ? r : gpus[r];
}

void ProgramBuilder::set_tags(int layer, int step, int micro_batch) {
  layer_ = layer;
  step_ = step;
  mb_ = micro_batch;
}

OpId ProgramBuilder::add(int rank, uint8_t stream, OpKind kind, std::string name,
                         std::vector<OpId> deps) {
  plan::Op o;
  o.id = static_cast<OpId>(p_.ops.size());
  o.rank = rank;
  o.stream = stream;
  o.kind = kind;
  o.name = std::move(name);
  o.layer = layer_;
  o.step = step_;
  o.micro_batch = mb_;
  o.deps = std::move(deps);
  p_.stream_ops.at(rank)[stream].push_back(o.id);
  p_.ops.push_back(std::move(o));
  return p_.ops.back().id;
}

OpId ProgramBuilder::compute(int rank, OpKind kind, std::string name, double flops,
                             int64_t hbm_bytes, std::vector<OpId> deps) {
  const OpId id = add(rank, plan::kCompute, kind, std::move(name), std::move(deps));
  p_.ops[id].flops = flops;
  p_.ops[id].hbm_bytes = hbm_bytes;
  return id;
}

OpId ProgramBuilder::send(int rank, int peer, int64_t bytes, std::vector<OpId> deps) {
  const OpId id = add(rank, plan::kComm, OpKind::kSend, "send", std::move(deps));
  p_.ops[id].peer = peer;
  p_.ops[id].comm_bytes = bytes;
  return id;
}

OpId ProgramBuilder::recv(int rank, int peer, int64_t bytes, std::vector<OpId> deps) {
  const OpId id = add(rank, plan::kComm, OpKind::kRecv, "recv", std::move(deps));
  p_.ops[id].peer = peer;
  p_.ops[id].comm_bytes = bytes;
  return id;
}

void ProgramBuilder::connect(OpId send, OpId recv) {
  p_.ops[send].match = recv;
  p_.ops[recv].match = send;
}

int ProgramBuilder::exchange() {
  p_.exchanges.emplace_back();
  return static_cast<int>(p_.exchanges.size()) - 1;
}

OpId ProgramBuilder::exchange_op(int rank, int x, std::vector<OpId> deps) {
  const OpId id = add(rank, plan::kComm, OpKind::kExchange, "exchange", std::move(deps));
  p_.ops[id].exchange = x;
  return id;
}

void ProgramBuilder::transfer(int x, OpId src_op, OpId dst_op, int64_t bytes) {
  p_.exchanges.at(x).transfers.push_back({src_op, dst_op, bytes});
  p_.ops.at(src_op).comm_bytes += bytes;
  p_.ops.at(dst_op).comm_bytes += bytes;
}

int ProgramBuilder::group(std::string name, std::vector<int32_t> ranks) {
  p_.groups.push_back({std::move(name), std::move(ranks)});
  return static_cast<int>(p_.groups.size()) - 1;
}

std::vector<OpId> ProgramBuilder::collective(OpKind kind, int group, int64_t bytes,
                                             std::vector<std::vector<OpId>> member_deps,
                                             std::vector<std::vector<int64_t>> matrix) {
  const std::vector<int32_t> ranks = p_.groups.at(group).ranks;
  plan::Collective c;
  c.kind = kind;
  c.group = group;
  c.bytes = bytes;
  c.matrix = std::move(matrix);
  const int index = static_cast<int>(p_.collectives.size());
  for (size_t i = 0; i < ranks.size(); ++i) {
    std::vector<OpId> deps = i < member_deps.size() ? member_deps[i] : std::vector<OpId>{};
    const OpId id = add(ranks[i], plan::kComm, kind, "collective", std::move(deps));
    p_.ops[id].collective = index;
    p_.ops[id].comm_bytes = bytes;
    c.ops.push_back(id);
  }
  p_.collectives.push_back(std::move(c));
  return p_.collectives.back().ops;
}

plan::Program ProgramBuilder::build() {
  plan::Program out = std::move(p_);
  p_ = {};
  return out;
}

plan::Program synthetic_ma_program(const SyntheticSpec& s) {
  const int A = s.attention_ranks, M = s.moe_ranks;
  ProgramBuilder b(A + M);
  constexpr double kTokensPerRank = 32;
  const double hidden = 4096;
  std::vector<OpId> sends(static_cast<size_t>(A) * M), recvs(static_cast<size_t>(A) * M);
  std::vector<OpId> back_send(static_cast<size_t>(A) * M), back_recv(static_cast<size_t>(A) * M);
  for (int step = 0; step < s.steps; ++step) {
    for (int layer = 0; layer < s.layers; ++layer) {
      for (int mb = 0; mb < s.micro_batches; ++mb) {
        b.set_tags(layer, step, mb);
        for (int a = 0; a < A; ++a) {
          b.compute(a, OpKind::kGemm, "qkv", 2 * kTokensPerRank * hidden * hidden * 1.5,
                    s.attn_weight_bytes * 3 / 4);
          b.compute(a, OpKind::kAttention, "attn", 4.0 * s.kv_bytes / 2, s.kv_bytes);
          b.compute(a, OpKind::kGemm, "out", 2 * kTokensPerRank * hidden * hidden,
                    s.attn_weight_bytes / 4);
          const OpId norm = b.compute(a, OpKind::kElementwise, "norm", 0,
                                      static_cast<int64_t>(kTokensPerRank * hidden * 4));
          for (int m = 0; m < M; ++m) sends[a * M + m] = b.send(a, A + m, s.token_bytes, {norm});
        }
        for (int m = 0; m < M; ++m) {
          std::vector<OpId> got;
          for (int a = 0; a < A; ++a) {
            recvs[a * M + m] = b.recv(A + m, a, s.token_bytes);
            b.connect(sends[a * M + m], recvs[a * M + m]);
            got.push_back(recvs[a * M + m]);
          }
          b.compute(A + m, OpKind::kGroupedGemm, "expert_up",
                    2 * kTokensPerRank * A / M * hidden * hidden * 2, s.expert_weight_bytes * 2 / 3,
                    got);
          b.compute(A + m, OpKind::kElementwise, "act", 0, s.token_bytes * A * 2);
          const OpId down =
              b.compute(A + m, OpKind::kGroupedGemm, "expert_down",
                        2 * kTokensPerRank * A / M * hidden * hidden, s.expert_weight_bytes / 3);
          for (int a = 0; a < A; ++a)
            back_send[a * M + m] = b.send(A + m, a, s.token_bytes, {down});
        }
        for (int a = 0; a < A; ++a) {
          std::vector<OpId> got;
          for (int m = 0; m < M; ++m) {
            back_recv[a * M + m] = b.recv(a, A + m, s.token_bytes);
            b.connect(back_send[a * M + m], back_recv[a * M + m]);
            got.push_back(back_recv[a * M + m]);
          }
          b.compute(a, OpKind::kCombine, "combine", 0, s.token_bytes * M * 2, got);
        }
      }
    }
  }
  plan::Program p = b.build();
  p.scenario = "synthetic-ma";
  p.steps = s.steps;
  p.layers = s.layers;
  p.micro_batches = s.micro_batches;
  for (int r = 0; r < A + M; ++r)
    p.ranks[r].role = r < A ? plan::Role::kAttention : plan::Role::kMoe;
  return p;
}

}  // namespace masep::sim
