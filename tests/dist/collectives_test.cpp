// nabla::dist's collectives on CPU tensors (the MPI engine), run by every rank of the job
// (dist.collectives_test.np2) and alone (np1, a world of one, where they are identities).
// Rank r's element i is value(r, i) = 1000 r + i mod 997: every expected result is a formula of
// r and i, exact in float32 too.
#include <nabla/core/test_hooks.h>
#include <nabla/dist/dist.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace nb = nabla;
namespace dist = nabla::dist;
using dist::ReduceOp;
using nb::DType;
using nb::Tensor;

namespace {

const std::vector<int64_t> kSizes = {0, 1, 7, (int64_t{1} << 20) + 3};
const std::vector<DType> kDTypes = {DType::float32, DType::float64, DType::int64, DType::int32};

double value(int r, int64_t i) { return 1000.0 * r + static_cast<double>(i % 997); }
// The sum of value(r, i) over the ranks of a world.
double sum_over_ranks(int world, int64_t i) { return world * value(0, i) + 1000.0 * world * (world - 1) / 2; }

Tensor ranked(int64_t n, DType dtype, int r) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = value(r, i);
  return nb::from_vector(v, {n}).to(dtype);
}

std::vector<double> values(const Tensor& t) { return t.to(DType::float64).contiguous().to_vector<double>(); }

// Where the first element differs from expected(i), as a failure message; "" when none does.
template <typename F>
std::string first_difference(const Tensor& t, F&& expected) {
  const std::vector<double> v = values(t);
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] != expected(static_cast<int64_t>(i)))
      return "element " + std::to_string(i) + " is " + std::to_string(v[i]) + ", expected " +
             std::to_string(expected(static_cast<int64_t>(i)));
  return "";
}

std::string label(DType dtype, int64_t n) { return std::string(nb::dtype_name(dtype)) + " of " + std::to_string(n); }

// The message of the E that f throws; a failure when it throws nothing or something else.
template <typename E, typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw another kind of exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "did not throw";
  return "";
}

// After rejected or failed collectives: the next one still meets the other ranks' and is right.
void expect_group_still_works() {
  const int world = dist::world_size();
  Tensor x = ranked(9, DType::int64, dist::rank());
  dist::allreduce(x);
  EXPECT_EQ(first_difference(x, [&](int64_t i) { return sum_over_ranks(world, i); }), "");
}

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

}  // namespace

TEST(DistWorld, RankAndSizes) {
  const int world = dist::world_size(), rank = dist::rank();
  EXPECT_TRUE(dist::initialized());
  EXPECT_GE(world, 1);
  EXPECT_GE(rank, 0);
  EXPECT_LT(rank, world);
  EXPECT_EQ(dist::is_main_process(), rank == 0);
  EXPECT_GE(dist::local_size(), 1);
  EXPECT_LE(dist::local_size(), world);
  EXPECT_LT(dist::local_rank(), dist::local_size());
  const std::vector<std::string> names = dist::allgather_strings(std::string(static_cast<size_t>(rank), 'x') + "rank " +
                                                                 std::to_string(rank));
  ASSERT_EQ(names.size(), static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) EXPECT_EQ(names[r], std::string(static_cast<size_t>(r), 'x') + "rank " + std::to_string(r));
}

TEST(DistWorld, Timeout) {
  const auto before = dist::timeout();
  EXPECT_GT(before.count(), 0);
  dist::set_timeout(std::chrono::seconds(7));
  EXPECT_EQ(dist::timeout(), std::chrono::seconds(7));
  EXPECT_CONTAINS(error_of<nb::Error>([] { dist::set_timeout(std::chrono::milliseconds(0)); }), "expected > 0");
  dist::set_timeout(before);
}

TEST(DistAllreduce, SumOfEveryRank) {
  const int world = dist::world_size(), rank = dist::rank();
  for (DType dtype : kDTypes)
    for (int64_t n : kSizes) {
      Tensor t = ranked(n, dtype, rank);
      dist::allreduce(t);
      EXPECT_EQ(t.dtype(), dtype);
      EXPECT_EQ(t.shape(), nb::Shape{n});
      EXPECT_EQ(first_difference(t, [&](int64_t i) { return sum_over_ranks(world, i); }),
                "")
          << label(dtype, n);
    }
}

