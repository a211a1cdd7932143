// A distributed fit in which rank 1 throws mid-epoch (from a callback, at its 4th batch), for
// tests/dist/failure_test.cmake: the job must end within seconds, non-zero, with rank 1's
// message, while rank 0 would otherwise wait in the next gradient average forever.
//   mpiexec -n 2 nabla_dist_fit_throws fit
#include <nabla/nabla.h>

#include <cstdio>

namespace nb = nabla;

namespace {

struct ThrowOnRankOne : nb::Callback {
  void on_batch_begin(nb::Model&, const nb::BatchInfo& b) override {
    if (nb::dist::rank() == 1 && b.batch == 3) throw nb::Error("rank 1 gave up on purpose at batch 3");
  }
};

}  // namespace

int main() {
  nb::manual_seed(1);
  nb::Tensor x = nb::randn({4096, 8}), y = nb::randn({4096, 1});
  nb::Model m{nb::Dense(8, 32), nb::ReLU(), nb::Dense(32, 1)};
  m.distribute();
  m.compile(nb::SGD({.lr = 0.01}), nb::MSELoss());
  m.fit({x, y}, {.epochs = 100, .batch_size = 16, .callbacks = {ThrowOnRankOne()}, .verbose = 0});
  std::puts("fit returned: the failure was not seen");
  return 0;
}
