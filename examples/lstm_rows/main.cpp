// Reads each Fashion-MNIST image as a sequence of 28 rows of 28 pixels: LSTM(28 -> 128) over the
// rows, its last output into Dense(128 -> 10); trained with Model::compile/fit and Adam.
//
//   nabla-lstm-rows [--epochs 30] [--batch 128] [--lr 2e-3] [--hidden 128] [--clip 1] [--augment 1]
//                   [--device best|cpu|cuda] [--data DIR] [--seed 0] [--train-limit N] [--out DIR]
//
// Recipe (the layers stay LSTM + Dense): inputs standardized with the training set's mean and
// standard deviation; each epoch sees the images shifted by up to 2 pixels and mirrored
// left-right at random; Adam with a short linear warm-up and a cosine decay of the learning rate;
// gradients clipped to a global norm of --clip. Writes DIR/lstm_rows.safetensors and its history;
// ends with one line
//   RESULT test_accuracy=<x> epochs=<n> seconds=<s> device=<d>
#include <nabla/nabla.h>

#include "../common/fashion_mnist.h"
#include "../common/program.h"

#include <fmt/format.h>

namespace nb = nabla;

int main(int argc, char** argv) {
  examples::restart_with_short_omp_spin(argv);
  return examples::run_program("nabla-lstm-rows", [&] {
    examples::RunArgs args{.epochs = 30, .lr = 2e-3};
    int64_t hidden = 128;
    double clip = 1.0;
    examples::Flags flags("nabla-lstm-rows", "Trains an LSTM over the rows of Fashion-MNIST images.");
    examples::add_run_flags(flags, &args);
    flags.add("--hidden", &hidden, "N", {.min = 1, .max = 16384}, "units of the LSTM")
        .add("--clip", &clip, "X", {.min = 0}, "clip the gradients to this global norm (0: no clipping)");
    flags.parse(argc, argv);
    const auto t0 = std::chrono::steady_clock::now();
    examples::check_output_dir(args.out);
    nb::manual_seed(args.seed);
    const nb::Device device = nb::Device::parse(args.device);
    const auto data = examples::load_fashion_mnist(args);

    // [N, 1, 28, 28] -> [N, 28 rows, 28 pixels] -> LSTM -> its last step -> Dense
    nb::Model model{nb::Flatten(1, 2), nb::LSTM(28, hidden, {.batch_first = true}), nb::LastStep(true),
                    nb::Dense(hidden, 10)};
    model.to(device);
    model.compile(nb::Adam({.lr = args.lr}), nb::CrossEntropyLoss(), {"accuracy"}, {.clip_norm = clip});
    model.summary({1, 28, 28});
    fmt::print("device {}\n", device);
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
    return examples::save_and_report(model, history, test_accuracy, args, "lstm_rows", t0);
  });
}
