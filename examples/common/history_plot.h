// Shared by the examples: writes a training History beside the model as <stem>_history.csv
// and, when gnuplot is installed (Debian: gnuplot-nox), <stem>_history.png with the loss and
// the accuracy per epoch (training and validation).
#pragma once

#include <nabla/nabla.h>

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace examples {

inline bool has_gnuplot() { return std::system("command -v gnuplot > /dev/null 2>&1") == 0; }

// Returns the files written.
inline std::string save_history(const nabla::History& h, const std::string& stem) {
  const std::string csv = stem + "_history.csv", png = stem + "_history.png", gp = stem + "_history.gp";
  h.save_csv(csv);
  // The paths go into a gnuplot script and a shell command, both inside single quotes: a path
  // (from --out) with a quote or a control character could end the quoting, so it gets no plot.
  for (char c : stem)
    if (c == '\'' || static_cast<unsigned char>(c) < 0x20)
      return csv + " (a quote or control character in the path: no plot)";
  if (!has_gnuplot()) return csv + " (no gnuplot: no plot)";
  std::FILE* f = std::fopen(gp.c_str(), "w");
  if (!f) return csv + " (cannot write " + gp + ")";
  auto curves = [&](const char* key) {
    std::string s = fmt::format("'{}' using ($1+1):'{}' with linespoints title '{}'", csv, key, key);
    const std::string val = std::string("val_") + key;
    if (h.contains(val)) s += fmt::format(", '' using ($1+1):'{}' with linespoints title '{}'", val, val);
    return s;
  };
  fmt::print(f,
             "set terminal png size 1100,420 noenhanced\n"
             "set output '{}'\n"
             "set datafile separator ','\n"
             "set xlabel 'epoch'\n"
             "set xtics {}\n"
             "set grid\n"
             "set multiplot layout 1,2 title '{}'\n"
             "set title 'loss'\nplot {}\n",
             png, h.size() <= 20 ? 1 : 5, stem, curves("loss"));
  if (h.contains("accuracy")) fmt::print(f, "set title 'accuracy'\nset key bottom right\nplot {}\n", curves("accuracy"));
  fmt::print(f, "unset multiplot\n");
  std::fclose(f);
  const bool ok = std::system(fmt::format("gnuplot '{}' 2> /dev/null", gp).c_str()) == 0;
  std::remove(gp.c_str());
  return ok ? csv + ", " + png : csv + " (gnuplot failed: no plot)";
}

}  // namespace examples
