// Model::load_checkpoint / load as a transaction: one read of the file (one open descriptor, one
// header parse, the data checked by its CRC), every name, dtype, shape and training value checked,
// and only then the model changed. A file that fails any check leaves parameters, buffers,
// optimizer state, counters, learning rate and random generator bit-identical; every error names
// the file (and, for a bad training value, the key and the value).
#include <nabla/nabla.h>

#include "test_util.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace nb = nabla;
namespace fs = std::filesystem;
using json = nlohmann::json;
using nb::test::error_of;
using ::testing::HasSubstr;

namespace {

std::string temp_path(const std::string& name) { return nb::test::temp_path("nabla_checkpoint_test", name); }

std::vector<uint8_t> bytes_of(const nb::Tensor& t) {
  nb::Tensor c = t.detach().to(nb::Device::cpu()).contiguous();
  const auto* p = static_cast<const uint8_t*>(c.data_ptr());
  return std::vector<uint8_t>(p, p + static_cast<size_t>(c.numel()) * nb::dtype_size(c.dtype()));
}

// Everything load_checkpoint may change, by value.
struct Snapshot {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> tensors;  // state_dict, then optimizer state
  double lr = 0;
  int64_t epoch = 0, step = 0;
  uint64_t seed = 0, offset = 0;
  bool operator==(const Snapshot&) const = default;
};

Snapshot snapshot(const nb::Model& m) {
  Snapshot s;
  for (const auto& [name, t] : m.state_dict()) s.tensors.emplace_back(name, bytes_of(t));
  for (const auto& [name, t] : m.optimizer().state()) s.tensors.emplace_back("optimizer." + name, bytes_of(t));
  s.lr = m.optimizer().lr();
  s.epoch = m.epoch();
  s.step = m.global_step();
  const nb::RngState r = nb::rng_state();
  s.seed = r.seed;
  s.offset = r.offset;
  return s;
}

nb::Model make_model() {
  return nb::Model{nb::Dense(3, 5), nb::BatchNorm1d(5), nb::ReLU(), nb::Dropout(0.2), nb::Dense(5, 2)};
}

nb::data::Dataset toy_data(uint64_t seed) {
  nb::manual_seed(seed);
  nb::Tensor x = nb::randn({24, 3});
  std::vector<int64_t> y(24);
  auto xv = x.to_vector<float>();
  for (size_t i = 0; i < 24; ++i) y[i] = xv[3 * i] > 0 ? 1 : 0;
  return {x, nb::from_vector(y)};
}

// A model trained for `epochs` (so that it has optimizer state and moved BN statistics).
nb::Model trained(uint64_t seed, int64_t epochs, double lr = 0.01) {
  nb::manual_seed(seed);
  nb::Model m = make_model();
  m.compile(nb::Adam({.lr = lr}), nb::CrossEntropyLoss());
  m.fit(toy_data(seed), {.epochs = epochs, .batch_size = 8, .seed = seed, .verbose = 0});
  return m;
}

// The checkpoint at `from`, saved again to `to` with its "nabla.training" text passed through
// `edit` (both checksums recomputed by the save: the file is consistent, its values are not).
void rewrite_training(const std::string& from, const std::string& to, const std::function<void(std::string&)>& edit) {
  nb::SafetensorsFile f = nb::load_safetensors(from);
  edit(f.metadata.at("nabla.training"));
  nb::save_safetensors(to, f.tensors, f.metadata);
}

// Sets the value at a '/'-separated JSON pointer to the raw JSON text `raw` (which may be what
// nlohmann would not write, such as 1e999), or removes it when raw is empty.
std::function<void(std::string&)> set_raw(const std::string& pointer, const std::string& raw) {
  return [=](std::string& text) {
    json j = json::parse(text);
    if (raw.empty()) {
      const json::json_pointer p(pointer);
      j[p.parent_pointer()].erase(p.back());
      text = j.dump();
      return;
    }
    j[json::json_pointer(pointer)] = "@@RAW@@";
    text = j.dump();
    text.replace(text.find("\"@@RAW@@\""), 9, raw);
  };
}

class Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    source_ = temp_path("source.safetensors");
    trained(1, 2).save_checkpoint(source_);
  }
  // A model other than the file's, with its own optimizer state, counters and random state.
  nb::Model victim() {
    nb::Model m = trained(7, 1, 0.05);
    nb::manual_seed(4242);
    nb::rand({5});  // the random stream somewhere else than the file's
    return m;
  }
  // load_checkpoint(file) throws an error with `words` and changes nothing.
  void expect_refused_untouched(const std::string& file, const std::vector<std::string>& words) {
    nb::Model m = victim();
    const Snapshot before = snapshot(m);
    const std::string msg = error_of([&] { m.load_checkpoint(file); });
    EXPECT_THAT(msg, HasSubstr(file));
    for (const auto& w : words) EXPECT_THAT(msg, HasSubstr(w));
    EXPECT_TRUE(snapshot(m) == before) << "the model changed although the load failed: " << msg;
  }
  std::string source_;
};

}  // namespace

