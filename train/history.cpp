#include <nabla/train/history.h>

#include <nabla/core/error.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

namespace nabla {

void History::append(int64_t epoch, const Logs& logs) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // Keep Keras' order: training values, then validation, then the learning rate.
  auto rank = [](const std::string& k) { return k == "lr" ? 2 : k.rfind("val_", 0) == 0 ? 1 : 0; };
  for (int r = 0; r < 3; ++r)
    for (const auto& [k, v] : logs)
      if (rank(k) == r && !values_.count(k)) {
        keys_.push_back(k);
        values_[k].assign(epochs_.size(), nan);
      }
  epochs_.push_back(epoch);
  for (auto& [k, vs] : values_) {
    auto it = logs.find(k);
    vs.push_back(it == logs.end() ? nan : it->second);
  }
}

const std::vector<double>& History::at(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) {
    std::string known;
    for (const auto& k : keys_) known += (known.empty() ? "" : ", ") + k;
    fail("History: no values for '{}' (has: {})", key, known.empty() ? "nothing yet" : known);
  }
  return it->second;
}

Logs History::row(size_t i) const {
  NABLA_CHECK_INDEX(i < size(), "History::row: index {} out of range for {} epochs", i, size());
  Logs out;
  for (const auto& [k, vs] : values_) out[k] = vs[i];
  return out;
}

void History::save_csv(const std::string& path) const {
  std::ofstream f(path, std::ios::trunc);
  NABLA_CHECK_IO(f.good(), "History::save_csv: cannot open {}: {}", path, std::strerror(errno));
  f << "epoch";
  for (const auto& k : keys_) f << ',' << k;
  f << '\n';
  for (size_t i = 0; i < epochs_.size(); ++i) {
    f << epochs_[i];
    for (const auto& k : keys_) f << ',' << fmt::format("{:.17g}", values_.at(k)[i]);
    f << '\n';
  }
  f.flush();
  NABLA_CHECK_IO(f.good(), "History::save_csv: writing {} failed: {}", path, std::strerror(errno));
}

History History::load_csv(const std::string& path) {
  std::ifstream f(path);
  NABLA_CHECK_IO(f.good(), "History::load_csv: cannot open {}: {}", path, std::strerror(errno));
  auto split = [](const std::string& line) {
    std::vector<std::string> out;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) out.push_back(cell);
    return out;
  };
  std::string line;
  NABLA_CHECK_IO(std::getline(f, line), "History::load_csv: {} is empty", path);
  const std::vector<std::string> head = split(line);
  NABLA_CHECK_IO(!head.empty() && head[0] == "epoch", "History::load_csv: {}: the first column must be 'epoch'", path);
  History h;
  for (int lineno = 2; std::getline(f, line); ++lineno) {
    if (line.empty()) continue;
    const std::vector<std::string> cells = split(line);
    NABLA_CHECK_IO(cells.size() == head.size(), "History::load_csv: {} line {}: {} values, the header has {}", path,
                   lineno, cells.size(), head.size());
    Logs logs;
    try {
      for (size_t c = 1; c < cells.size(); ++c) logs[head[c]] = std::stod(cells[c]);
      h.append(std::stoll(cells[0]), logs);
    } catch (const std::logic_error&) {
      fail<IOError>("History::load_csv: {} line {}: not a number", path, lineno);
    }
  }
  // The header's order, not the ranking of append().
  h.keys_.assign(head.begin() + 1, head.end());
  return h;
}

}  // namespace nabla
