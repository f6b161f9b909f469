// The one output writer and the one input reader (issue 21): devices and FIFOs are written
// through and never replaced, directories refused, regular files replaced atomically (a
// failed write leaves the old file); readers refuse devices, FIFOs and oversized files at once.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "masep/plan/errors.hpp"
#include "masep/plan/input_file.hpp"
#include "masep/plan/output_file.hpp"

namespace masep::plan {
namespace {

namespace fs = std::filesystem;

class FilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("masep_files_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  static std::string slurp(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  size_t entries() const {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++n;
    return n;
  }
  fs::path dir_;
};

bool is_char_device(const char* p) {
  struct stat st {};
  return ::stat(p, &st) == 0 && S_ISCHR(st.st_mode);
}

TEST_F(FilesTest, DevNullStaysACharacterDevice) {
  ASSERT_TRUE(is_char_device("/dev/null"));
  write_output_file("/dev/null", "trace", std::string(100000, 'x'));
  write_output_file("/dev/null", "trace", [](std::ostream& o) { o << "streamed"; });
  EXPECT_TRUE(is_char_device("/dev/null"));
}

TEST_F(FilesTest, FifoIsWrittenThroughNotReplaced) {
  const std::string fifo = path("pipe");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string got;
  std::thread reader([&] { got = slurp(fifo); });
  write_output_file(fifo, "trace", "hello through a pipe\n");
  reader.join();
  EXPECT_EQ(got, "hello through a pipe\n");
  struct stat st {};
  ASSERT_EQ(::stat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(entries(), 1u);  // no temporary left beside it
}

TEST_F(FilesTest, DirectoryIsRefusedWithAClearMessage) {
  try {
    write_output_file(dir_.string(), "trace", "x");
    FAIL() << "expected OutputError";
  } catch (const OutputError& e) {
    EXPECT_NE(std::string(e.what()).find("a directory"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(dir_.string()), std::string::npos) << e.what();
  }
  EXPECT_EQ(entries(), 0u);
}

TEST_F(FilesTest, MissingFolderIsNamed) {
  try {
    write_output_file(path("no/such/file.json"), "trace", "x");
    FAIL() << "expected OutputError";
  } catch (const OutputError& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
}

TEST_F(FilesTest, RegularFileReplacedAtomicallyKeepingItsMode) {
  const std::string f = path("out.csv");
  write_output_file(f, "table", "old\n");
  ASSERT_EQ(::chmod(f.c_str(), 0640), 0);
  write_output_file(f, "table", "new\n");
  EXPECT_EQ(slurp(f), "new\n");
  struct stat st {};
  ASSERT_EQ(::stat(f.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_EQ(entries(), 1u);
}

TEST_F(FilesTest, FailedWriteLeavesTheOldFileAndNoTemporary) {
  const std::string f = path("trace.json");
  write_output_file(f, "trace", "complete old trace\n");
  EXPECT_THROW(write_output_file(f, "trace",
                                 [](std::ostream& o) {
                                   o << "half a trace";
                                   throw std::runtime_error("writer failed");
                                 }),
               std::runtime_error);
  EXPECT_EQ(slurp(f), "complete old trace\n");
  EXPECT_EQ(entries(), 1u);
}

TEST_F(FilesTest, SymlinkIsKeptAndItsTargetReplaced) {
  const std::string target = path("real.json"), link = path("link.json");
  write_output_file(target, "trace", "v1");
  fs::create_symlink(target, link);
  write_output_file(link, "trace", "v2");
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(slurp(target), "v2");
}

TEST_F(FilesTest, OutputNamesCannotLeaveTheirFolder) {
  EXPECT_EQ(path_inside(dir_, "plot.dat", "plot name"), dir_ / "plot.dat");
  EXPECT_THROW(path_inside(dir_, "../../escape", "plot name"), OutputError);
  EXPECT_THROW(path_inside(dir_, "a/../../b", "plot name"), OutputError);
  EXPECT_THROW(path_inside(dir_, "/etc/passwd", "plot name"), OutputError);
  EXPECT_THROW(path_inside(dir_, "", "plot name"), OutputError);
}

// ---- readers -------------------------------------------------------------------------------

TEST_F(FilesTest, ReadsARegularFile) {
  write_output_file(path("a.yaml"), "x", "key: 1\n");
  EXPECT_EQ(read_input_file(path("a.yaml"), "scenario", kMaxYamlInputBytes), "key: 1\n");
  EXPECT_TRUE(input_exists(path("a.yaml")));
  EXPECT_FALSE(input_exists(path("b.yaml")));
}

void expect_refused(const std::string& p, const std::string& why) {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    read_input_file(p, "model", kMaxYamlInputBytes);
    FAIL() << p << ": expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), p);
    EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2)) << p;
}

TEST_F(FilesTest, DevicesFifosAndDirectoriesAreRefusedAtOnce) {
  expect_refused("/dev/zero", "a character device");
  expect_refused("/dev/null", "a character device");
  expect_refused(dir_.string(), "a directory");
  const std::string fifo = path("pipe");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_refused(fifo, "FIFO");  // no writer: must not block
  expect_refused(path("missing.yaml"), "No such file");
}

TEST_F(FilesTest, SizeCapIsEnforced) {
  const std::string f = path("big.json");
  write_output_file(f, "x", std::string(4096, 'x'));
  EXPECT_EQ(read_input_file(f, "trace", 4096).size(), 4096u);
  try {
    read_input_file(f, "trace", 4095);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("limit"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace masep::plan
