// The kinds of nabla::Error a program can catch apart (core/error.h): a real failing call of each
// kind is caught by its own class and by nabla::Error, with its message as before; no class
// catches another's kind; context added on the way out (Sequential, Model::load, a layer's
// constructor) keeps the kind; and a training loop that halves its batch on OutOfMemoryError,
// without reading a message.
#include <nabla/core/test_hooks.h>
#include <nabla/nabla.h>

#include "test_util.h"

#include <cstdint>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace nb = nabla;
using nb::Tensor;
using nb::test::f32;
using nb::test::f64;
using nb::test::i64;
using ::testing::HasSubstr;

namespace {

std::string temp_path(const std::string& name) { return nb::test::temp_path("nabla_error_kind_test", name); }

enum class Kind { out_of_memory, shape, dtype, index, io, plain, none };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::out_of_memory: return "OutOfMemoryError";
    case Kind::shape: return "ShapeError";
    case Kind::dtype: return "DTypeError";
    case Kind::index: return "IndexError";
    case Kind::io: return "IOError";
    case Kind::plain: return "plain nabla::Error";
    case Kind::none: return "nothing";
  }
  return "?";
}

// What `f` throws, found as a program finds it: by catch clauses, the base last.
Kind caught_as(const std::function<void()>& f, std::string* what = nullptr) {
  auto keep = [what](const nb::Error& e, Kind k) {
    if (what) *what = e.what();
    return k;
  };
  try {
    f();
  } catch (const nb::OutOfMemoryError& e) { return keep(e, Kind::out_of_memory);
  } catch (const nb::ShapeError& e) { return keep(e, Kind::shape);
  } catch (const nb::DTypeError& e) { return keep(e, Kind::dtype);
  } catch (const nb::IndexError& e) { return keep(e, Kind::index);
  } catch (const nb::IOError& e) { return keep(e, Kind::io);
  } catch (const nb::Error& e) { return keep(e, Kind::plain);
  }
  return Kind::none;
}

// How many of the five classes the error `f` throws is an instance of (catching it as the base).
int classes_matching(const std::function<void()>& f) {
  try {
    f();
  } catch (const nb::Error& e) {
    return (dynamic_cast<const nb::OutOfMemoryError*>(&e) != nullptr) +
           (dynamic_cast<const nb::ShapeError*>(&e) != nullptr) + (dynamic_cast<const nb::DTypeError*>(&e) != nullptr) +
           (dynamic_cast<const nb::IndexError*>(&e) != nullptr) + (dynamic_cast<const nb::IOError*>(&e) != nullptr);
  }
  return -1;
}

struct Case {
  const char* name;
  Kind kind;
  std::function<void()> call;
  const char* message;  // a part of the message, which is as it was before the kinds
};

std::vector<Case> cases() {
  return {
      // Out of memory: 2^50 floats (4 PiB), more than any machine's address space.
      {"Tensor::empty of 2^50 floats", Kind::out_of_memory,
       [] { Tensor::empty({int64_t{1} << 50}); }, "out of memory"},
      // Through a layer's constructor, which adds its name: still out of memory.
      {"Dense(2^30 -> 2^30)", Kind::out_of_memory, [] { nb::Dense(int64_t{1} << 30, int64_t{1} << 30); },
       "out of memory"},
      {"matmul of [2, 3] and [4, 5]", Kind::shape, [] { nb::matmul(nb::zeros({2, 3}), nb::zeros({4, 5})); },
       "matmul: inner dimensions differ"},
      {"add of [2, 3] and [4]", Kind::shape, [] { nb::add(nb::zeros({2, 3}), nb::zeros({4})); }, "do not broadcast"},
      // Through Sequential, which adds the layer: still a shape error.
      {"Sequential, second layer", Kind::shape,
       [] {
         nb::Sequential seq{nb::Dense(3, 4), nb::Dense(5, 2)};
         seq.forward(nb::zeros({2, 3}));
       },
       "Sequential layer 1 (Dense(5->2, bias))"},
      {"float64 + float32", Kind::dtype, [] { nb::add(f64({1, 2}), f32({1, 2})); }, "float32"},
      {"embedding of float ids", Kind::dtype, [] { nb::Embedding(10, 4).forward(f32({1, 2})); }, "expected int64"},
      {"embedding id 10 of 10", Kind::index, [] { nb::Embedding(10, 4).forward(i64({3, 10})); }, "out of range"},
      {"cross_entropy label 3 of 3 classes", Kind::index, [] { nb::cross_entropy(nb::zeros({2, 3}), i64({0, 3})); },
       "label 3 at index 1 is out of range for 3 classes"},
      {"Sequential[5] of 1", Kind::index,
       [] {
         nb::Sequential seq{nb::Dense(2, 2)};
         (void)seq[5];
       },
       "Sequential: index 5 out of range for 1 layers"},
      {"sum over axis 5 of 2", Kind::index, [] { nb::sum(nb::zeros({2, 3}), {5}); }, "axis 5 out of range"},
      {"Model::load of a missing file", Kind::io,
       [] {
         nb::Model m{nb::Dense(2, 2)};
         m.load(temp_path("missing.safetensors"));
       },
       "cannot open"},
      {"load_safetensors of a file of garbage", Kind::io,
       [] {
         const std::string path = temp_path("garbage.safetensors");
         std::ofstream(path, std::ios::binary) << "this is not a safetensors file";
         nb::load_safetensors(path);
       },
       "safetensors"},
      {"read_idx of a missing file", Kind::io, [] { nb::data::read_idx(temp_path("missing.idx")); }, "cannot open"},
      {"History::load_csv of a missing file", Kind::io, [] { nb::History::load_csv(temp_path("missing.csv")); },
       "cannot open"},
      // A bad argument value is none of the five kinds.
      {"SGD with a negative learning rate", Kind::plain, [] { nb::SGD({.lr = -1}); }, "negative"},
  };
}

}  // namespace

