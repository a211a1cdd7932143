// Shared by the examples that save a model: the folder they write into (--out DIR) is checked
// before training, so that a run of minutes does not end in "cannot write"; and a save that
// fails anyway (the disk filled up meanwhile) falls back to the temporary folder, so the trained
// weights are not lost.
#pragma once

#include <nabla/nabla.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <system_error>

#include <unistd.h>

namespace examples {

// Creates `dir` when it does not exist, and checks that a file can be written in it (a probe
// file, written and removed). Throws nabla::Error naming the folder and the flag.
inline void check_output_dir(const std::string& dir, const std::string& flag = "--out") {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool exists = fs::exists(dir, ec);
  if (!exists) {
    fs::create_directories(dir, ec);
    if (ec)
      throw nabla::Error(fmt::format("cannot create the output folder '{}' ({}): {}; choose another with {} DIR", dir,
                                     flag, ec.message(), flag));
  } else if (!fs::is_directory(dir, ec)) {
    throw nabla::Error(
        fmt::format("the output folder '{}' ({}) is not a folder; choose another with {} DIR", dir, flag, flag));
  }
  const std::string probe = (fs::path(dir) / fmt::format(".nabla-write-probe-{}", ::getpid())).string();
  errno = 0;
  std::FILE* f = std::fopen(probe.c_str(), "wb");
  bool ok = f != nullptr && std::fputc('x', f) != EOF;
  if (f != nullptr) ok = (std::fclose(f) == 0) && ok;
  const int err = errno;
  std::remove(probe.c_str());
  if (!ok)
    throw nabla::Error(fmt::format("cannot write in the output folder '{}' ({}): {}; nothing was trained. Choose a "
                                   "writable folder with {} DIR",
                                   dir, flag, err ? std::strerror(err) : "unknown error", flag));
}

// The folder for a fallback save: $TMPDIR, else /tmp.
inline std::string fallback_dir() {
  const char* t = std::getenv("TMPDIR");
  return t != nullptr && *t != '\0' ? t : "/tmp";
}

// Calls save(path); when it throws, save(<$TMPDIR or /tmp>/nabla-<pid>/<path's file name>) and
// says so on stderr. Returns the file written, and whether it is the fallback; throws nabla::Error naming
// both files when neither could be written.
struct Saved {
  std::string path;
  bool fell_back = false;
};
inline Saved save_with_fallback(const std::string& path, const std::string& what,
                                const std::function<void(const std::string&)>& save) {
  try {
    save(path);
    return {path, false};
  } catch (const std::exception& first) {
    const std::filesystem::path dir = std::filesystem::path(fallback_dir()) / fmt::format("nabla-{}", ::getpid());
    const std::string other = (dir / std::filesystem::path(path).filename()).string();
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);  // a failure shows as the save's
    std::fflush(stdout);
    fmt::print(stderr, "error: cannot save the {} to {}: {}\n", what, path, first.what());
    try {
      save(other);
    } catch (const std::exception& second) {
      throw nabla::Error(fmt::format("the {} are lost: {} failed, and so did the fallback {}: {}", what, path, other,
                                     second.what()));
    }
    fmt::print(stderr, "saved the {} to {} instead\n", what, other);
    return {other, true};
  }
}

}  // namespace examples
