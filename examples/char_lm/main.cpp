// A character-level language model: Embedding -> 2-layer LSTM -> Dense over the characters,
// trained on real English text (by default the fortune cookies of Debian's `fortunes` package).
// The last 10% of the text is held out; each epoch prints its bits per character, and the run
// ends by sampling text from a prompt.
//
//   nabla-char-lm [PATH] [--epochs 10] [--hidden 512] [--layers 2] [--embed 64] [--seq 128]
//                 [--batch 64] [--lr 2e-3] [--clip 1] [--dropout 0.2] [--device best|cpu|cuda]
//                 [--prompt "The "] [--temperature 0.8] [--sample 400] [--seed 0]
//                 [--max-chars N] [--steps-per-epoch N]
//
// PATH is a text file or a folder whose files (without extension, as the fortune files) are read
// in name order; default /usr/share/games/fortunes. Characters are bytes; the vocabulary is the
// set of bytes in the text. Training: random windows of --seq + 1 characters, Adam with a
// cosine-decayed learning rate, gradients clipped to a global norm of --clip (computed on the
// device, no synchronization). Evaluation: the held-out text as --batch contiguous streams read
// --seq characters at a time, the LSTM state carried across windows. Ends with one line
//   RESULT val_bpc=<x> epochs=<n> seconds=<s> device=<d>
#include <nabla/nabla.h>

#include "../common/program.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace nb = nabla;
namespace fs = std::filesystem;

namespace {

struct Args {
  std::string path = "/usr/share/games/fortunes";
  int epochs = 10;
  int64_t hidden = 512, layers = 2, embed = 64, seq = 128, batch = 64;
  double lr = 2e-3, clip = 1.0, dropout = 0.2;
  std::string device = "best";
  std::string prompt = "The ";
  double temperature = 0.8;
  int64_t sample = 400;
  uint64_t seed = 0;
  int64_t max_chars = 0;        // 0: the whole text
  int64_t steps_per_epoch = 0;  // 0: one pass over the training text's characters
};

// Text beyond this needs --max-chars: the ids take 8 bytes a character, and a path such as
// /dev/zero would otherwise be read until memory runs out.
constexpr int64_t kMaxTextWithoutLimit = int64_t{256} << 20;

// The text of `path` (a file, or a folder's files), at most `max_chars` characters (0: up to
// kMaxTextWithoutLimit, more is an error).
std::string read_text(const std::string& path, int64_t max_chars) {
  const int64_t limit = max_chars > 0 ? max_chars : kMaxTextWithoutLimit;
  std::vector<fs::path> files;
  if (fs::is_directory(path)) {
    for (const auto& e : fs::directory_iterator(path))
      if (e.is_regular_file() && !e.is_symlink() && e.path().extension().empty()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  std::string text;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) throw nb::Error(fmt::format("char_lm: cannot read {}", f.string()));
    std::vector<char> buf(1 << 16);
    while (static_cast<int64_t>(text.size()) < limit) {
      const auto want = std::min<int64_t>(static_cast<int64_t>(buf.size()), limit - static_cast<int64_t>(text.size()));
      in.read(buf.data(), want);
      text.append(buf.data(), static_cast<size_t>(in.gcount()));
      if (in.gcount() < want) break;
    }
    if (static_cast<int64_t>(text.size()) >= limit) {
      if (max_chars > 0) break;  // the first --max-chars characters
      if (in.peek() != std::ifstream::traits_type::eof())
        throw nb::Error(fmt::format("char_lm: {} holds more than {} MiB of text; pass --max-chars N to train on its "
                                    "first N characters",
                                    path, kMaxTextWithoutLimit >> 20));
    }
  }
  if (text.size() < 1000)
    throw nb::Error(fmt::format("char_lm: {} holds {} bytes of text, too few to train on (install Debian's "
                                "`fortunes` package for the default text, or pass a text file)",
                                path, text.size()));
  return text;
}

struct Model {
  nb::Embedding embed;
  nb::LSTM lstm;
  nb::Dense head;
  std::vector<nb::Tensor> parameters() const {
    std::vector<nb::Tensor> p = embed.parameters();
    for (auto* m : std::initializer_list<const nb::Module*>{&lstm, &head})
      for (auto& t : m->parameters()) p.push_back(t);
    return p;
  }
  void to(nb::Device d) {
    embed.to(d);
    lstm.to(d);
    head.to(d);
  }
  void train(bool on) {
    embed.train(on);
    lstm.train(on);
    head.train(on);
  }
  // ids (batch, seq) -> logits (batch, seq, vocab) and the final state
  std::pair<nb::Tensor, nb::RnnState> forward(const nb::Tensor& ids, const nb::RnnState& state) {
    nb::RnnOutput o = lstm.forward_state(embed(ids), state);
    return {head(o.output), {o.h, o.c}};
  }
};

nb::Tensor ids_tensor(const std::vector<int64_t>& v, const nb::Shape& shape, nb::Device d) {
  return nb::from_vector(v, shape, {.dtype = nb::DType::int64, .device = d});
}

// Bits per character of `ids` as `batch` contiguous streams, the state carried across windows.
double bits_per_char(Model& m, const std::vector<int64_t>& ids, int64_t batch, int64_t seq, nb::Device d) {
  nb::NoGrad ng;
  m.train(false);
  const int64_t stream = (static_cast<int64_t>(ids.size()) - 1) / batch;
  nb::RnnState state;
  nb::Tensor nll_sum = nb::zeros({}, {.device = d});
  int64_t count = 0;
  for (int64_t start = 0; start + 1 < stream; start += seq) {
    const int64_t len = std::min(seq, stream - 1 - start);
    std::vector<int64_t> x(static_cast<size_t>(batch * len)), y(x.size());
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t t = 0; t < len; ++t) {
        x[size_t(b * len + t)] = ids[size_t(b * stream + start + t)];
        y[size_t(b * len + t)] = ids[size_t(b * stream + start + t + 1)];
      }
    auto [logits, next] = m.forward(ids_tensor(x, {batch, len}, d), state);
    state = next;
    nll_sum = nb::add(nll_sum, nb::cross_entropy(logits.reshape({batch * len, -1}), ids_tensor(y, {batch * len}, d),
                                                 nb::Reduction::sum));
    count += batch * len;
  }
  m.train(true);
  return nll_sum.item() / static_cast<double>(count) / std::log(2.0);
}

