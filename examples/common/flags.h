// Shared by the examples and the benchmark: their command line, parsed by CLI11 (Debian's
// libcli11-dev, header-only; a build dependency of examples/ and bench/ only, not of libnabla).
// CLI11 splits the command line (`--name value` and `--name=value`, -h/--help, a positional
// argument, unknown arguments); this file adds what every flag of these programs needs: a number
// flag has a range (CLI11 check), so that no later size computation can overflow, and its value
// must be a whole number of the flag's type ("1.9", "1abc", "010" is 10, "-1" for an unsigned flag
// is an error, not 1, 1 or 2^64-1 as strtoull would have it), in range, and for a floating-point
// flag finite. A flag given twice takes its last value.
//
//   examples::Flags flags("nabla-cnn", "Trains a CNN on Fashion-MNIST.");
//   flags.add("--epochs", &args.epochs, "N", {1, 100000}, "passes over the training set")
//       .add("--bn", &args.bn, "batch normalization after each convolution");
//   flags.parse(argc, argv);  // throws UsageError, or HelpShown after printing --help
//
// Run the program through examples::run_program (program.h): a UsageError becomes
//   nabla-cnn: error: --batch: expected an integer from 1 to 65536, got '1.9'
// and exit status 2; --help prints the usage on stdout and exits with 0.
#pragma once

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
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
  Flags(std::string program, std::string about) : app_(std::move(about), std::move(program)) {
    // Unknown arguments are collected and reported by parse(), with a hint at --help.
    app_.allow_extras();
    app_.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    app_.get_formatter()->column_width(26);
  }
  Flags(const Flags&) = delete;
  Flags& operator=(const Flags&) = delete;

  // A number flag (int, int64_t, uint64_t, double) and its range; doubles must be finite.
  template <typename T>
    requires std::is_arithmetic_v<T> && (!std::is_same_v<T, bool>)
  Flags& add(const std::string& name, T* target, const std::string& metavar, Range<T> range,
             const std::string& help) {
    CLI::Option* opt = app_.add_option_function<std::string>(
        name, [target, range](const std::string& v) { *target = parse_number(v, range).value(); });
    opt->check(CLI::Validator(
        [range](std::string& v) {
          std::string why;
          return parse_number(v, range, &why) ? std::string() : fmt::format("expected {}, got '{}'{}", describe(range), v, why);
        },
        ""));
    return describe_flag(opt, metavar, help, describe(range), fmt::format("{}", *target));
  }
  // A number flag that takes any finite value of its type.
  template <typename T>
    requires std::is_arithmetic_v<T> && (!std::is_same_v<T, bool>)
  Flags& add(const std::string& name, T* target, const std::string& metavar, const std::string& help) {
    return add(name, target, metavar, Range<T>{}, help);
  }
  // A text flag.
  Flags& add(const std::string& name, std::string* target, const std::string& metavar, const std::string& help) {
    CLI::Option* opt = app_.add_option(name, *target);
    return describe_flag(opt, metavar, help, "", target->empty() ? "(none)" : *target);
  }
  // A switch: the flag alone sets it; "--name 0|1|true|false|on|off" and "--name=..." also work.
  Flags& add(const std::string& name, bool* target, const std::string& help) {
    CLI::Option* opt = app_.add_option_function<std::string>(
        name, [target](const std::string& v) { *target = parse_switch(v).value(); });
    // The flag alone: as if "1" followed; --help shows "[0|1]", not that "1".
    opt->expected(0, 1)->default_str("1")->option_text("[0|1]");
    opt->check(CLI::Validator(
        [](std::string& v) {
          return parse_switch(v) ? std::string()
                                 : fmt::format("expected 0 or 1 (or true/false, on/off), got '{}'", v);
        },
        ""));
    return describe_flag(opt, "", help, "", *target ? "on" : "off");
  }
  // The one positional argument, if the program takes one.
  Flags& positional(const std::string& name, std::string* target, const std::string& help) {
    CLI::Option* opt = app_.add_option(name, *target);
    opt->option_text(" ");  // --help: "PATH", not "PATH TEXT"
    return describe_flag(opt, "", help, "", *target);
  }
  // Replaces the default shown by --help (e.g. "1e-3, 2e-3 with --bn" for a default that depends
  // on other flags).
  Flags& default_text(const std::string& name, const std::string& text) {
    for (Described& d : described_)
      if (d.opt->check_name(name)) d.default_value = text;
    return *this;
  }

  void parse(int argc, char** argv) {
    for (const Described& d : described_) {
      std::string text = d.help;
      if (!d.expected.empty()) text += fmt::format(": {}", d.expected);
      if (!d.default_value.empty()) text += fmt::format(" (default {})", d.default_value);
      d.opt->description(text);
    }
    try {
      app_.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
      fmt::print(stdout, "{}", app_.help());
      throw HelpShown{};
    } catch (const CLI::ParseError& e) {
      // "--batch: expected ..., got '1.9'" (a check), "--epochs: 1 required N missing", ...
      throw UsageError(e.what());
    }
    if (const std::vector<std::string> extra = app_.remaining(); !extra.empty())
      throw UsageError(fmt::format("unknown argument '{}' (run {} --help for the options)", extra.front(),
                                   app_.get_name()));
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
  struct Described {
    CLI::Option* opt;
    std::string help, expected, default_value;
  };

  Flags& describe_flag(CLI::Option* opt, const std::string& metavar, const std::string& help,
                       const std::string& expected, const std::string& default_value) {
    if (!metavar.empty()) opt->type_name(metavar);
    described_.push_back({opt, help, expected, default_value});
    return *this;
  }

  static std::optional<bool> parse_switch(const std::string& v) {
    if (v == "1" || v == "true" || v == "on") return true;
    if (v == "0" || v == "false" || v == "off") return false;
    return std::nullopt;
  }

  // The whole of `v` as a T within `r`; else nothing, and in *why what a NaN or an infinity is
  // called, whatever the flag's type ("nan" is not "negative").
  template <typename T>
  static std::optional<T> parse_number(const std::string& v, const Range<T>& r, std::string* why = nullptr) {
    T x{};
    const char* end = v.data() + v.size();
    const auto [ptr, ec] = std::from_chars(v.data(), end, x);
    double d = 0;
    const auto [dptr, dec] = std::from_chars(v.data(), end, d);
    std::string reason;
    if (dec == std::errc() && dptr == end && std::isnan(d)) reason = " (not a number)";
    else if (dec == std::errc() && dptr == end && std::isinf(d)) reason = " (infinite)";
    else if (std::is_floating_point_v<T> && ec == std::errc::result_out_of_range) reason = " (out of the range of a double)";
    if (why != nullptr) *why = reason;
    const bool parsed = ec == std::errc() && ptr == end && reason.empty();
    const bool in_range = parsed && (r.min_open ? x > r.min : x >= r.min) && (r.max_open ? x < r.max : x <= r.max);
    if (!in_range) return std::nullopt;
    return x;
  }

  CLI::App app_;
  std::vector<Described> described_;
};

}  // namespace examples
