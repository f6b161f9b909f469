#include <gtest/gtest.h>

#include "masep/exec/runtime_info.hpp"

// Links against CUDA, cuBLAS and NCCL and asks their versions; needs no GPU.
TEST(RuntimeInfo, ReportsLibraryVersions) {
  const std::string v = masep::exec::runtime_versions();
  EXPECT_NE(v.find("nccl 2."), std::string::npos) << v;
  EXPECT_NE(v.find("cublas"), std::string::npos) << v;
}
