// Google Benchmark of the simulator (not a test): events per second and wall time of whole
// runs, on synthetic MA-separation programs of several sizes and on the compiled paper
// scenario. Figures and the machine that gave them: docs/performance.md.
//
//   ninja -C build masep_bench_sim && ./build/sim/masep_bench_sim
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "masep/plan/compiler.hpp"
#include "masep/plan/loader.hpp"
#include "masep/sim/fluid_network.hpp"
#include "masep/sim/network_model.hpp"
#include "masep/sim/platform.hpp"
#include "masep/sim/simulator.hpp"
#include "masep/sim/synthetic.hpp"
#include "masep/topology/topology.hpp"

namespace {

using masep::sim::Platform;
using masep::sim::SimResult;
using masep::sim::SyntheticSpec;

masep::topology::GpuSpec a100() {
  masep::topology::GpuSpec g;
  g.name = "A100-SXM4-80GB";
  g.bf16_tflops = 312;
  g.fp16_tflops = 312;
  g.hbm_gb = 80;
  g.hbm_GBps = 2039;
  g.sm_count = 108;
  g.nvlink_GBps = 300;
  return g;
}

// Simulates `p` on `plat` once per iteration; reports events/s, ops/s and the simulated
// makespan.
void run(benchmark::State& state, const masep::plan::Program& p, const Platform& plat,
         const masep::sim::SimOptions& options = {}) {
  uint64_t events = 0;
  int64_t makespan = 0;
  for (auto _ : state) {
    SimResult r = masep::sim::simulate(p, plat, options);
    events = r.events;
    makespan = r.timeline.makespan_ns;
    benchmark::DoNotOptimize(r);
  }
  state.counters["events"] = static_cast<double>(events);
  state.counters["ops"] = static_cast<double>(p.ops.size());
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(events) * state.iterations(),
                                                  benchmark::Counter::kIsRate);
  state.counters["sim_ms"] = static_cast<double>(makespan) / 1e6;
}

// Synthetic 12:4 program (16 GPUs, 4 per node on a star of 300 GB/s links), 4 layers,
// 2 micro-batches; range(0) decode steps.
void BM_SyntheticSteps(benchmark::State& state) {
  SyntheticSpec spec;
  spec.steps = static_cast<int>(state.range(0));
  const auto p = masep::sim::synthetic_ma_program(spec);
  const Platform plat = Platform::star(a100(), 16, 4, 300, 500);
  run(state, p, plat);
}
BENCHMARK(BM_SyntheticSteps)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

// GPU count: range(0) attention ranks and range(0)/3 MoE ranks, 4 layers, 100 steps.
void BM_SyntheticGpus(benchmark::State& state) {
  SyntheticSpec spec;
  spec.attention_ranks = static_cast<int>(state.range(0));
  spec.moe_ranks = spec.attention_ranks / 3;
  spec.steps = 100;
  const auto p = masep::sim::synthetic_ma_program(spec);
  const int gpus = spec.attention_ranks + spec.moe_ranks;
  const Platform plat = Platform::star(a100(), gpus, 4, 300, 500);
  run(state, p, plat);
}
BENCHMARK(BM_SyntheticGpus)->Arg(6)->Arg(12)->Arg(24)->Arg(48)->Unit(benchmark::kMillisecond);

// Layers: 12:4, range(0) layers, 100 steps.
void BM_SyntheticLayers(benchmark::State& state) {
  SyntheticSpec spec;
  spec.layers = static_cast<int>(state.range(0));
  spec.steps = 100;
  const auto p = masep::sim::synthetic_ma_program(spec);
  const Platform plat = Platform::star(a100(), 16, 4, 300, 500);
  run(state, p, plat);
}
BENCHMARK(BM_SyntheticLayers)->Arg(4)->Arg(8)->Arg(16)->Unit(benchmark::kMillisecond);

