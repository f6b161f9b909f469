// Sweep files through the scenario loader's YAML machinery (issue 21): every bad sweep is an
// InputError at its file, line and key; the shared YAML checks (nesting, anchors, empty
// files) hold for scenarios and calibrations too.
#include <gtest/gtest.h>

#include <string>

#include "masep/plan/calibration.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/sweep.hpp"

namespace masep::plan {
namespace {

InputError sweep_error(const std::string& text) {
  try {
    parse_sweep(text, "s.yaml");
  } catch (const InputError& e) {
    return e;
  }
  ADD_FAILURE() << "expected an InputError for:\n" << text;
  return InputError("", 0, 0, "", "");
}

#define EXPECT_AT(err, line_, key_, substr)                                         \
  do {                                                                              \
    const InputError& e_ = (err);                                                   \
    EXPECT_EQ(e_.file(), "s.yaml") << e_.what();                                    \
    EXPECT_EQ(e_.line(), line_) << e_.what();                                       \
    EXPECT_EQ(e_.key(), key_) << e_.what();                                         \
    EXPECT_NE(std::string(e_.what()).find(substr), std::string::npos) << e_.what(); \
  } while (0)

TEST(SweepFile, ParsesPointsGridAndPlots) {
  const Sweep s = parse_sweep(
      "name: t\nbase: paper\nset: {workload.decode_steps: 2}\n"
      "points:\n  - {plan.moe.gpus: 4, label: four}\n  - {plan.moe.gpus: 8, label: eight}\n"
      "grid:\n  workload.batch: [24, 48, 96]\n"
      "output:\n  plots:\n    - {name: p, x: workload.batch, y: [tpot_mean_ms], logx: true}\n",
      "s.yaml");
  EXPECT_EQ(s.name, "t");
  EXPECT_EQ(s.out_dir, "sweep-out/t");
  ASSERT_EQ(s.points.size(), 6u);
  EXPECT_EQ(s.fixed, std::vector<std::string>{"workload.decode_steps=2"});
  EXPECT_EQ(s.points[5].overrides.back(),
            (std::pair<std::string, std::string>("workload.batch", "96")));
  ASSERT_EQ(s.plots.size(), 1u);
  EXPECT_TRUE(s.plots[0].logx);
  EXPECT_EQ(s.plots[0].line, 11);
}

TEST(SweepFile, EveryProblemIsLocated) {
  EXPECT_AT(sweep_error("name: x\nname: y\nbase: paper\n"), 2, "name", "duplicate key");
  EXPECT_AT(sweep_error("name: x\nbase: paper\ngrid:\n  a: [1]\n  a: [2]\n"), 5, "grid.a",
            "duplicate key");
  EXPECT_AT(sweep_error("name: x\nbase: paper\noutput:\n  plots:\n"
                        "    - {name: a, x: batch, y: tpot_mean_ms, logx: sometimes}\n"),
            5, "output.plots[0].logx", "expected true or false, got 'sometimes'");
  EXPECT_AT(sweep_error("name: x\nbase: [paper\n"), 3, "", "YAML syntax error");
  EXPECT_AT(sweep_error("name: ../../escape\nbase: paper\n"), 1, "name", "sweep-out/<name>");
  EXPECT_AT(sweep_error("name: x\nbases: paper\n"), 2, "bases", "did you mean 'base'");
  EXPECT_AT(sweep_error("name: x\nbase: paper\npoints: []\n"), 3, "points", "non-empty");
  EXPECT_AT(sweep_error("name: x\nbase: paper\nset: {a: }\n"), 3, "set.a", "missing value");
  EXPECT_EQ(sweep_error("").what(),
            std::string("s.yaml: empty sweep file (a mapping; see docs/sweep.md)"));
}

TEST(SweepFile, GridPointCountCannotWrap) {
  // 16 keys x 16 values = 2^64 points: the product must not wrap to 0 and pass the cap.
  std::string text = "name: x\nbase: paper\ngrid:\n";
  for (int k = 0; k < 16; ++k) {
    text += "  k" + std::to_string(k) + ": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]\n";
  }
  EXPECT_AT(sweep_error(text), 4, "grid", "more than 100000");
}

TEST(YamlChecks, DeepNestingAndAliasesAreNamedForEveryReader) {
  const std::string deep = "a: " + std::string(100000, '[') + std::string(100000, ']') + "\n";
  EXPECT_AT(sweep_error(deep), 1, "", "nested deeper than 64 levels");
  std::string blocks;
  for (int i = 0; i < 300; ++i) blocks += std::string(static_cast<size_t>(i), ' ') + "k:\n";
  EXPECT_AT(sweep_error(blocks), 258, "", "indented deeper than 256 columns");
  EXPECT_AT(sweep_error("name: x\nbase: paper\nset: &a {b: 1}\n"), 3, "", "anchors and aliases");
  EXPECT_THROW(parse_scenario(deep, "d.yaml"), InputError);
  try {
    parse_calibration(deep, "c.yaml");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.line(), 1);
    EXPECT_NE(std::string(e.what()).find("nested deeper"), std::string::npos) << e.what();
  }
  try {
    parse_calibration("", "c.yaml");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), "c.yaml") << e.what();  // not blamed on --set
    EXPECT_NE(std::string(e.what()).find("empty calibration file"), std::string::npos);
  }
}

}  // namespace
}  // namespace masep::plan
