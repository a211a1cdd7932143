// Replays the fuzz corpora and every past fuzzer finding through the fuzz targets' code
// (tests/fuzz/fuzz_inputs.h) in the normal build: each file of tests/fuzz/corpus/<target>/ and
// tests/fuzz/crashes/<target>/ must load or give a nabla::Error, never crash, leak or throw
// anything else (in the sanitized build, ASan and UBSan watch these too).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_inputs.h"

namespace {

namespace fs = std::filesystem;

using RunFn = void (*)(const uint8_t*, size_t);

struct Target {
  const char* name;
  RunFn run;
};

const Target kTargets[] = {{"idx", nabla_fuzz::run_idx},
                           {"safetensors", nabla_fuzz::run_safetensors},
                           {"json_metadata", nabla_fuzz::run_json_metadata}};

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename().string()[0] != '.') out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

size_t replay(const Target& t, const char* kind) {
  size_t n = 0;
  for (const fs::path& p : files_in(fs::path(NABLA_TESTS_DIR) / "fuzz" / kind / t.name)) {
    std::ifstream f(p, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    SCOPED_TRACE(p.string());
    try {
      t.run(bytes.data(), bytes.size());
    } catch (const std::exception& e) {
      ADD_FAILURE() << p << ": threw a non-nabla exception: " << e.what();
    }
    ++n;
  }
  return n;
}

}  // namespace

TEST(FuzzRegression, SeedCorporaLoadOrGiveNablaErrors) {
  for (const Target& t : kTargets) {
    SCOPED_TRACE(t.name);
    // The seed corpora are committed: an empty one means the path is wrong, not a pass.
    EXPECT_GE(replay(t, "corpus"), 5u) << "tests/fuzz/corpus/" << t.name;
  }
}

TEST(FuzzRegression, PastCrashesGiveNablaErrors) {
  size_t n = 0;
  for (const Target& t : kTargets) {
    SCOPED_TRACE(t.name);
    n += replay(t, "crashes");
  }
  RecordProperty("crash_files", static_cast<int>(n));
}

TEST(FuzzRegression, SeedsReachTheReadersAndTheirErrors) {
  // The good seeds must load, and a bad one must be refused, for the targets to fuzz anything.
  const fs::path dir = fs::path(NABLA_TESTS_DIR) / "fuzz" / "corpus";
  EXPECT_NO_THROW(nabla::data::read_idx((dir / "idx" / "images_u8_3x4x5.gz").string()));
  EXPECT_THROW(nabla::data::read_idx((dir / "idx" / "bad_gzip_isize").string()), nabla::Error);
  auto f = nabla::load_safetensors((dir / "safetensors" / "good_five_tensors").string());
  EXPECT_EQ(f.tensors.size(), 5u);
  EXPECT_THROW(nabla::load_safetensors((dir / "safetensors" / "bad_crc").string()), nabla::Error);
}