TEST_F(Checkpoint, GoodCheckpointLoadsEverything) {
  nb::Model m = victim();
  ASSERT_NO_THROW(m.load_checkpoint(source_));
  nb::Model ref = trained(1, 2);
  const Snapshot got = snapshot(m), want = snapshot(ref);
  EXPECT_EQ(got.tensors, want.tensors);
  EXPECT_EQ(got.epoch, 2);
  EXPECT_EQ(got.step, 6);
  EXPECT_DOUBLE_EQ(got.lr, 0.01);
}

TEST_F(Checkpoint, BadTrainingValueNamesKeyAndValueAndChangesNothing) {
  struct Case {
    std::string pointer, raw;
    std::vector<std::string> words;  // besides the file
  };
  const std::vector<Case> cases = {
      {"/epoch", "-3", {"epoch is -3", "an integer in [0, 2^63)"}},
      {"/epoch", R"("abc")", {"epoch is \"abc\""}},
      {"/epoch", "2.5", {"epoch is 2.5"}},
      {"/epoch", "1e30", {"epoch is 1e+30"}},
      {"/epoch", "9223372036854775808", {"epoch is 9223372036854775808"}},
      {"/epoch", "", {"has no epoch"}},
      {"/global_step", "-1", {"global_step is -1"}},
      {"/global_step", "null", {"global_step is null"}},
      {"/optimizer/lr", R"("nan")", {"optimizer.lr is \"nan\"", "a finite number >= 0"}},
      {"/optimizer/lr", "-0.5", {"optimizer.lr is -0.5"}},
      // JSON has no infinity; the parser refuses a number that overflows a double, naming it.
      {"/optimizer/lr", "1e999", {"is not JSON", "number overflow parsing '1e999'"}},
      {"/optimizer/lr", "[0.1]", {"optimizer.lr is [0.1]", "a finite number >= 0"}},
      {"/optimizer/lr", "", {"has no optimizer.lr"}},
      {"/optimizer/name", "3", {"optimizer.name is 3"}},
      {"/optimizer/hyperparameters/beta1", R"("nan")", {"optimizer.hyperparameters.beta1 is \"nan\""}},
      {"/optimizer/hyperparameters/eps", "-1e999", {"number overflow parsing '-1e999'"}},
      {"/optimizer/hyperparameters/eps", "true", {"optimizer.hyperparameters.eps is true", "a finite number"}},
      {"/optimizer/hyperparameters", "[1, 2]", {"optimizer.hyperparameters is [1,2]"}},
      {"/rng_state", R"("x")", {"rng_state is \"x\""}},
      {"/rng_state/seed", "", {"has no rng_state.seed"}},
      {"/rng_state/seed", R"("12")", {"rng_state.seed is \"12\""}},
      {"/rng_state/offset", "-4", {"rng_state.offset is -4", "an integer in [0, 2^64)"}},
      {"/rng_state/offset", "4.5", {"rng_state.offset is 4.5"}},
      {"/rng_state/offset", "18446744073709551616", {"rng_state.offset is"}},
      // A long value is cut short in the message.
      {"/rng_state/offset", "\"" + std::string(1000, 'x') + "\"", {"rng_state.offset is \"xxx", "... (1002 bytes)"}},
  };
  const std::string bad = temp_path("bad_value.safetensors");
  for (const Case& c : cases) {
    SCOPED_TRACE(c.pointer + " = " + c.raw);
    rewrite_training(source_, bad, set_raw(c.pointer, c.raw));
    auto words = c.words;
    words.push_back("'nabla.training'");
    expect_refused_untouched(bad, words);
  }
  // Not JSON, or not an object.
  rewrite_training(source_, bad, [](std::string& t) { t = "{\"epoch\": 2"; });
  expect_refused_untouched(bad, {"'nabla.training' is not JSON"});
  rewrite_training(source_, bad, [](std::string& t) { t = "[2]"; });
  expect_refused_untouched(bad, {"'nabla.training' is array, expected a JSON object"});
}