// The paper scenario as the plan compiler builds it (built-in "paper" or "paper-colocated"
// scenario, range(0) decode steps), on its own topology. Compilation is not timed.
void BM_PaperCompiled(benchmark::State& state, const char* scenario) {
  std::unique_ptr<masep::plan::Program> p;
  std::unique_ptr<masep::topology::Topology> topo;
  try {
    const auto s = masep::plan::load_scenario(scenario);
    masep::plan::CompileOptions o;
    o.first_step = 0;
    o.steps = static_cast<int>(state.range(0));
    p = std::make_unique<masep::plan::Program>(masep::plan::compile(s, o));
    topo = std::make_unique<masep::topology::Topology>(s.topology);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  run(state, *p, Platform::from_topology(*topo));
  state.counters["ops/step"] = static_cast<double>(p->ops.size()) / state.range(0);
}
BENCHMARK_CAPTURE(BM_PaperCompiled, paper, "paper")
    ->Arg(100)
    ->Arg(1000)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_PaperCompiled, colocated, "paper-colocated")
    ->Arg(1000)
    ->Unit(benchmark::kMillisecond);

// large-1024gpu, one decode step of range(0) layers, compiled, with its topology; false (the
// benchmark skipped with the error) when it cannot be loaded or compiled.
bool load_large1024(benchmark::State& state, std::unique_ptr<masep::plan::Program>& p,
                    std::unique_ptr<masep::topology::Topology>& topo) {
  try {
    auto s = masep::plan::load_scenario("large-1024gpu");
    s.model.layers = static_cast<int>(state.range(0));
    s.workload.decode_steps = 1;
    p = std::make_unique<masep::plan::Program>(masep::plan::compile(s));
    topo = std::make_unique<masep::topology::Topology>(s.topology);
    return true;
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return false;
  }
}

// The 1,024-GPU scale scenario (scenarios/examples/large-1024gpu.yaml: deepseek-v3-like on
// 128 DGX H100 nodes, 768:256), one decode step with range(0) of its 61 layers (the full
// 100-step run is far beyond a benchmark's time: see docs/performance.md).
void BM_Large1024(benchmark::State& state) {
  std::unique_ptr<masep::plan::Program> p;
  std::unique_ptr<masep::topology::Topology> topo;
  if (!load_large1024(state, p, topo)) return;
  run(state, *p, Platform::from_topology(*topo));
}
BENCHMARK(BM_Large1024)->Arg(1)->Arg(2)->Iterations(1)->Unit(benchmark::kMillisecond);

// The same scenario on the fluid network tier (network_tier = 1: docs/simulator-model.md),
// one decode step of range(0) layers (61 = the full step).
void BM_Large1024Fluid(benchmark::State& state) {
  std::unique_ptr<masep::plan::Program> p;
  std::unique_ptr<masep::topology::Topology> topo;
  if (!load_large1024(state, p, topo)) return;
  masep::sim::SimOptions fluid;
  fluid.params = {{"network_tier", 1}};
  run(state, *p, Platform::from_topology(*topo), fluid);
}
BENCHMARK(BM_Large1024Fluid)->Arg(1)->Arg(61)->Unit(benchmark::kMillisecond);

// Compile + simulate of a scenario with range(0) decode steps, both timed: the whole run
// (plan::compile, then simulate) or streamed (plan::ProgramStream windows of range(1)
// layers, 0 = one step, into sim::simulate_stream; the chunks go to a sink that drops them),
// as `masep sim` runs it without metrics. `fluid`: the fluid network tier.
struct DropSink final : masep::sim::ChunkSink {
  void done(const masep::plan::ProgramChunk&, std::span<const masep::plan::OpTiming>) override {}
};
struct WindowSource final : masep::sim::ChunkSource {
  WindowSource(masep::plan::ProgramStream& p, int l) : ps(p), layers(l) {}
  bool next(masep::plan::ProgramChunk& out) override { return ps.next_layers(layers, out); }
  int remaining() const override {
    return static_cast<int>((ps.layers_left() + layers - 1) / layers);
  }
  masep::plan::ProgramStream& ps;
  int layers;
};
void compile_and_simulate(benchmark::State& state, const char* scenario, bool stream, bool fluid) {
  masep::plan::Scenario s;
  std::unique_ptr<masep::topology::Topology> topo;
  try {
    s = masep::plan::load_scenario(scenario);
    s.workload.decode_steps = static_cast<int>(state.range(0));
    topo = std::make_unique<masep::topology::Topology>(s.topology);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  masep::sim::SimOptions o;
  o.params = {{"network_tier", fluid ? 1.0 : 0.0}};
  const int layers = state.range(1) > 0 ? static_cast<int>(state.range(1)) : s.model.layers;
  uint64_t events = 0;
  for (auto _ : state) {
    if (stream) {
      masep::plan::ProgramStream ps(s);
      WindowSource src(ps, layers);
      DropSink sink;
      events = masep::sim::simulate_stream(ps.header(), src, sink, *topo, o).events;
    } else {
      const masep::plan::Program p = masep::plan::compile(s);
      events = masep::sim::simulate(p, *topo, o).events;
    }
    benchmark::DoNotOptimize(events);
  }
  state.counters["events/s"] =
      benchmark::Counter(static_cast<double>(events) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}
void BM_CompileSimulate(benchmark::State& state, const char* scenario, bool stream) {
  compile_and_simulate(state, scenario, stream, false);
}
BENCHMARK_CAPTURE(BM_CompileSimulate, paper_whole, "paper", false)
    ->Args({1000, 0})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_CompileSimulate, paper_stream, "paper", true)
    ->Args({1000, 0})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_CompileSimulate, colocated_whole, "paper-colocated", false)
    ->Args({1000, 0})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_CompileSimulate, colocated_stream, "paper-colocated", true)
    ->Args({1000, 0})
    ->Unit(benchmark::kMillisecond);