TEST(ErrorKind, EachFailingCallIsCaughtByItsClassAndAsError) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    std::string what;
    EXPECT_EQ(kind_name(caught_as(c.call, &what)), std::string(kind_name(c.kind)));
    EXPECT_THAT(what, HasSubstr(c.message));
    EXPECT_THAT(nb::test::error_of(c.call), HasSubstr(c.message)) << "caught as nabla::Error";
    EXPECT_THROW(c.call(), std::runtime_error);
  }
}

TEST(ErrorKind, NoClassCatchesAnothersKind) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(classes_matching(c.call), c.kind == Kind::plain ? 0 : 1);
  }
  // As written in a program: a catch clause of another kind lets the error pass to the next one.
  bool wrong = false, right = false;
  try {
    try {
      nb::matmul(nb::zeros({2, 3}), nb::zeros({4, 5}));
    } catch (const nb::OutOfMemoryError&) {
      wrong = true;
    } catch (const nb::DTypeError&) {
      wrong = true;
    } catch (const nb::IndexError&) {
      wrong = true;
    } catch (const nb::IOError&) {
      wrong = true;
    }
  } catch (const nb::ShapeError&) {
    right = true;
  }
  EXPECT_FALSE(wrong);
  EXPECT_TRUE(right);
}

TEST(ErrorKind, RethrowWithKeepsTheClass) {
  const nb::IndexError e("first");
  try {
    e.rethrow_with("second: first");
  } catch (const nb::IndexError& again) {
    EXPECT_STREQ(again.what(), "second: first");
  }
  EXPECT_THROW(nb::Error("plain").rethrow_with("x"), nb::Error);
  EXPECT_THROW(nb::fail<nb::IOError>("{} {}", "formatted", 1), nb::IOError);
  EXPECT_EQ(nb::test::error_of([] { nb::fail<nb::ShapeError>("a {} b", 2); }), "a 2 b");
}

// A training script that does not know how much memory it has: it starts with a large batch and
// halves it on OutOfMemoryError, without parsing a message. The machine's limit here is the test
// hook's 100 KiB per allocation (the batch of 1024 rows of 128 floats is 512 KiB), so that the
// batch where it fits is the same on every machine.
TEST(ErrorKind, RetryWithASmallerBatchOnOutOfMemory) {
  nb::manual_seed(7);
  const nb::data::Dataset data{nb::rand({1024, 128}), nb::rand({1024, 1})};
  nb::Model model{nb::Dense(128, 8), nb::ReLU(), nb::Dense(8, 1)};
  model.compile(nb::SGD({.lr = 0.01}), nb::MSELoss());

  nb::test_hooks::set_cpu_allocation_limit(100 * 1024);
  int64_t batch = 1024;
  std::vector<int64_t> refused;
  nb::History history;
  for (;;) {
    try {
      history = model.fit(data, {.epochs = 1, .batch_size = batch, .verbose = 0});
      break;
    } catch (const nb::OutOfMemoryError&) {
      refused.push_back(batch);
      if (batch == 1) throw;
      batch /= 2;
    }
  }
  nb::test_hooks::set_cpu_allocation_limit(std::numeric_limits<size_t>::max());

  EXPECT_EQ(refused, (std::vector<int64_t>{1024, 512, 256}));  // 512, 256 and 128 KiB batches
  EXPECT_EQ(batch, 128);
  EXPECT_EQ(history.epochs(), std::vector<int64_t>{0});
  EXPECT_EQ(model.global_step(), 1024 / 128);
}