TEST_F(Checkpoint, BadOptimizerStateChangesNothing) {
  nb::SafetensorsFile f = nb::load_safetensors(source_);
  for (auto& [name, t] : f.tensors)
    if (name == "optimizer.state.0.step") t = nb::scalar(0, {.dtype = nb::DType::int64});
  const std::string bad = temp_path("bad_step.safetensors");
  nb::save_safetensors(bad, f.tensors, f.metadata);
  // The optimizer's own check, prefixed with the file.
  expect_refused_untouched(bad, {"load_checkpoint " + bad, "state entry '0.step' is 0"});
}

TEST_F(Checkpoint, CorruptFileChangesNothing) {
  std::ifstream in(source_, std::ios::binary);
  std::vector<char> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string data_flip = temp_path("data_flip.safetensors"), meta_flip = temp_path("meta_flip.safetensors");
  {
    auto m = b;
    m[m.size() - 5] ^= 0x40;  // a data byte
    std::ofstream(data_flip, std::ios::binary).write(m.data(), static_cast<std::streamsize>(m.size()));
  }
  {
    // A training value edited by hand, the JSON left valid: the header checksum refuses it.
    std::string s(b.begin(), b.end());
    const size_t at = s.find(R"(\"epoch\":2)");
    ASSERT_NE(at, std::string::npos);
    s[at + 10] = '9';
    std::ofstream(meta_flip, std::ios::binary).write(s.data(), static_cast<std::streamsize>(s.size()));
  }
  expect_refused_untouched(data_flip, {"checksum mismatch"});
  expect_refused_untouched(meta_flip, {"header checksum mismatch"});
  // load() (weights only) is as careful.
  nb::Model m = victim();
  const Snapshot before = snapshot(m);
  EXPECT_THAT(error_of([&] { m.load(data_flip); }), HasSubstr(data_flip));
  EXPECT_TRUE(snapshot(m) == before);
}

TEST_F(Checkpoint, LoadSeesOneVersionWhileTheFileIsSwapped) {
  // Two checkpoints of one model that differ in weights, optimizer state and epoch. A thread
  // renames them over one path, alternately, as fast as it can; every load must get all of one
  // of them. A load that read the header of one and the data of the other (two opens) would mix
  // an epoch with the wrong weights.
  const std::string a = temp_path("swap_a.safetensors"), b = temp_path("swap_b.safetensors");
  const std::string target = temp_path("swapped.safetensors");
  nb::Model ma = trained(1, 2), mb = trained(2, 3);
  ma.save_checkpoint(a);
  mb.save_checkpoint(b);
  const Snapshot sa = snapshot(ma), sb = snapshot(mb);
  ASSERT_NE(sa.epoch, sb.epoch);
  fs::copy_file(a, target, fs::copy_options::overwrite_existing);
  std::atomic<bool> stop{false};
  std::atomic<int> swaps{0};
  std::thread swapper([&] {
    for (int k = 0; !stop.load(); ++k) {
      // A new inode each time (a hard link of one of the two), renamed over the target.
      const std::string link = target + ".next";
      ::unlink(link.c_str());
      if (::link(k % 2 ? a.c_str() : b.c_str(), link.c_str()) != 0) continue;
      if (::rename(link.c_str(), target.c_str()) == 0) ++swaps;
    }
  });
  constexpr int kLoads = 300;
  int as = 0, bs = 0, mixed = 0, errors = 0;
  for (int i = 0; i < kLoads; ++i) {
    nb::Model m = make_model();
    m.compile(nb::Adam({.lr = 0.5}), nb::CrossEntropyLoss());
    if (const std::string msg = error_of([&] { m.load_checkpoint(target); }); msg != "(no error)") {
      if (errors++ < 3) ADD_FAILURE() << "load " << i << ": " << msg;
      continue;
    }
    const Snapshot s = snapshot(m);
    // Compare all but the random state (equal for both files only by chance).
    auto same = [&](const Snapshot& want) {
      return s.tensors == want.tensors && s.epoch == want.epoch && s.step == want.step && s.lr == want.lr;
    };
    if (same(sa))
      ++as;
    else if (same(sb))
      ++bs;
    else
      ++mixed;
  }
  stop = true;
  swapper.join();
  std::printf("%d swaps during %d loads: %d of A, %d of B, %d mixed, %d errors\n", swaps.load(), kLoads, as, bs,
              mixed, errors);
  EXPECT_EQ(mixed, 0);
  EXPECT_EQ(errors, 0);
  EXPECT_GT(swaps.load(), 0);
}