// large-1024gpu (61 layers) on the fluid tier, range(0) steps in windows of 8 layers.
void BM_Large1024Stream(benchmark::State& state) {
  compile_and_simulate(state, "large-1024gpu", true, true);
}
BENCHMARK(BM_Large1024Stream)->Args({2, 8})->Iterations(1)->Unit(benchmark::kMillisecond);

// The network model alone on a co-located-style all-to-all (what BM_PaperCompiled/colocated
// spends half its time on): range(0) GPUs in nodes of 4, each with an egress pair and an
// ingress pair of 25 GB/s links (GPU-NIC and NIC-switch, always carrying the same flows) and a
// 100 GB/s link per ordered intra-node pair. Each of 200 waves sends 8 KiB from every GPU to
// every other, the GPUs starting their sends 40 ns apart (so flows join shared components one
// instant at a time), the next wave once the previous one drained. Counts flow starts and
// completions as events.
void BM_NetworkAllToAll(benchmark::State& state) {
  const int gpus = static_cast<int>(state.range(0));
  const int nic = 4 * gpus;  // links [0, 4*gpus): per GPU egress pair, ingress pair
  std::vector<double> cap(static_cast<size_t>(nic + gpus * gpus), 100.0);
  for (int l = 0; l < nic; ++l) cap[static_cast<size_t>(l)] = 25.0;
  std::vector<std::vector<int>> routes(static_cast<size_t>(gpus * gpus));
  for (int s = 0; s < gpus; ++s) {
    for (int d = 0; d < gpus; ++d) {
      auto& r = routes[static_cast<size_t>(s * gpus + d)];
      if (s / 4 == d / 4) {
        r = {nic + s * gpus + d};
      } else {
        r = {4 * s, 4 * s + 1, 4 * d + 3, 4 * d + 2};
      }
    }
  }
  uint64_t events = 0;
  std::vector<uint32_t> done;
  for (auto _ : state) {
    masep::sim::NetworkModel net(cap);
    int64_t now = 0;
    for (int wave = 0; wave < 200; ++wave) {
      for (int s = 0; s < gpus; ++s) {
        const int64_t t0 = now + 40 * s;
        // Completions due before this GPU's sends start.
        for (int64_t t = net.next_event_time(); t < t0; t = net.next_event_time()) {
          done.clear();
          net.advance(t, done);
          events += done.size();
        }
        for (int k = 1; k < gpus; ++k) {
          const int d = (s + k) % gpus;
          net.start_flow(t0, routes[static_cast<size_t>(s * gpus + d)], 8192.0,
                         static_cast<uint32_t>(d));
          ++events;
        }
      }
      for (int64_t t = net.next_event_time(); t != masep::sim::NetworkModel::kNever;
           t = net.next_event_time()) {
        done.clear();
        net.advance(t, done);
        events += done.size();
        now = t;
      }
    }
    benchmark::DoNotOptimize(now);
  }
  state.counters["events/s"] =
      benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_NetworkAllToAll)->Arg(16)->Unit(benchmark::kMillisecond);

