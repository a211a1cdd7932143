#include <nabla/core/data/dataset.h>

#include <nabla/core/error.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

namespace nabla::data {

namespace {

// Rows [begin, end) of a CPU tensor, copied into a new contiguous tensor.
Tensor copy_rows(const Tensor& t, int64_t begin, int64_t end) {
  Tensor src = t.is_contiguous() ? t : t.contiguous();
  Shape shape = src.shape();
  const int64_t n = shape[0];
  shape[0] = end - begin;
  Tensor out = Tensor::empty(shape, {.dtype = src.dtype()});
  const size_t row_bytes = n == 0 ? 0 : static_cast<size_t>(src.numel() / n) * dtype_size(src.dtype());
  if (end > begin)
    std::memcpy(out.data_ptr(), static_cast<const char*>(src.data_ptr()) + begin * row_bytes,
                static_cast<size_t>(end - begin) * row_bytes);
  return out;
}

template <typename T>
void normalize_into(T* dst, const T* src, int64_t n, T mean, T std) {
  for (int64_t i = 0; i < n; ++i) dst[i] = (src[i] - mean) / std;
}

struct SplitFiles {
  const char* what;    // "fashion_mnist"
  const char* env;     // "NABLA_FASHION_MNIST"
  const char* fallback;
  const char* hint;    // how to get the files
};

// <dir>/<name>.gz or <dir>/<name>, whichever exists (the .gz first).
std::string find_file(const SplitFiles& s, const std::string& dir, const std::string& dir_from,
                      const std::string& name) {
  namespace fs = std::filesystem;
  const std::string gz = (fs::path(dir) / (name + ".gz")).string();
  const std::string raw = (fs::path(dir) / name).string();
  std::error_code ec;
  if (fs::exists(gz, ec)) return gz;
  if (fs::exists(raw, ec)) return raw;
  fail<IOError>("{}: cannot find {} in {} ({}): tried {} and {}; {}", s.what, name, dir, dir_from, gz, raw,
                s.hint);
}

Split load_split(const SplitFiles& s, const std::string& dir_arg) {
  std::string dir = dir_arg;
  std::string dir_from = "the dir argument";
  if (dir.empty()) {
    const char* env = std::getenv(s.env);
    if (env != nullptr && *env != '\0') {
      dir = env;
      dir_from = fmt::format("from ${}", s.env);
    } else {
      dir = s.fallback;
      dir_from = fmt::format("the default; ${} is not set", s.env);
    }
  }
  auto load = [&](const char* prefix) {
    std::string images = find_file(s, dir, dir_from, fmt::format("{}-images-idx3-ubyte", prefix));
    std::string labels = find_file(s, dir, dir_from, fmt::format("{}-labels-idx1-ubyte", prefix));
    Dataset d = idx_dataset(images, labels, 10);
    const Shape& shape = d.x.shape();
    NABLA_CHECK_IO(shape[2] == 28 && shape[3] == 28, "{}: {} holds {}x{} images, expected 28x28",
                   s.what, images, shape[2], shape[3]);
    return d;
  };
  Split split;
  split.train = load("train");
  split.test = load("t10k");
  return split;
}

}  // namespace

int64_t Dataset::size() const {
  NABLA_CHECK(x.defined() && y.defined(), "Dataset: x or y is undefined");
  NABLA_CHECK_SHAPE(x.dim() >= 1 && y.dim() >= 1,
                    "Dataset: x {} and y {} need a sample axis (at least 1 dimension)",
                    shape_str(x.shape()), shape_str(y.shape()));
  NABLA_CHECK_SHAPE(x.size(0) == y.size(0), "Dataset: x has {} samples {} but y has {} {}", x.size(0),
                    shape_str(x.shape()), y.size(0), shape_str(y.shape()));
  return x.size(0);
}

Dataset Dataset::normalize(double mean, double std) const {
  size();
  NABLA_CHECK(std::isfinite(mean) && std::isfinite(std) && std > 0,
              "Dataset::normalize: need a finite mean and std > 0, got mean {} std {}", mean, std);
  NABLA_CHECK(x.device().is_cpu(), "Dataset::normalize: x is on {}, expected the CPU", x.device());
  NABLA_CHECK_DTYPE(is_floating(x.dtype()), "Dataset::normalize: x is {}, expected float32 or float64",
                    x.dtype());
  Tensor src = x.is_contiguous() ? x : x.contiguous();
  Tensor out = Tensor::empty(src.shape(), {.dtype = src.dtype()});
  // In the data's own precision, as torchvision's Normalize does.
  if (src.dtype() == DType::float32)
    normalize_into(out.data<float>(), src.data<float>(), src.numel(), static_cast<float>(mean),
                   static_cast<float>(std));
  else
    normalize_into(out.data<double>(), src.data<double>(), src.numel(), mean, std);
  return Dataset{out, y};
}

Dataset Dataset::subset(int64_t begin, int64_t end) const {
  const int64_t n = size();
  NABLA_CHECK_INDEX(0 <= begin && begin <= end && end <= n,
                    "Dataset::subset: range [{}, {}) is not within [0, {}]", begin, end, n);
  if (x.device().is_cpu() && y.device().is_cpu())
    return Dataset{copy_rows(x, begin, end), copy_rows(y, begin, end)};
  return Dataset{x.slice(0, begin, end), y.slice(0, begin, end)};
}

Dataset Dataset::take(int64_t n) const {
  NABLA_CHECK(n >= 0, "Dataset::take: n must be >= 0, got {}", n);
  return subset(0, std::min(n, size()));
}

Dataset idx_dataset(const std::string& images_path, const std::string& labels_path,
                    int64_t num_classes, const IdxOptions& opts) {
  Tensor y = read_idx_labels(labels_path, num_classes, opts);
  Tensor x = read_idx_images(images_path, opts);
  NABLA_CHECK_IO(x.size(0) == y.size(0),
                 "IDX count mismatch: {} has {} images but {} has {} labels", images_path, x.size(0),
                 labels_path, y.size(0));
  return Dataset{x, y};
}

Split fashion_mnist(const std::string& dir) {
  static const SplitFiles files{
      "fashion_mnist", "NABLA_FASHION_MNIST", "/usr/share/datasets/fashion-mnist",
      "install the Debian package dataset-fashion-mnist or set NABLA_FASHION_MNIST to the folder "
      "that holds the IDX files"};
  return load_split(files, dir);
}

Split mnist(const std::string& dir) {
  static const SplitFiles files{
      "mnist", "NABLA_MNIST", "/usr/share/datasets/mnist",
      "download the four MNIST IDX files and set NABLA_MNIST to their folder (or pass it to "
      "mnist(dir))"};
  return load_split(files, dir);
}

}  // namespace nabla::data
