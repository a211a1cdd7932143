// Shared by the examples and the benchmark: a small, strict command-line parser. Each flag is
// bound to a variable that holds its default; a number flag has the range it accepts, so that
// no later size computation can overflow. A value must be a whole number of the flag's type
// ("1.9", "1abc", "-1" for an unsigned flag are errors, not 1, 1 and 2^64-1), in range, and
// for a floating-point flag finite. `--name value` and `--name=value` both work.
//
//   examples::Flags flags("nabla-cnn", "Trains a CNN on Fashion-MNIST.");
//   flags.add("--epochs", &args.epochs, "N", {1, 100000}).add("--bn", &args.bn);
//   flags.parse(argc, argv);  // throws UsageError, or HelpShown after printing --help
//
// Run the program through examples::run_program (program.h): a UsageError becomes
//   nabla-cnn: --batch: expected an integer from 1 to 65536, got '1.9'
// and exit status 2.
#pragma once

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

namespace examples {

// A bad command line: the message names the flag and the value. Exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// --help was printed (to stdout): exit status 0.
struct HelpShown {};

// The values a number flag accepts: from min to max, each end included unless it is open.
template <typename T>
struct Range {
  T min = std::numeric_limits<T>::lowest();
  T max = std::numeric_limits<T>::max();
  bool min_open = false;
  bool max_open = false;
};

class Flags {
 public:
  Flags(std::string program, std::string about) : program_(std::move(program)), about_(std::move(about)) {}

  // A number flag (int, int64_t, uint64_t, double) and its range; doubles must be finite.
  template <typename T>
    requires std::is_arithmetic_v<T> && (!std::is_same_v<T, bool>)
  Flags& add(const std::string& name, T* target, const std::string& metavar, Range<T> range) {
    return add_flag(name, metavar, fmt::format("{}", *target), false,
                    [target, range, name](const std::string& v) { *target = parse_number(name, v, range); });
  }
  // A number flag that takes any finite value of its type.
  template <typename T>
    requires std::is_arithmetic_v<T> && (!std::is_same_v<T, bool>)
  Flags& add(const std::string& name, T* target, const std::string& metavar) {
    return add(name, target, metavar, Range<T>{});
  }
  // A text flag.
  Flags& add(const std::string& name, std::string* target, const std::string& metavar) {
    return add_flag(name, metavar, target->empty() ? "(none)" : *target, false,
                    [target](const std::string& v) { *target = v; });
  }
  // A switch: the flag alone sets it; "--name 0|1" and "--name=0|1|true|false|on|off" also work.
  Flags& add(const std::string& name, bool* target) {
    return add_flag(name, "", *target ? "on" : "off", true, [target, name](const std::string& v) {
      if (v == "1" || v == "true" || v == "on") *target = true;
      else if (v == "0" || v == "false" || v == "off") *target = false;
      else throw UsageError(fmt::format("{}: expected 0 or 1 (or true/false, on/off), got '{}'", name, v));
    });
  }
  // The one positional argument, if the program takes one.
  Flags& positional(const std::string& name, std::string* target) {
    positional_name_ = name;
    positional_ = target;
    return *this;
  }

  void parse(int argc, char** argv) const {
    bool positional_seen = false;
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        usage(stdout);
        throw HelpShown{};
      }
      const size_t eq = arg.rfind("--", 0) == 0 ? arg.find('=') : std::string::npos;
      const std::string key = arg.substr(0, eq);
      const Flag* f = find(key);
      if (f == nullptr) {
        if (positional_ != nullptr && !arg.empty() && arg[0] != '-' && !positional_seen) {
          *positional_ = arg;
          positional_seen = true;
          continue;
        }
        throw UsageError(fmt::format("unknown argument '{}' (run {} --help for the options)", arg, program_));
      }
      std::string v;
      if (eq != std::string::npos) {
        v = arg.substr(eq + 1);
      } else if (f->is_switch) {
        const bool explicit_value = i + 1 < argc && (std::string(argv[i + 1]) == "0" || std::string(argv[i + 1]) == "1");
        v = explicit_value ? argv[++i] : "1";
      } else {
        if (i + 1 >= argc) throw UsageError(fmt::format("{}: missing value ({})", key, f->metavar));
        v = argv[++i];
      }
      f->set(v);
    }
  }

  void usage(std::FILE* out) const {
    fmt::print(out, "{}\nusage: {}", about_, program_);
    if (positional_ != nullptr) fmt::print(out, " [{}]", positional_name_);
    fmt::print(out, " [options]\n");
    for (const Flag& f : flags_)
      fmt::print(out, "  {:<18} {:<10} default {}\n", f.name, f.is_switch ? "" : f.metavar, f.default_value);
  }

  // "--name: expected ..., got 'value'" as a UsageError: for checks that involve several flags.
  [[noreturn]] static void fail(const std::string& name, const std::string& value, const std::string& expected) {
    throw UsageError(fmt::format("{}: expected {}, got '{}'", name, expected, value));
  }

  // "an integer from 1 to 65536", "a number > 0 and < 1", "a finite number >= 0".
  template <typename T>
  static std::string describe(const Range<T>& r) {
    constexpr bool integral = std::is_integral_v<T>;
    const bool has_min = r.min != std::numeric_limits<T>::lowest(), has_max = r.max != std::numeric_limits<T>::max();
    if (integral && !r.min_open && !r.max_open) return fmt::format("an integer from {} to {}", r.min, r.max);
    std::string s = integral ? "an integer" : has_max ? "a number" : "a finite number";
    if (has_min) s += fmt::format(" {} {}", r.min_open ? ">" : ">=", r.min);
    if (has_max) s += fmt::format("{} {} {}", has_min ? " and" : "", r.max_open ? "<" : "<=", r.max);
    return s;
  }

 private:
  struct Flag {
    std::string name, metavar, default_value;
    bool is_switch;
    std::function<void(const std::string&)> set;
  };

  Flags& add_flag(const std::string& name, const std::string& metavar, std::string default_value, bool is_switch,
                  std::function<void(const std::string&)> set) {
    flags_.push_back({name, metavar, std::move(default_value), is_switch, std::move(set)});
    return *this;
  }

  const Flag* find(const std::string& name) const {
    for (const Flag& f : flags_)
      if (f.name == name) return &f;
    return nullptr;
  }

  // The whole of `v` as a T within `r`, else a UsageError naming the flag and the value.
  template <typename T>
  static T parse_number(const std::string& name, const std::string& v, const Range<T>& r) {
    T x{};
    const char* end = v.data() + v.size();
    const auto [ptr, ec] = std::from_chars(v.data(), end, x);
    // What a NaN or an infinity is called, whatever the flag's type ("nan" is not "negative").
    double d = 0;
    const auto [dptr, dec] = std::from_chars(v.data(), end, d);
    std::string why;
    if (dec == std::errc() && dptr == end && std::isnan(d)) why = " (not a number)";
    else if (dec == std::errc() && dptr == end && std::isinf(d)) why = " (infinite)";
    else if (std::is_floating_point_v<T> && ec == std::errc::result_out_of_range) why = " (out of the range of a double)";
    const bool parsed = ec == std::errc() && ptr == end && why.empty();
    const bool in_range = parsed && (r.min_open ? x > r.min : x >= r.min) && (r.max_open ? x < r.max : x <= r.max);
    if (!in_range) throw UsageError(fmt::format("{}: expected {}, got '{}'{}", name, describe(r), v, why));
    return x;
  }

  std::string program_, about_;
  std::vector<Flag> flags_;
  std::string positional_name_;
  std::string* positional_ = nullptr;
};

}  // namespace examples