std::string sample_text(Model& m, const std::vector<unsigned char>& vocab, const std::vector<int64_t>& to_id,
                        const std::string& prompt, int64_t n, double temperature, std::mt19937_64& gen, nb::Device d) {
  nb::NoGrad ng;
  m.train(false);
  std::vector<int64_t> p;
  for (unsigned char ch : prompt)
    if (to_id[ch] >= 0) p.push_back(to_id[ch]);
  if (p.empty()) p.push_back(0);
  auto [logits, state] = m.forward(ids_tensor(p, {1, static_cast<int64_t>(p.size())}, d), {});
  std::string out = prompt;
  const int64_t V = static_cast<int64_t>(vocab.size());
  for (int64_t i = 0; i < n; ++i) {
    nb::Tensor last = logits.slice(1, logits.size(1) - 1, logits.size(1)).reshape({V});
    std::vector<double> prob = nb::softmax(nb::affine(last, 1.0 / temperature, 0)).to_vector<double>();
    std::discrete_distribution<int64_t> pick(prob.begin(), prob.end());
    const int64_t id = pick(gen);
    out += static_cast<char>(vocab[size_t(id)]);
    std::tie(logits, state) = m.forward(ids_tensor({id}, {1, 1}, d), state);
  }
  m.train(true);
  return out;
}

}  // namespace

// Flags that take sizes: every product the training loop forms from them stays far below 2^63.
constexpr int64_t kMaxTokensPerStep = int64_t{1} << 24;  // --batch x --seq

