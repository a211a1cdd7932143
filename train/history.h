// History: what Model::fit returns, the per-epoch logs (Keras' History.history): "loss", each
// metric, "val_loss" and "val_<metric>" with validation data, and "lr", the learning rate at the
// end of the epoch.
//
//   auto history = model.fit(train, {.epochs = 10, .validation = test});
//   history.at("val_accuracy").back();
//   history.save_csv("mlp_history.csv");
#pragma once

#include <nabla/export.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace nabla {

// Named values of one epoch (or of an evaluation).
using Logs = std::map<std::string, double>;

class NABLA_API History {
 public:
  // Adds an epoch. A key missing in some epochs reads NaN there.
  void append(int64_t epoch, const Logs& logs);

  size_t size() const { return epochs_.size(); }
  bool empty() const { return epochs_.empty(); }
  // Epoch numbers, 0-based, in the order trained.
  const std::vector<int64_t>& epochs() const { return epochs_; }
  // Keys in the order first seen: "loss" and the metrics, then "val_*", then "lr".
  const std::vector<std::string>& keys() const { return keys_; }
  bool contains(const std::string& key) const { return values_.count(key) != 0; }
  // One value per epoch; throws nabla::Error naming the key and the known keys.
  const std::vector<double>& at(const std::string& key) const;
  // The logs of the i-th epoch trained.
  Logs row(size_t i) const;

  // Writes "epoch,<keys...>" and one line per epoch (values with 17 significant digits).
  void save_csv(const std::string& path) const;
  // Reads a file written by save_csv.
  static History load_csv(const std::string& path);

 private:
  std::vector<int64_t> epochs_;
  std::vector<std::string> keys_;
  std::map<std::string, std::vector<double>> values_;
};

}  // namespace nabla
