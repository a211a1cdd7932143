// What each fuzz target does with one input, shared by the libFuzzer targets (tests/fuzz/
// fuzz_*.cpp, built with NABLA_FUZZ=ON) and by the regression suite of the normal build
// (tests/fuzz_regression_test.cpp), which replays every file of tests/fuzz/corpus/<target>/ and
// tests/fuzz/crashes/<target>/ through the same functions.
//
// The readers take a path, so the input is written to a scratch file first: that also fuzzes the
// real file handling (sizes from fstat, pread, gzip through stdio). A reader may accept the input
// or throw nabla::Error; anything else (another exception, a crash, a sanitizer report, a leak,
// an allocation over libFuzzer's -malloc_limit_mb) is a finding.
#pragma once

#include <fcntl.h>
#include <nabla/core/data/idx.h>
#include <nabla/core/error.h>
#include <nabla/core/io/safetensors.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace nabla_fuzz {

// The scratch file of this process for `target`, removed at exit.
inline const std::string& scratch_path(const char* target) {
  static const std::string path = [target] {
    std::string p = (std::filesystem::temp_directory_path() /
                     ("nabla_fuzz_" + std::string(target) + "_" + std::to_string(::getpid())))
                        .string();
    static std::string to_remove;
    to_remove = p;
    std::atexit([] { ::unlink(to_remove.c_str()); });
    return p;
  }();
  return path;
}

inline void write_file(const std::string& path, const uint8_t* data, size_t n) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  for (size_t done = 0; done < n;) {
    ssize_t w = ::write(fd, data + done, n - done);
    if (w <= 0) std::abort();
    done += static_cast<size_t>(w);
  }
  ::close(fd);
}

// An IDX file (raw or gzip): read_idx, then the label check and the image conversion where the
// array has their shape.
inline void run_idx(const uint8_t* data, size_t n) {
  const std::string& path = scratch_path("idx");
  write_file(path, data, n);
  try {
    nabla::data::IdxArray a = nabla::data::read_idx(path);
    if (a.dims.size() == 1) (void)nabla::data::idx_labels(a, 10);
    if (a.type == nabla::data::IdxType::uint8 && a.dims.size() == 3)
      (void)nabla::data::read_idx_images(path);
  } catch (const nabla::Error&) {
  }
}

// A whole safetensors file: load_safetensors (header, tiling, data, CRC-32C).
inline void run_safetensors(const uint8_t* data, size_t n) {
  const std::string& path = scratch_path("safetensors");
  write_file(path, data, n);
  try {
    (void)nabla::load_safetensors(path);
  } catch (const nabla::Error&) {
  }
}

// The JSON header alone (tensor entries and __metadata__): the input is the JSON text, framed
// as a file with its 8-byte length and a data section of 64 zero bytes, so the fuzzer spends its
// time in the JSON and field validation rather than on the framing. (nabla has no separate
// model-architecture JSON parser yet; when Model::save/load adds one, it gets its own target.)
inline void run_json_metadata(const uint8_t* data, size_t n) {
  std::vector<uint8_t> file(8 + n + 64, 0);
  for (int i = 0; i < 8; ++i) file[static_cast<size_t>(i)] = static_cast<uint8_t>(uint64_t{n} >> (8 * i));
  std::copy(data, data + n, file.begin() + 8);
  const std::string& path = scratch_path("json_metadata");
  write_file(path, file.data(), file.size());
  try {
    (void)nabla::load_safetensors(path);
  } catch (const nabla::Error&) {
  }
}

}  // namespace nabla_fuzz