int main(int argc, char** argv) {
  examples::restart_with_short_omp_spin(argv);
  return examples::run_program("nabla-char-lm", [&] {
    Args args;
    examples::Flags flags("nabla-char-lm", "Trains a character-level LSTM language model.");
    const examples::Range<double> positive{.min = 0, .min_open = true};
    flags.positional("PATH", &args.path, "a text file, or a folder whose files without extension are read")
        .add("--epochs", &args.epochs, "N", {.min = 1, .max = 100000}, "epochs of training")
        .add("--hidden", &args.hidden, "N", {.min = 1, .max = 16384}, "units of each LSTM layer")
        .add("--layers", &args.layers, "N", {.min = 1, .max = 64}, "LSTM layers")
        .add("--embed", &args.embed, "N", {.min = 1, .max = 16384}, "size of the character embedding")
        .add("--seq", &args.seq, "N", {.min = 1, .max = 65536}, "characters per training window")
        .add("--batch", &args.batch, "N", {.min = 1, .max = 65536}, "windows per training step")
        .add("--lr", &args.lr, "X", positive, "initial learning rate of Adam (cosine decay)")
        .add("--clip", &args.clip, "X", {.min = 0}, "clip the gradients to this global norm (0: no clipping)")
        .add("--dropout", &args.dropout, "P", {.min = 0, .max = 1, .max_open = true}, "dropout between LSTM layers")
        .add("--device", &args.device, "best|cpu|cuda", "where to train; best: CUDA when there is a GPU")
        .add("--prompt", &args.prompt, "TEXT", "the start of the sampled text")
        .add("--temperature", &args.temperature, "T", {.min = 0.01, .max = 100}, "sampling temperature")
        .add("--sample", &args.sample, "N", {.min = 0, .max = 1000000}, "characters to sample after training")
        .add("--seed", &args.seed, "N", "seed of the weights, the windows and the sampling")
        .add("--max-chars", &args.max_chars, "N", {.min = 0, .max = int64_t{1} << 40},
             "read at most N characters of PATH (0: all, up to 256 MiB)")
        .add("--steps-per-epoch", &args.steps_per_epoch, "N", {.min = 0, .max = 1000000000},
             "training steps per epoch (0: one pass over the training text)");
    flags.parse(argc, argv);
    if (args.batch * args.seq > kMaxTokensPerStep)
      examples::Flags::fail("--batch x --seq", fmt::format("{} x {}", args.batch, args.seq),
                            fmt::format("at most {} characters per step", kMaxTokensPerStep));
    const auto t0 = std::chrono::steady_clock::now();
    nb::manual_seed(args.seed);
    std::mt19937_64 gen(args.seed);
    const nb::Device device = nb::Device::parse(args.device);

    std::string text = read_text(args.path, args.max_chars);
    std::vector<int64_t> to_id(256, -1);
    std::vector<unsigned char> vocab;
    for (unsigned char ch : text) to_id[ch] = 0;
    for (int c = 0; c < 256; ++c)
      if (to_id[size_t(c)] == 0) {
        to_id[size_t(c)] = static_cast<int64_t>(vocab.size());
        vocab.push_back(static_cast<unsigned char>(c));
      }
    std::vector<int64_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = to_id[static_cast<unsigned char>(text[i])];
    const size_t split = text.size() * 9 / 10;
    const std::vector<int64_t> train_ids(ids.begin(), ids.begin() + int64_t(split));
    const std::vector<int64_t> val_ids(ids.begin() + int64_t(split), ids.end());
    const int64_t V = static_cast<int64_t>(vocab.size());
    fmt::print("text: {} bytes from {} ({} training, {} held out), vocabulary {}\n", text.size(), args.path,
               train_ids.size(), val_ids.size(), V);
    NABLA_CHECK(static_cast<int64_t>(train_ids.size()) > args.seq + 1 &&
                    static_cast<int64_t>(val_ids.size()) > 2 * args.batch,
                "char_lm: the text is too short for --seq {} and --batch {}", args.seq, args.batch);

    Model model{nb::Embedding(V, args.embed),
                nb::LSTM(args.embed, args.hidden,
                         {.num_layers = args.layers, .batch_first = true, .dropout = args.layers > 1 ? args.dropout : 0}),
                nb::Dense(args.hidden, V)};
    model.to(device);
    int64_t nparams = 0;
    for (auto& p : model.parameters()) nparams += p.numel();
    fmt::print("{} -> {} -> {}: {} parameters, device {}\n", model.embed.to_string(), model.lstm.to_string(),
               model.head.to_string(), nparams, device);

    nb::Adam opt(model.parameters(), {.lr = args.lr});
    const int64_t steps = args.steps_per_epoch > 0
                              ? args.steps_per_epoch
                              : std::max<int64_t>(1, static_cast<int64_t>(train_ids.size()) / (args.batch * args.seq));
    const int64_t total = steps * args.epochs;
    std::uniform_int_distribution<int64_t> start_at(0, static_cast<int64_t>(train_ids.size()) - args.seq - 2);
    double bpc = 0;
    int64_t step = 0;
    for (int epoch = 1; epoch <= args.epochs; ++epoch) {
      fmt::print("Epoch {}/{}\n", epoch, args.epochs);
      nb::ProgressBar bar(steps);
      nb::Tensor loss_sum = nb::zeros({}, {.device = device});
      for (int64_t i = 1; i <= steps; ++i, ++step) {
        std::vector<int64_t> x(size_t(args.batch * args.seq)), y(x.size());
        for (int64_t b = 0; b < args.batch; ++b) {
          const int64_t s = start_at(gen);
          for (int64_t t = 0; t < args.seq; ++t) {
            x[size_t(b * args.seq + t)] = train_ids[size_t(s + t)];
            y[size_t(b * args.seq + t)] = train_ids[size_t(s + t + 1)];
          }
        }
        opt.set_lr(0.5 * args.lr * (1 + std::cos(M_PI * static_cast<double>(step) / static_cast<double>(total))));
        auto [logits, state] = model.forward(ids_tensor(x, {args.batch, args.seq}, device), {});
        nb::Tensor loss = nb::cross_entropy(logits.reshape({args.batch * args.seq, V}),
                                            ids_tensor(y, {args.batch * args.seq}, device));
        opt.zero_grad();
        loss.backward();
        if (args.clip > 0) nb::clip_grad_norm(model.parameters(), args.clip);
        opt.step();
        {
          nb::NoGrad ng;
          loss_sum = nb::add(loss_sum, loss);
        }
        if (i % 25 == 0 || i == steps) {
          const double running = loss_sum.item() / static_cast<double>(i) / std::log(2.0);
          // The sum keeps a NaN, so the reads the progress bar makes anyway catch one.
          NABLA_CHECK(std::isfinite(running),
                      "char_lm: the training loss is {} at epoch {}, step {}; training stopped. Try a lower --lr "
                      "(now {}) or --clip",
                      std::isnan(running) ? "not a number (nan)" : "infinite", epoch, i, args.lr);
          bar.update(i, {{"bpc", running}});
        }
      }
      bpc = bits_per_char(model, val_ids, args.batch, args.seq, device);
      NABLA_CHECK(std::isfinite(bpc), "char_lm: the held-out bits per character are not a finite number ({}) after epoch {}",
                  bpc, epoch);
      bar.finish({{"val_bpc", bpc}});
    }
    fmt::print("\nsample (temperature {}):\n{}\n\n", args.temperature,
               sample_text(model, vocab, to_id, args.prompt, args.sample, args.temperature, gen, device));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("RESULT val_bpc={:.4f} epochs={} seconds={:.1f} device={}\n", bpc, args.epochs, seconds,
               device.is_cpu() ? "cpu" : "cuda");
    return 0;
  });
}