TEST(DistAllreduce, MeanOfEveryRank) {
  const int world = dist::world_size(), rank = dist::rank();
  for (DType dtype : {DType::float32, DType::float64})
    for (int64_t n : kSizes) {
      Tensor t = ranked(n, dtype, rank);
      dist::allreduce(t, ReduceOp::mean);
      // The sum is exact; dividing by 2 (or 1) is too.
      EXPECT_EQ(first_difference(t, [&](int64_t i) { return value(0, i) + 1000.0 * (world - 1) / 2; }), "")
          << label(dtype, n);
    }
  for (DType dtype : {DType::int64, DType::int32}) {
    const std::string what = error_of<nb::DTypeError>([&] { dist::allreduce(ranked(7, dtype, rank), ReduceOp::mean); });
    EXPECT_CONTAINS(what, "nabla::dist::allreduce: mean needs a floating-point tensor");
    EXPECT_CONTAINS(what, nb::dtype_name(dtype));
  }
  // The rejected calls took no collective number: the ranks still agree.
  dist::barrier();
}

TEST(DistAllreduce, MaxAndMin) {
  const int world = dist::world_size(), rank = dist::rank();
  auto v = [](int r, int64_t i) { return static_cast<double>((i * 7 + r * 3) % 11) - 5; };
  for (DType dtype : kDTypes)
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{100003}}) {
      std::vector<double> mine(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) mine[i] = v(rank, i);
      Tensor hi = nb::from_vector(mine, {n}).to(dtype), lo = hi.clone();
      dist::allreduce(hi, ReduceOp::max);
      dist::allreduce(lo, ReduceOp::min);
      auto over_ranks = [&](int64_t i, bool want_max) {
        double best = v(0, i);
        for (int r = 1; r < world; ++r) best = want_max ? std::max(best, v(r, i)) : std::min(best, v(r, i));
        return best;
      };
      EXPECT_EQ(first_difference(hi, [&](int64_t i) { return over_ranks(i, true); }), "") << "max " << label(dtype, n);
      EXPECT_EQ(first_difference(lo, [&](int64_t i) { return over_ranks(i, false); }), "") << "min " << label(dtype, n);
    }
}

TEST(DistBroadcast, FromEachRoot) {
  const int world = dist::world_size(), rank = dist::rank();
  for (int root = 0; root < world; ++root)
    for (DType dtype : kDTypes)
      for (int64_t n : kSizes) {
        Tensor t = ranked(n, dtype, rank);
        dist::broadcast(t, root);
        EXPECT_EQ(first_difference(t, [&](int64_t i) { return value(root, i); }), "")
            << label(dtype, n) << " from root " << root;
      }
}

TEST(DistAllgather, EveryRankInRankOrder) {
  const int world = dist::world_size(), rank = dist::rank();
  for (DType dtype : kDTypes)
    for (int64_t n : kSizes) {
      Tensor all = dist::allgather(ranked(n, dtype, rank));
      ASSERT_EQ(all.shape(), (nb::Shape{world, n})) << label(dtype, n);
      EXPECT_EQ(all.dtype(), dtype);
      EXPECT_EQ(first_difference(all, [&](int64_t k) { return value(static_cast<int>(k / n), k % n); }), "")
          << label(dtype, n);
    }
  // A 0-d tensor gathers into [world]; into a given out through the async form.
  Tensor out = nb::zeros({world}, {.dtype = DType::int64});
  dist::allgather_async(nb::scalar(10.0 * rank + 1, {.dtype = DType::int64}), out).wait();
  EXPECT_EQ(first_difference(out, [](int64_t r) { return 10.0 * r + 1; }), "");
}

TEST(DistBarrier, BlockingAndAsync) {
  dist::barrier();
  dist::Work w = dist::barrier_async();
  w.wait();
  EXPECT_TRUE(w.completed());
  w.wait();  // waiting again returns at once
}

