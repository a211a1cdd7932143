// Shared by the examples: a small command-line parser. Each flag is bound to a variable that
// holds its default; `--help` prints the usage with the defaults, a bad or unknown flag prints
// it with the problem and exits with status 2.
//
//   examples::Flags flags("nabla-cnn", "Trains a CNN on Fashion-MNIST.");
//   flags.add("--epochs", &args.epochs, "N").add("--bn", &args.bn);
//   flags.parse(argc, argv);
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace examples {

class Flags {
 public:
  Flags(std::string program, std::string about) : program_(std::move(program)), about_(std::move(about)) {}

  // A flag with a value (int, int64_t, uint64_t, double, std::string), or a switch (bool: the
  // flag alone sets it; "--name 0" / "--name 1" also work).
  template <typename T>
  Flags& add(const std::string& name, T* target, const std::string& metavar = "") {
    Flag f{name, metavar, default_of(*target), std::is_same_v<T, bool>, {}};
    f.set = [target](const std::string& v) { assign(target, v); };
    flags_.push_back(std::move(f));
    return *this;
  }
  // The one positional argument, if the program takes one.
  Flags& positional(const std::string& name, std::string* target) {
    positional_name_ = name;
    positional_ = target;
    return *this;
  }

  void parse(int argc, char** argv) const {
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      if (k == "--help" || k == "-h") usage(about_, 0);
      const Flag* f = find(k);
      if (f == nullptr) {
        if (positional_ != nullptr && !k.empty() && k[0] != '-') {
          *positional_ = k;
          continue;
        }
        usage("unknown argument " + k);
      }
      std::string v;
      if (f->is_switch) {
        const bool explicit_value = i + 1 < argc && (std::string(argv[i + 1]) == "0" || std::string(argv[i + 1]) == "1");
        v = explicit_value ? argv[++i] : "1";
      } else {
        if (i + 1 >= argc) usage("missing value after " + k);
        v = argv[++i];
      }
      try {
        f->set(v);
      } catch (const std::logic_error&) {
        usage("bad value for " + k + ": " + v);
      }
    }
  }

  [[noreturn]] void usage(const std::string& msg, int status = 2) const {
    std::FILE* out = status == 0 ? stdout : stderr;
    fmt::print(out, "{}\nusage: {}", msg, program_);
    if (positional_ != nullptr) fmt::print(out, " [{}]", positional_name_);
    fmt::print(out, " [options]\n");
    for (const Flag& f : flags_)
      fmt::print(out, "  {:<18} {:<10} default {}\n", f.name, f.is_switch ? "" : f.metavar, f.default_value);
    std::exit(status);
  }

 private:
  struct Flag {
    std::string name, metavar, default_value;
    bool is_switch;
    std::function<void(const std::string&)> set;
  };

  const Flag* find(const std::string& name) const {
    for (const Flag& f : flags_)
      if (f.name == name) return &f;
    return nullptr;
  }
  template <typename T>
  static std::string default_of(const T& v) {
    if constexpr (std::is_same_v<T, std::string>) return v.empty() ? "(none)" : v;
    else if constexpr (std::is_same_v<T, bool>) return v ? "on" : "off";
    else return fmt::format("{}", v);
  }
  static void assign(int* t, const std::string& v) { *t = std::stoi(v); }
  static void assign(int64_t* t, const std::string& v) { *t = std::stoll(v); }
  static void assign(uint64_t* t, const std::string& v) { *t = std::stoull(v); }
  static void assign(double* t, const std::string& v) { *t = std::stod(v); }
  static void assign(std::string* t, const std::string& v) { *t = v; }
  static void assign(bool* t, const std::string& v) { *t = std::stoi(v) != 0; }

  std::string program_, about_;
  std::vector<Flag> flags_;
  std::string positional_name_;
  std::string* positional_ = nullptr;
};

}  // namespace examples
