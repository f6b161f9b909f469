// Loading descriptions from YAML into validated plain structs. The only place in masep that
// touches YAML. Every error is an InputError naming file, line, column and key path
// (e.g. "scenarios/paper.yaml:12:5: plan.attention.head_parallel: 5 does not divide 32 heads").
//
// A scenario file looks like (docs/schema.md lists every field with unit and default):
//   name: paper-ma-12x4
//   model: paper-moe            # built-in name, a path relative to this file, or a mapping
//   topology: paper-16xa100
//   plan: {kind: ma_separation, attention: {gpus: 12, head_parallel: 4, replicas: 3},
//          moe: {gpus: 4}, micro_batches: 2}
//   workload: {batch: 256, context: 2048, decode_steps: 16, routing: {kind: uniform}, seed: 7}
#pragma once

#include <string>
#include <vector>

#include "masep/models/model.hpp"
#include "masep/plan/scenario.hpp"
#include "masep/topology/topology.hpp"

namespace masep::plan {

/// Reads a model from a built-in name (see builtin_model_names()) or a YAML file path.
models::Model load_model(const std::string& name_or_path);
/// Reads a topology from a built-in name or a YAML file path.
topology::TopologySpec load_topology(const std::string& name_or_path);
/// Reads a GPU spec from a built-in name ("A100-SXM4-80GB", ...).
topology::GpuSpec builtin_gpu(const std::string& name);

/// Reads a scenario from a built-in name ("paper", ...) or a YAML file path, then applies
/// `overrides` ("plan.attention.gpus=8", YAML scalars or flow sequences after '='), then
/// validates the whole. Throws InputError.
Scenario load_scenario(const std::string& name_or_path,
                       const std::vector<std::string>& overrides = {});
/// Same, from YAML text; `origin` is used in messages and to resolve relative paths.
Scenario parse_scenario(const std::string& yaml_text, const std::string& origin,
                        const std::vector<std::string>& overrides = {});

/// Cross-checks a scenario (plan vs model vs topology) and throws InputError with the key
/// path at fault (e.g. "plan.attention.head_parallel: 5 does not divide 32 heads").
void validate_scenario(const Scenario& s);

std::vector<std::string> builtin_model_names();
std::vector<std::string> builtin_topology_names();
std::vector<std::string> builtin_gpu_names();
std::vector<std::string> builtin_scenario_names();

}  // namespace masep::plan