TEST(DistWork, SeveralInFlightWaitedInReverseOrder) {
  const int world = dist::world_size(), rank = dist::rank();
  const int64_t big = (int64_t{1} << 20) + 3;
  Tensor a = ranked(big, DType::float32, rank);
  Tensor b = ranked(1000, DType::float64, rank);
  Tensor c = ranked(7, DType::int64, rank);
  Tensor c_all = nb::zeros({world, 7}, {.dtype = DType::int64});
  Tensor d = ranked(33, DType::int32, rank);
  std::vector<dist::Work> works;
  works.push_back(dist::allreduce_async(a));
  works.push_back(dist::broadcast_async(b, world - 1));
  works.push_back(dist::allgather_async(c, c_all));
  works.push_back(dist::barrier_async());
  works.push_back(dist::allreduce_async(d, ReduceOp::max));
  for (auto it = works.rbegin(); it != works.rend(); ++it) it->wait();
  for (const dist::Work& w : works) {
    EXPECT_TRUE(w.completed());
    EXPECT_NE(w.started(), std::chrono::steady_clock::time_point{});
    EXPECT_LE(w.started(), w.finished());
  }
  // They ran in issue order: each started after the one before finished.
  for (size_t k = 1; k < works.size(); ++k) EXPECT_GE(works[k].started(), works[k - 1].finished());
  EXPECT_EQ(first_difference(a, [&](int64_t i) { return sum_over_ranks(world, i); }), "");
  EXPECT_EQ(first_difference(b, [&](int64_t i) { return value(world - 1, i); }), "");
  EXPECT_EQ(first_difference(c_all, [&](int64_t k) { return value(static_cast<int>(k / 7), k % 7); }), "");
  EXPECT_EQ(first_difference(d, [&](int64_t i) { return value(world - 1, i); }), "");
}

TEST(DistWork, DefaultIsComplete) {
  dist::Work w;
  EXPECT_TRUE(w.completed());
  w.wait();
  EXPECT_EQ(w.started(), std::chrono::steady_clock::time_point{});
}