// The fluid tier's model alone on large-1024gpu's exchange pattern: range(0) senders (GPUs
// 0..), each sending 16 transfers of 14,336 bytes (one token row of hidden 7168, bf16) to
// pseudo-random receivers among range(0) / 3 others, over 4-link routes (GPU -> NIC ->
// switch -> NIC -> GPU, 50 GB/s) as inter-node transfers take. Each of 20 waves: the senders
// start in 8 groups 500 ns apart (overlapping phases on the receivers' links); the next
// wave once the previous one drained. Counts flow starts and completions as events.
void BM_FluidExchange(benchmark::State& state) {
  const int senders = static_cast<int>(state.range(0)), receivers = senders / 3;
  const int gpus = senders + receivers;
  std::vector<double> cap(static_cast<size_t>(4 * gpus), 50.0);
  std::vector<std::vector<int>> routes;
  uint32_t x = 12345;
  for (int s = 0; s < senders; ++s) {
    for (int k = 0; k < 16; ++k) {
      x = x * 1664525u + 1013904223u;
      const int d = senders + static_cast<int>((x >> 8) % static_cast<uint32_t>(receivers));
      routes.push_back({4 * s, 4 * s + 1, 4 * d + 3, 4 * d + 2});
    }
  }
  uint64_t events = 0;
  std::vector<uint32_t> done;
  for (auto _ : state) {
    masep::sim::FluidNetwork net(cap);
    int64_t now = 0;
    for (int wave = 0; wave < 20; ++wave) {
      for (int g = 0; g < 8; ++g) {
        const int64_t t0 = now + 500 * g;
        for (int64_t t = net.next_event_time(); t < t0; t = net.next_event_time()) {
          done.clear();
          net.advance(t, done);
          events += done.size();
        }
        for (int s = g; s < senders; s += 8) {
          for (int k = 0; k < 16; ++k) {
            net.start_flow(t0, routes[static_cast<size_t>(16 * s + k)], 14336.0,
                           static_cast<uint32_t>(16 * s + k));
            ++events;
          }
        }
      }
      for (int64_t t = net.next_event_time(); t != masep::sim::FluidNetwork::kNever;
           t = net.next_event_time()) {
        done.clear();
        net.advance(t, done);
        events += done.size();
        now = t;
      }
    }
    benchmark::DoNotOptimize(now);
  }
  state.counters["events/s"] =
      benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_FluidExchange)->Arg(768)->Unit(benchmark::kMillisecond);

// Topology at cluster scale: builds the cluster of range(0) GPUs (DGX H100 nodes of 8, as in
// topology/zoo/cluster-128xdgx-h100.yaml with more nodes: sim/bench/cluster-2048xdgx-h100.yaml
// is the 16,384-GPU one) and its simulator Platform, then fetches the routes an MA plan of
// that size touches from 64 sources (each to every GPU). Issue 13's target: 16,384 GPUs load
// in < 1 s and < 100 MB (RSS: `masep collective -t sim/bench/cluster-2048xdgx-h100.yaml`).
void BM_TopologyBuild(benchmark::State& state) {
  const int gpus = static_cast<int>(state.range(0));
  masep::topology::TopologySpec s;
  s.name = "bench-cluster";
  s.gpu = a100();
  s.nodes = gpus / 8;
  s.gpus_per_node = 8;
  s.intra = masep::topology::Fabric::kNVSwitch;
  s.intra_GBps = 450;
  s.intra_latency_ns = 500;
  for (int i = 0; i < 8; ++i) s.nics.push_back({50, 2000, {i}});
  s.switch_latency_ns = 1500;
  int64_t hops = 0;
  for (auto _ : state) {
    const masep::topology::Topology topo(s);
    const Platform plat = Platform::from_topology(topo);
    for (int k = 0; k < 64; ++k) {
      const int src = static_cast<int>((static_cast<int64_t>(k) * gpus) / 64);
      for (int dst = 0; dst < gpus; ++dst) {
        if (dst != src) hops += static_cast<int64_t>(plat.route(src, dst).links.size());
      }
    }
    benchmark::DoNotOptimize(hops);
  }
  state.counters["links"] = static_cast<double>(6 * gpus);
  state.counters["routes"] = 64.0 * (gpus - 1);
}
BENCHMARK(BM_TopologyBuild)->Arg(1024)->Arg(16384)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
