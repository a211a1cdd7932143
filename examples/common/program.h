// Shared by the examples and the benchmark: the frame of main(). run_program runs the program's
// body and turns every way it can fail into one message on stderr and a non-zero exit status,
// never `terminate called ...`:
//
//   int main(int argc, char** argv) {
//     return examples::run_program("nabla-mlp", [&] { ...; return 0; });
//   }
//
// Exit status: the body's, 2 for a bad command line (UsageError), 1 for anything thrown
// (nabla::Error, std::bad_alloc, std::exception, ...), and 1 when standard output could not be
// written (a full disk, `> /dev/full`): the results a script reads from stdout would be missing.
// stdout is flushed before an error goes to stderr, so the two stay in order.
#pragma once

#include "flags.h"

#include <fmt/format.h>

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>

namespace examples {

// OpenMP on a shared machine. libgomp, the OpenMP runtime of nabla, OpenBLAS and oneDNN here, lets
// an idle thread spin about 300000 times before it sleeps; when other processes want the cores,
// the spinning threads take the time slices the working ones need. On 2 cores beside two busy
// processes an mlp step went from about 2 ms to 80-190 ms, an lstm step from 0.2 s to 0.6-5 s;
// with 1000 spins they took 12 ms and 0.35-0.43 s, and a quiet machine runs as fast as with the
// default (README, "Threads on a busy machine"). libgomp reads its settings once, before main, so
// when the user set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT the program starts itself again,
// once, with GOMP_SPINCOUNT=1000. If that fails it carries on with libgomp's defaults. Not under
// valgrind (whose tool would not follow the new start) nor when started through the dynamic loader
// (/proc/self/exe is then the loader); setting GOMP_SPINCOUNT yourself, to any value, also keeps
// the program in one start (for a debugger, say).
// Call first thing in main, before anything is printed or opened.
inline void restart_with_short_omp_spin(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr) return;
  const char* preload = std::getenv("LD_PRELOAD");
  if (preload != nullptr && std::strstr(preload, "vgpreload") != nullptr) return;
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return;
  exe[n] = '\0';
  const char* base = std::strrchr(exe, '/');
  base = base != nullptr ? base + 1 : exe;
  if (std::strncmp(base, "ld-", 3) == 0 || std::strncmp(base, "ld.so", 5) == 0) return;
  if (setenv("GOMP_SPINCOUNT", "1000", 1) != 0) return;
  execv("/proc/self/exe", argv);
}

// Flushes stdout and reports a failed write on stderr; returns `status`, or 1 when it was 0 and
// stdout failed.
inline int finish_stdout(const char* program, int status) {
  errno = 0;
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    const int err = errno;
    std::fprintf(stderr, "%s: error: cannot write to standard output%s%s\n", program, err ? ": " : "",
                 err ? std::strerror(err) : "");
    return status == 0 ? 1 : status;
  }
  return status;
}

// "<program>: error: <what>" on stderr after flushing stdout (whose own failure is reported by
// finish_stdout, not here).
inline void report_error(const char* program, const std::string& what) {
  std::fflush(stdout);
  std::fputs(fmt::format("{}: error: {}\n", program, what).c_str(), stderr);
}

template <typename F>
int run_program(const char* program, F&& body) noexcept {
  int status = 1;
  try {
    try {
      status = body();
    } catch (const HelpShown&) {
      status = 0;
    } catch (const UsageError& e) {
      report_error(program, std::string(e.what()));
      status = 2;
    } catch (const std::bad_alloc&) {
      report_error(program, "out of memory (std::bad_alloc); try smaller sizes (e.g. --batch)");
    } catch (const std::exception& e) {
      report_error(program, e.what());  // nabla::Error, fmt's write errors, std::length_error, ...
    } catch (...) {
      report_error(program, "an unknown exception");
    }
  } catch (...) {  // formatting the report itself failed (out of memory): say the least
    std::fputs("error: (the message could not be formatted)\n", stderr);
    status = 1;
  }
  return finish_stdout(program, status);
}

}  // namespace examples