// Past MPI's int counts the engine splits a collective into pieces; a test hook makes the
// pieces small enough to reach that path here.
TEST(DistChunks, SplitCollectivesGiveTheSameResults) {
  const int world = dist::world_size(), rank = dist::rank();
  nb::test_hooks::set_dist_max_chunk(1000);
  Tensor s = ranked(10'500, DType::float64, rank);
  dist::allreduce(s);
  Tensor b = ranked(2'001, DType::int32, rank);
  dist::broadcast(b, world - 1);
  Tensor all = dist::allgather(ranked(2'500, DType::float32, rank));
  const std::vector<std::string> names = dist::allgather_strings(std::string(1500, static_cast<char>('a' + rank)));
  nb::test_hooks::set_dist_max_chunk(0);
  EXPECT_EQ(first_difference(s, [&](int64_t i) { return sum_over_ranks(world, i); }), "");
  EXPECT_EQ(first_difference(b, [&](int64_t i) { return value(world - 1, i); }), "");
  ASSERT_EQ(all.shape(), (nb::Shape{world, 2'500}));
  EXPECT_EQ(first_difference(all, [&](int64_t k) { return value(static_cast<int>(k / 2'500), k % 2'500); }), "");
  ASSERT_EQ(names.size(), static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) EXPECT_EQ(names[r], std::string(1500, static_cast<char>('a' + r)));
}

TEST(DistErrors, BadArgumentsAreRejectedBeforeAnyCommunication) {
  const int world = dist::world_size();
  EXPECT_CONTAINS(error_of<nb::Error>([] { dist::allreduce(Tensor()); }), "nabla::dist::allreduce: the tensor is undefined");
  Tensor strided = nb::zeros({2, 3}).transpose(0, 1);
  const std::string what = error_of<nb::Error>([&] { dist::allreduce(strided); });
  EXPECT_CONTAINS(what, "nabla::dist::allreduce: the tensor must be contiguous (shape [3, 2], strides [1, 3])");
  EXPECT_CONTAINS(error_of<nb::Error>([&] { dist::broadcast(strided); }), "nabla::dist::broadcast: the tensor must be contiguous");
  for (int root : {-1, world}) {
    const std::string bad_root = error_of<nb::IndexError>([&] { dist::broadcast(nb::zeros({3}), root); });
    EXPECT_CONTAINS(bad_root, "nabla::dist::broadcast: root " + std::to_string(root) + " is out of range");
  }
  Tensor t = nb::zeros({4});
  EXPECT_CONTAINS(error_of<nb::ShapeError>([&] { (void)dist::allgather_async(t, nb::zeros({world + 1, 4})); }),
                  "nabla::dist::allgather: out has shape [" + std::to_string(world + 1) + ", 4], expected [" +
                      std::to_string(world) + ", 4]");
  EXPECT_CONTAINS(error_of<nb::ShapeError>([&] { (void)dist::allgather_async(t, nb::zeros({4})); }), "out has shape [4]");
  EXPECT_CONTAINS(error_of<nb::DTypeError>([&] {
                    (void)dist::allgather_async(t, nb::zeros({world, 4}, {.dtype = DType::float64}));
                  }),
                  "out has dtype float64, expected the tensor's float32");
  EXPECT_CONTAINS(error_of<nb::Error>([&] { (void)dist::allgather_async(t, nb::zeros({world, 8}).slice(1, 0, 8, 2)); }),
                  "out must be contiguous");
  EXPECT_CONTAINS(error_of<nb::Error>([&] { (void)dist::allgather_async(t, Tensor()); }), "out is undefined");
  // None of them took a collective number: the next collectives still meet.
  expect_group_still_works();
}

TEST(DistMismatch, DifferentCountsFailOnEveryRankNamingEach) {
  const int world = dist::world_size(), rank = dist::rank();
  if (world == 1) GTEST_SKIP() << "a mismatch needs two ranks";
  // Rank 0 reduces 10 elements, every other rank 12: detected before any data moves.
  Tensor t = nb::zeros({rank == 0 ? 10 : 12});
  const std::string what = error_of<dist::CollectiveError>([&] { dist::allreduce(t); });
  EXPECT_CONTAINS(what, "nabla::dist: collective mismatch at collective #");
  EXPECT_CONTAINS(what, "rank 0 called allreduce (sum) of 10 float32");
  EXPECT_CONTAINS(what, world == 2 ? std::string("rank 1 called allreduce (sum) of 12 float32")
                                   : "ranks 1-" + std::to_string(world - 1) + " called allreduce (sum) of 12 float32");
  EXPECT_CONTAINS(what, "every rank must call the same collectives in the same order");
  // Different kinds, through the async form.
  Tensor u = nb::zeros({3}, {.dtype = DType::float64});
  dist::Work w = rank == 0 ? dist::allreduce_async(u, ReduceOp::max) : dist::broadcast_async(u, 0);
  const std::string kinds = error_of<dist::CollectiveError>([&] { w.wait(); });
  EXPECT_CONTAINS(kinds, "rank 0 called allreduce (max) of 3 float64");
  EXPECT_CONTAINS(kinds, "called broadcast (root 0) of 3 float64");
  EXPECT_TRUE(w.completed());
  // The group is still usable: every rank consumed the same collective numbers.
  dist::barrier();
  expect_group_still_works();
}

TEST(DistMismatch, SkippedCollectiveIsDetectedAtTheNextOne) {
  const int world = dist::world_size(), rank = dist::rank();
  if (world == 1) GTEST_SKIP() << "a skipped collective needs two ranks";
  // Rank 1 skips the allreduce: its barrier meets rank 0's allreduce, and both fail.
  if (rank == 1) {
    const std::string what = error_of<dist::CollectiveError>([] { dist::barrier(); });
    EXPECT_CONTAINS(what, "rank 0 called allreduce (sum) of 4 float32");
    EXPECT_CONTAINS(what, "rank 1 called barrier");
  } else {
    const std::string what = error_of<dist::CollectiveError>([] { dist::allreduce(nb::ones({4})); });
    EXPECT_CONTAINS(what, "rank 1 called barrier");
  }
  // Then rank 0's barrier meets rank 1's next one.
  dist::barrier();
  Tensor x = nb::ones({3});
  dist::allreduce(x);
  EXPECT_EQ(first_difference(x, [&](int64_t) { return static_cast<double>(world); }), "");
}
