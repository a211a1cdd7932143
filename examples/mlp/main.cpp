// Trains the 784-256-128-10 MLP on Fashion-MNIST with Model::compile/fit and Adam, and reports
// the test accuracy.
//
//   nabla-mlp [--epochs 40] [--batch 128] [--lr 1e-3] [--dropout 0.2] [--augment 0]
//             [--device best|cpu|cuda] [--data DIR] [--seed 0] [--train-limit N] [--out DIR]
//   mpirun -np 2 nabla-mlp --distributed --batch 64   (data parallel: the global batch is 2 x 64)
//
// Recipe: inputs standardized with the training set's mean and standard deviation, Adam with a
// short warm-up and a cosine decay of the learning rate, light dropout between the hidden
// layers. Writes DIR/mlp.safetensors and its history (mlp_history.csv, and a plot with gnuplot);
// ends with one line
//   RESULT test_accuracy=<x> epochs=<n> seconds=<s> device=<d>
#include <nabla/nabla.h>

#include "../common/fashion_mnist.h"
#include "../common/program.h"

#include <fmt/format.h>

namespace nb = nabla;

int main(int argc, char** argv) {
  examples::restart_with_short_omp_spin(argv);
  return examples::run_program("nabla-mlp", [&] {
    examples::RunArgs args{.epochs = 40, .augment = false};
    double dropout = 0.2;
    examples::Flags flags("nabla-mlp", "Trains an MLP on Fashion-MNIST.");
    examples::add_run_flags(flags, &args);
    flags.add("--dropout", &dropout, "P", {.min = 0, .max = 1, .max_open = true}, "dropout after each hidden layer");
    flags.parse(argc, argv);
    const auto t0 = std::chrono::steady_clock::now();
    examples::check_output_dir(args.out);
    nb::manual_seed(args.seed);
    const nb::Device device = examples::run_device(args);
    const auto data = examples::load_fashion_mnist(args);

    nb::Model model{nb::Flatten(),       nb::Dense(784, 256), nb::ReLU(), nb::Dropout(dropout),
                    nb::Dense(256, 128), nb::ReLU(),          nb::Dropout(dropout), nb::Dense(128, 10)};
    model.to(device);
    model.compile(nb::Adam({.lr = args.lr}), nb::CrossEntropyLoss(), {"accuracy"});
    if (args.distributed) model.distribute();
    if (examples::main_process(args)) {
      model.summary({1, 28, 28});
      fmt::print("device {}{}\n", device,
                 args.distributed ? fmt::format(", {} processes (data parallel)", nb::dist::world_size()) : "");
    }
    // One pass over the (freshly augmented) training set per epoch, the learning rate set at every
    // step, the test set evaluated after each epoch.
    const nb::History history = model.fit(
        data.raw_train, {.epochs = args.epochs,
                         .batch_size = args.batch,
                         .validation = data.test,
                         .seed = args.seed,
                         .callbacks = {nb::LearningRateScheduler(examples::warmup_cosine(args, data.raw_train.size()),
                                                                 nb::ScheduleUnit::step)},
                         .epoch_data = data.epoch_data(args.augment, args.seed)});
    const double test_accuracy = model.evaluate(data.test).at("accuracy");
    return examples::save_and_report(model, history, test_accuracy, args, "mlp", t0);
  });
}
