// Tests of core/io/safetensors: round trips, the file layout, atomic saves (failures and
// SIGKILL), hostile files (crafted, mutated, lying about their size) and interop with the
// reference `safetensors` Python package (tests/safetensors_interop.py).
#include <gtest/gtest.h>
#include <nabla/core/device.h>
#include <nabla/core/io/safetensors.h>
#include <nabla/core/tensor.h>
#include <nabla/core/test_hooks.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "hostile_file.h"

namespace {

namespace fs = std::filesystem;
namespace nb = nabla;
using Bytes = std::vector<uint8_t>;
using Named = std::vector<std::pair<std::string, nb::Tensor>>;
using Meta = std::map<std::string, std::string>;

// ---- helpers ------------------------------------------------------------------------------------

Bytes read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// The raw bytes of a tensor, row-major.
Bytes tensor_bytes(const nb::Tensor& t) {
  nb::Tensor c = t.detach().to(nb::Device::cpu()).contiguous();
  const auto* p = static_cast<const uint8_t*>(c.data_ptr());
  return Bytes(p, p + static_cast<size_t>(c.numel()) * nb::dtype_size(c.dtype()));
}

::testing::AssertionResult SameTensor(const nb::Tensor& a, const nb::Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape())
    return ::testing::AssertionFailure()
           << nb::dtype_name(a.dtype()) << nb::shape_str(a.shape()) << " vs "
           << nb::dtype_name(b.dtype()) << nb::shape_str(b.shape());
  if (tensor_bytes(a) != tensor_bytes(b)) return ::testing::AssertionFailure() << "values differ";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult SameTensors(const Named& a, const Named& b) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << a.size() << " tensors vs " << b.size();
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].first != b[i].first)
      return ::testing::AssertionFailure()
             << "tensor " << i << ": " << a[i].first << " vs " << b[i].first;
    if (auto r = SameTensor(a[i].second, b[i].second); !r)
      return r << " (tensor " << a[i].first << ")";
  }
  return ::testing::AssertionSuccess();
}

// Random tensor of any dtype; integers span their whole range.
nb::Tensor random_tensor(const nb::Shape& shape, nb::DType dtype, std::mt19937_64& rng) {
  nb::Tensor t = nb::Tensor::empty(shape, {.dtype = dtype});
  auto* p = static_cast<uint8_t*>(t.data_ptr());
  const size_t n = static_cast<size_t>(t.numel());
  switch (dtype) {
    case nb::DType::float32: {
      std::normal_distribution<float> d;
      for (size_t i = 0; i < n; ++i) reinterpret_cast<float*>(p)[i] = d(rng);
      break;
    }
    case nb::DType::float64: {
      std::normal_distribution<double> d;
      for (size_t i = 0; i < n; ++i) reinterpret_cast<double*>(p)[i] = d(rng);
      break;
    }
    case nb::DType::int32:
      for (size_t i = 0; i < n; ++i) reinterpret_cast<int32_t*>(p)[i] = static_cast<int32_t>(rng());
      break;
    case nb::DType::int64:
      for (size_t i = 0; i < n; ++i) reinterpret_cast<int64_t*>(p)[i] = static_cast<int64_t>(rng());
      break;
  }
  return t;
}

// A file from a header text (padded with spaces to a multiple of 8 unless `pad` is false) and
// data bytes, the way the format lays them out.
Bytes st_file(std::string header, const Bytes& data, bool pad = true) {
  if (pad) header.append((8 - header.size() % 8) % 8, ' ');
  Bytes b;
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i)));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

// 8 bytes of length `n`, then `rest`.
Bytes with_length(uint64_t n, const Bytes& rest) {
  Bytes b;
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(n >> (8 * i)));
  b.insert(b.end(), rest.begin(), rest.end());
  return b;
}

Bytes iota_bytes(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 7 + 3);
  return b;
}

std::string crc_hex(const Bytes& data) {
  return fmt::format("{:08x}", nb::crc32c(data.data(), data.size()));
}

// The data section of a file, by its header length.
Bytes data_section(const Bytes& file) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{file[i]} << (8 * i);
  return Bytes(file.begin() + static_cast<ptrdiff_t>(8 + n), file.end());
}

// A fresh temporary folder per test, removed afterwards.
class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info->name();  // "RoundTripIsExact/float32" for a parameterized test
    std::replace(name.begin(), name.end(), '/', '_');
    dir_ = fs::temp_directory_path() / ("nabla_st_test_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const Bytes& b) {
    std::string p = path(name);
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    EXPECT_TRUE(f.good()) << p;
    return p;
  }
  // Files in the folder whose name contains ".tmp.".
  std::vector<std::string> temp_files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_))
      if (e.path().filename().string().find(".tmp.") != std::string::npos)
        out.push_back(e.path().string());
    return out;
  }
  fs::path dir_;
};

// ---- CRC-32C ------------------------------------------------------------------------------------

TEST(Crc32c, KnownValues) {
  // The check value of the CRC catalogue and the test vectors of RFC 3720, B.4.
  const std::string digits = "123456789";
  EXPECT_EQ(nb::crc32c(digits.data(), digits.size()), 0xE3069283u);
  Bytes zeros(32, 0x00), ones(32, 0xFF), inc(32);
  for (int i = 0; i < 32; ++i) inc[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(nb::crc32c(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(nb::crc32c(ones.data(), 32), 0x62A8AB43u);
  EXPECT_EQ(nb::crc32c(inc.data(), 32), 0x46DD794Eu);
  EXPECT_EQ(nb::crc32c(nullptr, 0), 0u);
}

TEST(Crc32c, ContinuesAcrossPiecesOfAnyLength) {
  Bytes b = iota_bytes(1000);
  const uint32_t whole = nb::crc32c(b.data(), b.size());
  for (size_t cut : {0, 1, 3, 7, 8, 9, 500, 999, 1000})
    EXPECT_EQ(nb::crc32c(b.data() + cut, b.size() - cut, nb::crc32c(b.data(), cut)), whole) << cut;
}

// ---- round trips --------------------------------------------------------------------------------

class SafetensorsDType : public Safetensors, public ::testing::WithParamInterface<nb::DType> {};

TEST_P(SafetensorsDType, RoundTripIsExact) {
  std::mt19937_64 rng(7);
  Named t = {{"a", random_tensor({2, 3}, GetParam(), rng)},
             {"b.weight", random_tensor({5}, GetParam(), rng)},
             {"c", random_tensor({2, 1, 3, 2}, GetParam(), rng)}};
  const auto p = path("x.safetensors");
  nb::save_safetensors(p, t, {{"k", "v"}});
  nb::SafetensorsFile f = nb::load_safetensors(p);
  EXPECT_TRUE(SameTensors(f.tensors, t));
  EXPECT_EQ(f.metadata.at("k"), "v");
  EXPECT_EQ(f.metadata.at("nabla.crc32c"), crc_hex(data_section(read_bytes(p))));
  EXPECT_EQ(f.metadata.count("nabla.header_crc32c"), 1u);
  EXPECT_EQ(f.metadata.size(), 3u);
  EXPECT_TRUE(temp_files().empty());
}

INSTANTIATE_TEST_SUITE_P(AllDTypes, SafetensorsDType,
                         ::testing::Values(nb::DType::float32, nb::DType::float64, nb::DType::int32,
                                           nb::DType::int64),
                         [](const auto& info) { return std::string(nb::dtype_name(info.param)); });

TEST_F(Safetensors, RoundTripScalarAndEmptyTensors) {
  Named t = {{"scalar", nb::scalar(2.5, {.dtype = nb::DType::float64})},
             {"empty", nb::Tensor::empty({0}, {.dtype = nb::DType::int32})},
             {"empty3d", nb::Tensor::empty({3, 0, 2})},
             {"after", nb::from_vector<int64_t>({-1, 1LL << 62})}};
  const auto p = path("edge.safetensors");
  nb::save_safetensors(p, t);
  nb::SafetensorsHeader h = nb::read_safetensors_header(p);
  ASSERT_EQ(h.tensors.size(), 4u);
  EXPECT_EQ(h.tensors[0].shape, nb::Shape{});
  EXPECT_EQ(h.tensors[1].begin, 8u);  // the empty tensors sit at the end of the scalar
  EXPECT_EQ(h.tensors[1].end, 8u);
  EXPECT_EQ(h.tensors[2].shape, (nb::Shape{3, 0, 2}));
  EXPECT_EQ(h.data_bytes, 24u);
  nb::SafetensorsFile f = nb::load_safetensors(p);
  EXPECT_TRUE(SameTensors(f.tensors, t));
  EXPECT_EQ(f.tensors[0].second.item(), 2.5);

  // A file with nothing but empty tensors has an empty data section.
  nb::save_safetensors(p, {{"e", nb::Tensor::empty({0, 4})}});
  EXPECT_EQ(nb::read_safetensors_header(p).data_bytes, 0u);
  EXPECT_TRUE(SameTensors(nb::load_safetensors(p).tensors, {{"e", nb::Tensor::empty({0, 4})}}));
  // And no tensors at all.
  nb::save_safetensors(p, {}, {{"only", "metadata"}});
  nb::SafetensorsFile none = nb::load_safetensors(p);
  EXPECT_TRUE(none.tensors.empty());
  EXPECT_EQ(none.metadata.at("only"), "metadata");
}

TEST_F(Safetensors, RoundTripManyTensorsKeepsOrder) {
  std::mt19937_64 rng(11);
  const nb::DType dtypes[] = {nb::DType::float32, nb::DType::float64, nb::DType::int32,
                              nb::DType::int64};
  Named t;
  for (int i = 0; i < 400; ++i) {
    nb::Shape s;
    for (size_t r = rng() % 4; r > 0; --r) s.push_back(static_cast<int64_t>(rng() % 5));
    // Names in no sorted order, as a state_dict has them ("layers.10" after "layers.9").
    t.emplace_back(fmt::format("layers.{}.{}", (i * 37) % 400, i % 2 ? "weight" : "bias"),
                   random_tensor(s, dtypes[rng() % 4], rng));
  }
  const auto p = path("many.safetensors");
  nb::save_safetensors(p, t);
  EXPECT_TRUE(SameTensors(nb::load_safetensors(p).tensors, t));
}

TEST_F(Safetensors, MetadataStringsRoundTrip) {
  Meta meta = {{"architecture", R"({"layers": [{"type": "Dense", "in": 784, "out": 10}]})"},
               {"empty", ""},
               {"quotes \" and \\ backslash", "line\nbreak\ttab \u00e9\u4e2d\U0001F600"},
               {"epoch", "12"}};
  const auto p = path("meta.safetensors");
  nb::save_safetensors(p, {{"w", nb::ones({2})}}, meta);
  Meta got = nb::load_safetensors(p).metadata;
  EXPECT_EQ(got.erase("nabla.crc32c"), 1u);
  EXPECT_EQ(got.erase("nabla.header_crc32c"), 1u);
  EXPECT_EQ(got, meta);
  // A stale checksum passed back in (load, then save elsewhere) is replaced, not kept.
  meta["nabla.crc32c"] = "deadbeef";
  meta["nabla.header_crc32c"] = "deadbeef";
  nb::save_safetensors(p, {{"w", nb::ones({3})}}, meta);
  EXPECT_NO_THROW(nb::load_safetensors(p));
}

TEST_F(Safetensors, SavesNonContiguousAndGradTensorsByValue) {
  nb::Tensor base = nb::arange(0, 6, 1, {.dtype = nb::DType::float32}).reshape({2, 3});
  nb::Tensor w = nb::ones({3}, {.requires_grad = true});
  const auto p = path("views.safetensors");
  nb::save_safetensors(p, {{"t", base.t()}, {"s", base.slice(1, 0, 3, 2)}, {"w", w}});
  nb::SafetensorsFile f = nb::load_safetensors(p);
  EXPECT_EQ(f.tensors[0].second.shape(), (nb::Shape{3, 2}));
  EXPECT_EQ(f.tensors[0].second.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(f.tensors[1].second.to_vector<float>(), (std::vector<float>{0, 2, 3, 5}));
  EXPECT_FALSE(f.tensors[2].second.requires_grad());
}

TEST_F(Safetensors, FileLayoutFollowsTheFormat) {
  nb::Tensor i32 = nb::from_vector<int32_t>({1, -2, 0x01020304});
  nb::Tensor f64 = nb::from_vector<double>({1.0}, {1, 1}, {.dtype = nb::DType::float64});
  const auto p = path("layout.safetensors");
  nb::save_safetensors(p, {{"z.first", i32}, {"a.second", f64}}, {{"m", "v"}});
  Bytes b = read_bytes(p);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{b[i]} << (8 * i);
  ASSERT_EQ(b.size(), 8 + n + 12 + 8);
  EXPECT_EQ(n % 8, 0u) << "the header is padded to a multiple of 8";
  std::string header(b.begin() + 8, b.begin() + 8 + static_cast<ptrdiff_t>(n));
  EXPECT_EQ(header.front(), '{');
  const std::string json = header.substr(0, header.find_last_not_of(' ') + 1);
  EXPECT_EQ(json.back(), '}');
  EXPECT_EQ(header.size() - json.size(), (8 - json.size() % 8) % 8) << "padded with spaces";
  // In the order given, not sorted by name.
  EXPECT_NE(json.find(R"("z.first":{"dtype":"I32","shape":[3],"data_offsets":[0,12]})"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find(R"("a.second":{"dtype":"F64","shape":[1,1],"data_offsets":[12,20]})"),
            std::string::npos)
      << json;
  EXPECT_LT(json.find("z.first"), json.find("a.second"));
  const Bytes data = data_section(b);
  EXPECT_NE(json.find(R"("nabla.crc32c":")" + crc_hex(data) + "\""), std::string::npos) << json;
  // Little-endian elements.
  const Bytes want_i32 = {1, 0, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF, 4, 3, 2, 1};
  EXPECT_EQ(Bytes(data.begin(), data.begin() + 12), want_i32);
  const Bytes want_one = {0, 0, 0, 0, 0, 0, 0xF0, 0x3F};
  EXPECT_EQ(Bytes(data.begin() + 12, data.end()), want_one);
}

TEST_F(Safetensors, HeaderAloneDescribesTheTensors) {
  const auto p = path("h.safetensors");
  nb::save_safetensors(
      p, {{"w", nb::zeros({4, 3})}, {"step", nb::scalar(3, {.dtype = nb::DType::int64})}},
      {{"epoch", "2"}});
  nb::SafetensorsHeader h = nb::read_safetensors_header(p);
  EXPECT_EQ(h.path, p);
  EXPECT_EQ(h.header_bytes + 8 + h.data_bytes, fs::file_size(p));
  ASSERT_NE(h.find("w"), nullptr);
  EXPECT_EQ(h.find("w")->dtype, nb::DType::float32);
  EXPECT_EQ(h.find("w")->shape, (nb::Shape{4, 3}));
  EXPECT_EQ(h.find("w")->begin, 0u);
  EXPECT_EQ(h.find("w")->nbytes(), 48u);
  EXPECT_EQ(h.find("step")->dtype, nb::DType::int64);
  EXPECT_EQ(h.find("step")->begin, 48u);
  EXPECT_EQ(h.find("absent"), nullptr);
  EXPECT_EQ(h.metadata.at("epoch"), "2");
}

TEST_F(Safetensors, CudaTensorsSaveAndLoadOnTheDevice) {
  if (nb::device_count(nb::Device::Kind::CUDA) == 0) GTEST_SKIP() << "no CUDA device";
  std::mt19937_64 rng(3);
  Named host = {{"a", random_tensor({3, 5}, nb::DType::float32, rng)},
                {"b", random_tensor({7}, nb::DType::int64, rng)}};
  Named dev;
  for (auto& [n, t] : host) dev.emplace_back(n, t.to(nb::Device::cuda()));
  const auto p = path("cuda.safetensors");
  nb::save_safetensors(p, {{"a", dev[0].second.t()}, {"b", dev[1].second}});
  nb::SafetensorsFile f = nb::load_safetensors(p, nb::Device::cuda());
  ASSERT_EQ(f.tensors.size(), 2u);
  for (auto& [n, t] : f.tensors) EXPECT_TRUE(t.device().is_cuda()) << n;
  EXPECT_TRUE(SameTensor(f.tensors[0].second, host[0].second.t()));
  EXPECT_TRUE(SameTensor(f.tensors[1].second, host[1].second));
}

// ---- saving: bad input and failures keep the old file -------------------------------------------

TEST_F(Safetensors, BadTensorListsAreRefusedBeforeWriting) {
  const auto p = path("keep.safetensors");
  nb::save_safetensors(p, {{"old", nb::ones({2})}});
  const Bytes old = read_bytes(p);
  const std::string bad_utf8 = "w\xff\xfe";
  struct Case {
    Named tensors;
    Meta meta;
    std::vector<std::string> words;
  };
  const std::vector<Case> cases = {
      {{{"", nb::ones({1})}}, {}, {"tensor 0 has an empty name"}},
      {{{"a", nb::ones({1})}, {"a", nb::zeros({1})}},
       {},
       {"duplicate tensor name 'a'", "tensor 1"}},
      {{{"__metadata__", nb::ones({1})}}, {}, {"'__metadata__' is reserved"}},
      {{{"u", nb::Tensor()}}, {}, {"tensor 'u' is undefined"}},
      {{{bad_utf8, nb::ones({1})}}, {}, {"not valid UTF-8"}},
      {{{"w", nb::ones({1})}}, {{"k", bad_utf8}}, {"not valid UTF-8"}},
  };
  for (const Case& c : cases) {
    EXPECT_TRUE(ThrowsWith([&] { nb::save_safetensors(p, c.tensors, c.meta); },
                           [&] {
                             auto w = c.words;
                             w.push_back(p);
                             return w;
                           }()));
    EXPECT_EQ(read_bytes(p), old);
    EXPECT_TRUE(temp_files().empty());
  }
}

TEST_F(Safetensors, MissingOrUnwritableFolderIsAnError) {
  const auto p = path("no/such/folder/x.safetensors");
  EXPECT_TRUE(ThrowsWith(
      [&] {
        nb::save_safetensors(p, {{"w", nb::ones({1})}});
      },
      {p, "cannot create", "No such file or directory"}));
  const auto q = path("old.safetensors");
  nb::save_safetensors(q, {{"w", nb::ones({1})}});
  const Bytes old = read_bytes(q);
  fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
  // root ignores folder permissions; everyone else must be refused.
  if (::geteuid() != 0) {
    EXPECT_TRUE(ThrowsWith(
        [&] {
          nb::save_safetensors(q, {{"w", nb::zeros({1})}});
        },
        {q, "cannot create", "Permission denied"}));
    EXPECT_EQ(read_bytes(q), old);
  }
  fs::permissions(dir_, fs::perms::owner_all);
}

TEST_F(Safetensors, WriteErrorMidFileKeepsTheOldFile) {
  // A file size limit makes write() fail part-way (EFBIG) even for root. It is set in a child
  // process so that it does not outlive this test.
  const auto p = path("ckpt.safetensors");
  nb::save_safetensors(p, {{"old", nb::ones({4})}});
  const Bytes old = read_bytes(p);
  const auto msg_path = path("message.txt");
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit lim{16384, 16384};
    ::setrlimit(RLIMIT_FSIZE, &lim);
    int code = 2;
    try {
      nb::save_safetensors(p, {{"new", nb::zeros({100000})}});
    } catch (const nb::Error& e) {
      std::ofstream(msg_path) << e.what();
      code = 0;
    }
    ::_exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the save did not fail: " << status;
  const Bytes msg = read_bytes(msg_path);
  const std::string text(msg.begin(), msg.end());
  EXPECT_NE(text.find("cannot write"), std::string::npos) << text;
  EXPECT_NE(text.find("File too large"), std::string::npos) << text;
  EXPECT_NE(text.find(p), std::string::npos) << text;
  EXPECT_EQ(read_bytes(p), old);
  EXPECT_TRUE(temp_files().empty());
}

// ---- concurrent saves, the save target, temporary files -----------------------------------------

TEST_F(Safetensors, ConcurrentSavesToOnePathNeverShowAPartialFile) {
  // Four threads save their own version (different sizes) to one path, 25 times each, while a
  // fifth loads it in a loop: every load sees one complete version, CRCs valid. With a temporary
  // name shared by the threads of a process, a reader found truncated or mixed files.
  constexpr int kWriters = 4, kSaves = 25;
  std::mt19937_64 rng(7);
  std::vector<Named> versions;
  for (int w = 0; w < kWriters; ++w)
    versions.push_back({{"w", random_tensor({64 + 64 * w, 33}, nb::DType::float32, rng)},
                        {"id", nb::scalar(w, {.dtype = nb::DType::int64})}});
  const auto p = path("shared.safetensors");
  nb::save_safetensors(p, versions[0], {{"writer", "0"}});
  std::atomic<int> writers_left{kWriters};
  std::atomic<int> save_errors{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w)
    threads.emplace_back([&, w] {
      for (int k = 0; k < kSaves; ++k) {
        try {
          nb::save_safetensors(p, versions[w], {{"writer", std::to_string(w)}});
        } catch (const nb::Error& e) {
          std::fprintf(stderr, "writer %d: %s\n", w, e.what());
          ++save_errors;
        }
      }
      --writers_left;
    });
  int loads = 0, bad = 0;
  while (writers_left.load() > 0 || loads < 20) {
    try {
      nb::SafetensorsFile f = nb::load_safetensors(p);
      const int w = std::stoi(f.metadata.at("writer"));
      if (w < 0 || w >= kWriters || !SameTensors(f.tensors, versions[w])) ++bad;
    } catch (const std::exception& e) {
      if (bad++ < 3) ADD_FAILURE() << "load " << loads << ": " << e.what();
    }
    ++loads;
  }
  for (auto& t : threads) t.join();
  std::printf("%d loads during %d concurrent saves\n", loads, kWriters * kSaves);
  EXPECT_EQ(save_errors.load(), 0);
  EXPECT_EQ(bad, 0) << "of " << loads << " loads";
  EXPECT_TRUE(temp_files().empty());
}

TEST_F(Safetensors, TempNamesAreUniquePerSave) {
  // Every save, in one thread or many, uses a fresh name in the target's folder.
  std::vector<std::string> names;
  std::mutex mu;
  nb::test_hooks::set_save_before_rename_hook([&](const std::string& tmp, const std::string&) {
    std::lock_guard<std::mutex> lock(mu);
    names.push_back(tmp);
  });
  const auto p = path("t.safetensors");
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      for (int k = 0; k < 5; ++k) nb::save_safetensors(p, {{"w", nb::ones({8})}});
    });
  for (auto& t : threads) t.join();
  nb::test_hooks::set_save_before_rename_hook(nullptr);
  ASSERT_EQ(names.size(), 20u);
  std::set<std::string> unique(names.begin(), names.end());
  EXPECT_EQ(unique.size(), names.size());
  const std::string prefix = p + ".tmp." + std::to_string(::getpid()) + ".";
  for (const auto& n : names) EXPECT_EQ(n.rfind(prefix, 0), 0u) << n;
}

TEST_F(Safetensors, FailedRenameRemovesTheTempFile) {
  // The target becomes a non-empty folder after it was checked (another process made it): the
  // temporary file is written, the rename fails.
  const auto p = path("is_a_folder");
  nb::test_hooks::set_save_before_rename_hook([&](const std::string&, const std::string&) {
    fs::create_directories(fs::path(p) / "inside");
  });
  EXPECT_TRUE(ThrowsWith(
      [&] {
        nb::save_safetensors(p, {{"w", nb::ones({100})}});
      },
      {p, "cannot rename", "Is a directory|Directory not empty"}));
  nb::test_hooks::set_save_before_rename_hook(nullptr);
  EXPECT_TRUE(fs::is_directory(fs::path(p) / "inside"));
  EXPECT_TRUE(temp_files().empty());
}

TEST_F(Safetensors, TargetThatIsNotARegularFileIsRefusedBeforeWriting) {
  // A folder: refused before a temporary file is made; what is inside stays.
  const auto d = path("folder");
  fs::create_directories(fs::path(d) / "inside");
  EXPECT_TRUE(ThrowsWith([&] { nb::save_safetensors(d, {{"w", nb::ones({4})}}); },
                         {d, "refusing to save over a directory", "not a regular file"}));
  EXPECT_TRUE(fs::is_directory(fs::path(d) / "inside"));
  EXPECT_TRUE(temp_files().empty());
  // A FIFO (any user can make one): refused at once, not written into (which would wait for a
  // reader) and not replaced.
  const auto f = path("pipe");
  ASSERT_EQ(::mkfifo(f.c_str(), 0600), 0) << std::strerror(errno);
  EXPECT_TRUE(ThrowsWith([&] { nb::save_safetensors(f, {{"w", nb::ones({4})}}); },
                         {f, "refusing to save over a FIFO", "not a regular file"}));
  EXPECT_TRUE(fs::is_fifo(f));
  EXPECT_TRUE(temp_files().empty());
  // A socket.
  const auto s = path("sock");
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    ASSERT_LT(s.size(), sizeof(addr.sun_path));
    std::strcpy(addr.sun_path, s.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << std::strerror(errno);
    ::close(fd);
  }
  EXPECT_TRUE(ThrowsWith([&] { nb::save_safetensors(s, {{"w", nb::ones({4})}}); },
                         {s, "refusing to save over a socket"}));
  EXPECT_TRUE(fs::is_socket(s));
  // A device. As root, a save that renamed over /dev/null would replace the system's: first a
  // private node of the same device (root only), so that a regression stops the test there.
  struct stat before {};
  if (::stat("/dev/null", &before) != 0 || !S_ISCHR(before.st_mode)) GTEST_SKIP() << "no /dev/null";
  const auto node = path("null_node");
  if (::mknod(node.c_str(), S_IFCHR | 0666, before.st_rdev) == 0) {
    ASSERT_TRUE(ThrowsWith([&] { nb::save_safetensors(node, {{"w", nb::ones({4})}}); },
                           {node, "refusing to save over a character device"}));
    struct stat st {};
    ASSERT_EQ(::stat(node.c_str(), &st), 0);
    ASSERT_TRUE(S_ISCHR(st.st_mode) && st.st_rdev == before.st_rdev);
    EXPECT_TRUE(temp_files().empty());
  } else {
    if (::geteuid() == 0)
      GTEST_SKIP() << "mknod failed as root (" << std::strerror(errno)
                   << "): /dev/null is not risked without the private node checked first";
  }
  // /dev/null itself (as a user, the rename into /dev would be refused anyway).
  EXPECT_TRUE(ThrowsWith([&] { nb::save_safetensors("/dev/null", {{"w", nb::ones({4})}}); },
                         {"/dev/null", "refusing to save over a character device"}));
  struct stat after {};
  ASSERT_EQ(::stat("/dev/null", &after), 0);
  EXPECT_TRUE(S_ISCHR(after.st_mode));
  EXPECT_EQ(after.st_rdev, before.st_rdev);
  EXPECT_EQ(after.st_ino, before.st_ino) << "/dev/null was replaced";
  for (const auto& e : fs::directory_iterator("/dev"))
    EXPECT_EQ(e.path().filename().string().find("null.tmp."), std::string::npos) << e.path();
}

TEST_F(Safetensors, SymlinkIsFollowedAndKept) {
  // Decision: a save through a symbolic link replaces the file the link points at and keeps the
  // link (as editors do); the temporary file is made next to that file.
  std::mt19937_64 rng(5);
  const Named a = {{"w", random_tensor({10}, nb::DType::float32, rng)}};
  const Named b = {{"w", random_tensor({12}, nb::DType::float64, rng)}};
  fs::create_directories(dir_ / "runs");
  const auto real = path("runs/real.safetensors");
  nb::save_safetensors(real, a);
  const auto link = path("latest.safetensors");
  fs::create_symlink("runs/real.safetensors", link);  // relative to the link's folder
  nb::save_safetensors(link, b);
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(fs::read_symlink(link), fs::path("runs/real.safetensors"));
  EXPECT_TRUE(SameTensors(nb::load_safetensors(real).tensors, b));
  EXPECT_TRUE(temp_files().empty());
  for (const auto& e : fs::directory_iterator(dir_ / "runs"))
    EXPECT_EQ(e.path().filename(), "real.safetensors") << "left behind: " << e.path();

  // A chain of links, the last one absolute.
  const auto link2 = path("chain.safetensors");
  fs::create_symlink(link, link2);
  nb::save_safetensors(link2, a);
  EXPECT_TRUE(fs::is_symlink(link2) && fs::is_symlink(link));
  EXPECT_TRUE(SameTensors(nb::load_safetensors(real).tensors, a));

  // A dangling link: the file it points at is created.
  const auto dangling = path("dangling.safetensors");
  fs::create_symlink("runs/new.safetensors", dangling);
  nb::save_safetensors(dangling, b);
  EXPECT_TRUE(fs::is_symlink(dangling));
  EXPECT_TRUE(SameTensors(nb::load_safetensors(path("runs/new.safetensors")).tensors, b));

  // A link to something that is not a regular file is refused, naming both.
  const auto to_dir = path("to_dir.safetensors");
  fs::create_symlink(dir_ / "runs", to_dir);
  EXPECT_TRUE(ThrowsWith([&] { nb::save_safetensors(to_dir, a); },
                         {to_dir, (dir_ / "runs").string(), "a directory", "symbolic link"}));
  EXPECT_TRUE(fs::is_symlink(to_dir));
  // A loop is an error, not a hang.
  const auto loop1 = path("loop1"), loop2 = path("loop2");
  fs::create_symlink("loop2", loop1);
  fs::create_symlink("loop1", loop2);
  EXPECT_TRUE(ThrowsWith([&] { nb::save_safetensors(loop1, a); }, {loop1, "symbolic links"}));
  EXPECT_TRUE(temp_files().empty());
}

TEST_F(Safetensors, ExistingFileKeepsItsModeNewFileGetsTheUmask) {
  const mode_t mask = ::umask(022);  // the test's own umask, restored below
  const auto p = path("mode.safetensors");
  nb::save_safetensors(p, {{"w", nb::ones({4})}});
  EXPECT_EQ(fs::status(p).permissions(), fs::perms(0644)) << "a new file: 0666 & ~umask";
  for (const mode_t mode : {0600, 0640, 0400, 0664}) {
    ASSERT_EQ(::chmod(p.c_str(), mode), 0);
    nb::save_safetensors(p, {{"w", nb::zeros({4})}});
    struct stat st {};
    ASSERT_EQ(::stat(p.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, mode) << fmt::format("{:o}", mode);
    EXPECT_TRUE(SameTensor(nb::load_safetensors(p).tensors[0].second, nb::zeros({4})));
  }
  ::umask(077);
  const auto q = path("private.safetensors");
  nb::save_safetensors(q, {{"w", nb::ones({4})}});
  EXPECT_EQ(fs::status(q).permissions(), fs::perms(0600));
  ::umask(mask);
  // Root may keep another user's file theirs; the save does.
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown(q.c_str(), 1234, 5678), 0);
    nb::save_safetensors(q, {{"w", nb::zeros({4})}});
    struct stat st {};
    ASSERT_EQ(::stat(q.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 1234u);
    EXPECT_EQ(st.st_gid, 5678u);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
  }
}

// A pid that no process has: a child that has exited and been waited for.
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

TEST_F(Safetensors, StaleTempFilesOfDeadProcessesAreRemoved) {
  const auto p = path("ckpt.safetensors");
  const std::string dead = std::to_string(dead_pid());
  ASSERT_EQ(::kill(std::stoi(dead), 0), -1);
  const std::string self = std::to_string(::getpid());
  const Bytes junk = iota_bytes(100);
  // Removed: this target's temporary files of a dead process, in the old and the new form.
  const std::vector<std::string> stale = {"ckpt.safetensors.tmp." + dead,
                                          "ckpt.safetensors.tmp." + dead + ".0",
                                          "ckpt.safetensors.tmp." + dead + ".17"};
  // Kept: a live process's (pid 1, and this process: another thread may be saving), another
  // target's, names that only look similar, and a folder.
  const std::vector<std::string> kept = {"ckpt.safetensors.tmp.1.3",
                                         "ckpt.safetensors.tmp." + self + ".999",
                                         "other.safetensors.tmp." + dead + ".1",
                                         "ckpt.safetensors.tmp." + dead + ".x",
                                         "ckpt.safetensors.tmp.",
                                         "ckpt.safetensors.tmp.abc",
                                         "ckpt.safetensors.tmp." + dead + ".1.2",
                                         "xckpt.safetensors.tmp." + dead};
  for (const auto& n : stale) write(n, junk);
  for (const auto& n : kept) write(n, junk);
  fs::create_directories(path("ckpt.safetensors.tmp." + dead + ".5"));
  nb::save_safetensors(p, {{"w", nb::ones({3})}});
  for (const auto& n : stale) EXPECT_FALSE(fs::exists(path(n))) << n;
  for (const auto& n : kept) EXPECT_TRUE(fs::exists(path(n))) << n;
  EXPECT_TRUE(fs::is_directory(path("ckpt.safetensors.tmp." + dead + ".5")));
  EXPECT_NO_THROW(nb::load_safetensors(p));
}

TEST_F(Safetensors, LongestLegalNameStillSaves) {
  // 255 bytes (NAME_MAX): no room for ".tmp.<pid>.<n>", so the temporary file gets a short name
  // from a hash of the target's, in the same folder.
  const std::string name = std::string(255 - 12, 'n') + ".safetensors";
  ASSERT_EQ(name.size(), 255u);
  const auto p = path(name);
  std::string tmp_used;
  nb::test_hooks::set_save_before_rename_hook(
      [&](const std::string& tmp, const std::string&) { tmp_used = tmp; });
  nb::save_safetensors(p, {{"w", nb::ones({5})}});
  nb::test_hooks::set_save_before_rename_hook(nullptr);
  EXPECT_TRUE(SameTensor(nb::load_safetensors(p).tensors[0].second, nb::ones({5})));
  const std::string tmp_name = fs::path(tmp_used).filename().string();
  EXPECT_EQ(fs::path(tmp_used).parent_path(), dir_);
  EXPECT_LE(tmp_name.size(), 255u);
  EXPECT_EQ(tmp_name.front(), '.');
  EXPECT_NE(tmp_name.find(".tmp." + std::to_string(::getpid()) + "."), std::string::npos) << tmp_name;
  // Saved again over itself; the short name of a dead process is cleaned up like the long form.
  const std::string stem = tmp_name.substr(0, tmp_name.find(".tmp."));
  const std::string stale = stem + ".tmp." + std::to_string(dead_pid()) + ".4";
  write(stale, iota_bytes(10));
  nb::save_safetensors(p, {{"w", nb::zeros({5})}});
  EXPECT_TRUE(SameTensor(nb::load_safetensors(p).tensors[0].second, nb::zeros({5})));
  EXPECT_FALSE(fs::exists(path(stale)));
  EXPECT_TRUE(temp_files().empty());
  // One byte more is not a legal name: the system's error, naming the file.
  const auto too_long = path(name + "x");
  EXPECT_TRUE(ThrowsWith([&] { nb::save_safetensors(too_long, {{"w", nb::ones({1})}}); },
                         {too_long, "File name too long"}));
}

// ---- interrupted saves --------------------------------------------------------------------------

TEST_F(Safetensors, SigkillDuringSavesLeavesTheOldOrTheNewFile) {
  // A child saves B, A, B, ... to one path; the parent kills it with SIGKILL after it reports k
  // completed saves (k random in 0..2) plus a random delay of up to two save times. After each
  // kill the file must be, byte for byte, A or B, and load with its CRC.
  std::mt19937_64 rng(2024);
  const Named a = {{"w", random_tensor({256, 256}, nb::DType::float32, rng)},
                   {"b", random_tensor({256}, nb::DType::float32, rng)}};
  const Named b = {{"w", random_tensor({256, 300}, nb::DType::float32, rng)},
                   {"step", random_tensor({}, nb::DType::int64, rng)}};
  nb::save_safetensors(path("a.ref"), a, {{"which", "A"}});
  nb::save_safetensors(path("b.ref"), b, {{"which", "B"}});
  const Bytes bytes_a = read_bytes(path("a.ref")), bytes_b = read_bytes(path("b.ref"));
  ASSERT_NE(bytes_a, bytes_b);

  const auto p = path("ckpt.safetensors");
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  for (int i = 0; i < 3; ++i) nb::save_safetensors(p, b, {{"which", "B"}});
  const auto save_us = std::max<int64_t>(
      100, std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - t0).count() / 3);

  const auto start = clock::now();
  int seen_a = 0, seen_b = 0, stale_tmp = 0;
  constexpr int kKills = 50;
  for (int round = 0; round < kKills; ++round) {
    nb::save_safetensors(p, a, {{"which", "A"}});
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      try {
        for (uint64_t k = 0;; ++k) {
          const bool is_b = k % 2 == 0;
          nb::save_safetensors(p, is_b ? b : a, {{"which", is_b ? "B" : "A"}});
          if (::write(fds[1], "s", 1) != 1) ::_exit(4);
        }
      } catch (...) {
        ::_exit(3);
      }
    }
    ::close(fds[1]);
    // No ASSERT before the kill: a failure must not leave the child running.
    const int wait_saves = static_cast<int>(rng() % 3);
    char c;
    bool reported = true;
    for (int k = 0; k < wait_saves && reported; ++k) reported = ::read(fds[0], &c, 1) == 1;
    std::this_thread::sleep_for(
        std::chrono::microseconds(rng() % static_cast<uint64_t>(2 * save_us)));
    const int killed = ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ::close(fds[0]);
    ASSERT_EQ(killed, 0);
    ASSERT_TRUE(reported) << "round " << round << ": the child stopped reporting saves";
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "round " << round << ": the child ended by itself, status " << status;

    const Bytes now = read_bytes(p);
    const bool is_a = now == bytes_a, is_b = now == bytes_b;
    EXPECT_TRUE(is_a || is_b) << "round " << round << ": the file is neither A nor B ("
                              << now.size() << " bytes)";
    seen_a += is_a;
    seen_b += is_b;
    nb::SafetensorsFile f;
    ASSERT_NO_THROW(f = nb::load_safetensors(p)) << "round " << round;
    EXPECT_TRUE(SameTensors(f.tensors, is_a ? a : b)) << "round " << round;
    EXPECT_EQ(f.metadata.at("which"), is_a ? "A" : "B");
    // A killed save leaves its own temporary file, never a damaged checkpoint.
    for (const std::string& t : temp_files()) {
      stale_tmp += t.rfind(p + ".tmp." + std::to_string(pid) + ".", 0) == 0;
      fs::remove(t);
    }
  }
  const double seconds = std::chrono::duration<double>(clock::now() - start).count();
  std::printf(
      "%d kills in %.2f s (one save: %lld us): A %d times, B %d times, %d stale temp files\n",
      kKills, seconds, static_cast<long long>(save_us), seen_a, seen_b, stale_tmp);
  EXPECT_EQ(seen_a + seen_b, kKills);
  // Both outcomes occur: the kills land before and after renames, not only in one place.
  EXPECT_GT(seen_a, 0);
  EXPECT_GT(seen_b, 0);
}

// ---- hostile files ------------------------------------------------------------------------------

struct BadFile {
  std::string name;
  Bytes bytes;
  std::vector<std::string> words;  // fragments the message must contain ("a|b": either)
  bool header_ok = false;          // read_safetensors_header accepts it (the data is what is bad)
};

std::vector<BadFile> bad_files() {
  const Bytes d8 = iota_bytes(8);
  const std::string ok_a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  auto one = [](const std::string& entry) { return "{" + entry + "}"; };
  const Bytes d16 = iota_bytes(16);
  const std::string crc_meta = R"("__metadata__":{"nabla.crc32c":")";
  return {
      {"empty", {}, {"file too short: 0 bytes"}},
      {"seven_bytes", {8, 0, 0, 0, 0, 0, 0}, {"file too short: 7 bytes"}},
      {"header_length_past_end",
       with_length(1000, Bytes(100, ' ')),
       {"header length 1000 (bytes 0-7) runs past the end of the file", "108 bytes"}},
      {"header_length_over_cap",
       with_length(uint64_t{1} << 62, Bytes(64, ' ')),
       {"header length 4611686018427387904", "over the limit of 100000000"}},
      {"header_length_zero", with_length(0, d8), {"empty header"}},
      {"header_not_object",
       st_file("[1, 2]", {}),
       {"does not start with '{'", "file byte 8", "0x5b"}},
      {"header_leading_space", st_file(" {}", {}), {"does not start with '{'", "0x20"}},
      {"header_not_json",
       st_file(R"({"a": {"dtype": )", d8, false),
       {"header is not valid JSON", "header byte", "file byte"}},
      {"header_bad_utf8", st_file("{\"a\xff\":{}}", {}), {"not valid JSON", "UTF-8"}},
      {"header_nul_padding",
       st_file(one(ok_a) + std::string(3, '\0'), d8),
       {"not valid JSON: NUL byte at header byte 54 (file byte 62)"}},
      {"header_nul_in_string",
       st_file(R"({"a":{"dtype":"F32)" + std::string(1, '\0') +
                   R"(","shape":[2],"data_offsets":[0,8]}})",
               d8),
       {"NUL byte at header byte 18 (file byte 26)"}},
      {"header_trailing_garbage", st_file(one(ok_a) + " x", d8, false), {"not valid JSON"}},
      {"entry_not_object",
       st_file(R"({"a":5})", {}),
       {"tensor 'a'", "expected an object", "got a number"}},
      {"missing_dtype",
       st_file(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "missing 'dtype'"}},
      {"missing_shape",
       st_file(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "missing 'shape'"}},
      {"missing_offsets",
       st_file(R"({"a":{"dtype":"F32","shape":[2]}})", d8),
       {"tensor 'a'", "missing 'data_offsets'"}},
      {"unknown_field",
       st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"strides":[1]}})", d8),
       {"tensor 'a'", "unknown field 'strides'"}},
      {"duplicate_tensor",
       st_file("{" + ok_a + "," + ok_a + "}", d16),
       {"duplicate tensor name 'a'"}},
      {"duplicate_field",
       st_file(R"({"a":{"dtype":"F32","dtype":"F64","shape":[2],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "field 'dtype' appears twice"}},
      {"duplicate_metadata",
       st_file(R"({"__metadata__":{},"__metadata__":{}})", {}),
       {"'__metadata__' appears twice"}},
      {"duplicate_metadata_key",
       st_file(R"({"__metadata__":{"k":"1","k":"2"}})", {}),
       {"__metadata__ key 'k' appears twice"}},
      {"empty_name",
       st_file(R"({"":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", d8),
       {"empty tensor name"}},
      {"dtype_not_string",
       st_file(R"({"a":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "'dtype' must be a string, got a number"}},
      {"unknown_dtype",
       st_file(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "unknown dtype 'F33'"}},
      {"unsupported_bf16",
       st_file(R"({"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "unsupported dtype 'BF16'", "F32, F64, I32 and I64"}},
      {"unsupported_bool",
       st_file(R"({"a":{"dtype":"BOOL","shape":[8],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "unsupported dtype 'BOOL'"}},
      {"shape_not_array",
       st_file(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "'shape' must be an array"}},
      {"shape_negative",
       st_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "shape entry 0 is negative (-2)"}},
      {"shape_fraction",
       st_file(R"({"a":{"dtype":"F32","shape":[2,1.5],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "shape entry 1 must be an integer", "1.5"}},
      {"shape_string",
       st_file(R"({"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "shape entry 0 must be a non-negative integer, got a string"}},
      {"shape_nested",
       st_file(R"({"a":{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "shape entry 0", "got an array"}},
      {"shape_dim_over_int64",
       st_file(R"({"a":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "shape entry 0 is 9223372036854775808, more than 2^63-1"}},
      {"shape_dim_over_uint64",
       st_file(R"({"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "shape entry 0 must be an integer in [0, 2^63)"}},
      {"shape_rank_65",
       st_file(R"({"a":{"dtype":"F32","shape":[)" +
                   [] {
                     std::string s = "2";
                     for (int i = 0; i < 64; ++i) s += ",1";
                     return s;
                   }() +
                   R"(],"data_offsets":[0,8]}})",
               d8),
       {"tensor 'a'", "more than 64 entries"}},
      {"numel_overflow",
       st_file(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "too large", "overflows 64 bits"}},
      {"bytes_overflow",
       st_file(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "overflows 64 bits"}},
      {"offsets_one_entry",
       st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8]}})", d8),
       {"tensor 'a'", "'data_offsets' must be [begin, end], got 1 entries"}},
      {"offsets_three_entries",
       st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", d8),
       {"tensor 'a'", "more than 2 entries"}},
      {"offsets_negative",
       st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", d8),
       {"tensor 'a'", "data_offsets entry 0 is negative"}},
      {"offsets_not_array",
       st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":"0-8"}})", d8),
       {"tensor 'a'", "'data_offsets' must be an array"}},
      {"offsets_reversed",
       st_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", d8),
       {"tensor 'a'", "data_offsets [8, 0]: begin is after end"}},
      {"size_mismatch",
       st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}})", iota_bytes(12)),
       {"tensor 'a'", "data_offsets [0, 12] hold 12 bytes, shape [2] of F32 needs 8"}},
      {"past_the_end",
       st_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d8),
       {"tensor 'a'", "run past the end of the data section (8 bytes"}},
      {"overlap",
       st_file(
           R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
           iota_bytes(12)),
       {"tensor 'b'", "overlap those of tensor 'a' [0, 8]"}},
      {"empty_inside_other",
       st_file(
           R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
           R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
           d8),
       {"tensor 'e'", "overlap"}},
      {"gap",
       st_file(
           R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
           R"("b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})",
           d16),
       {"gap in the data section: bytes [8, 12)", "tensor 'b'"}},
      {"gap_at_start",
       st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8),
       {"gap in the data section: bytes [0, 4)"}},
      {"trailing_data",
       st_file(one(ok_a), d16),
       {"the data section has 16 bytes but the tensors end at byte 8"}},
      {"metadata_not_object",
       st_file(R"({"__metadata__":["a"]})", {}),
       {"__metadata__ must be an object of strings, got an array"}},
      {"metadata_value_number",
       st_file(R"({"__metadata__":{"epoch":3}})", {}),
       {"__metadata__ 'epoch': value must be a string, got a number"}},
      {"metadata_value_null",
       st_file(R"({"__metadata__":{"k":null}})", {}),
       {"__metadata__ 'k'", "got null"}},
      {"crc_malformed",
       st_file("{" + crc_meta + "12345g78\"}," + ok_a + "}", d8),
       {"'nabla.crc32c' must be 8 hex digits, got '12345g78'"}},
      {"crc_mismatch",
       st_file("{" + crc_meta + "00000000\"}," + ok_a + "}", d8),
       {"checksum mismatch: file says 00000000, data gives " + crc_hex(d8)},
       true},
      {"terabyte_declared",
       st_file(
           R"({"huge":{"dtype":"F32","shape":[262144,1048576],"data_offsets":[0,1099511627776]}})",
           iota_bytes(900)),
       {"tensor 'huge'", "data_offsets [0, 1099511627776] run past the end"}},
  };
}

TEST_F(Safetensors, CraftedBadFilesAreClearErrors) {
  const std::vector<BadFile> cases = bad_files();
  EXPECT_GE(cases.size(), 25u);
  for (const BadFile& c : cases) {
    SCOPED_TRACE(c.name);
    const auto p = write(c.name + ".safetensors", c.bytes);
    std::vector<std::string> words = c.words;
    words.insert(words.begin(), "safetensors " + p + ":");
    EXPECT_TRUE(ThrowsWith([&] { nb::load_safetensors(p); }, words));
    if (c.header_ok)
      EXPECT_NO_THROW(nb::read_safetensors_header(p));
    else
      EXPECT_TRUE(ThrowsWith([&] { nb::read_safetensors_header(p); }, words));
  }
  std::printf("%zu crafted bad files\n", cases.size());
}

TEST_F(Safetensors, CraftedBaseFileIsGood) {
  // The cases above differ from this file in one thing each; it loads.
  const auto p =
      write("good.safetensors",
            st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", iota_bytes(8)));
  nb::SafetensorsFile f = nb::load_safetensors(p);
  ASSERT_EQ(f.tensors.size(), 1u);
  EXPECT_EQ(tensor_bytes(f.tensors[0].second), iota_bytes(8));
  EXPECT_TRUE(f.metadata.empty());
}

TEST_F(Safetensors, NotAFile) {
  EXPECT_TRUE(ThrowsWith([&] { nb::load_safetensors(path("absent")); },
                         {path("absent"), "cannot open", "No such file or directory"}));
  EXPECT_TRUE(ThrowsWith([&] { nb::read_safetensors_header(dir_.string()); },
                         {dir_.string(), "not a regular file|Is a directory"}));
}

TEST_F(Safetensors, FlippedDataIsAChecksumMismatch) {
  const auto p = path("flip.safetensors");
  nb::save_safetensors(p, {{"w", nb::ones({64})}});
  Bytes b = read_bytes(p);
  const size_t data_start = b.size() - 256;
  for (size_t at : {data_start, data_start + 100, b.size() - 1}) {
    Bytes m = b;
    m[at] ^= 0x10;
    const auto q = write("flip_" + std::to_string(at), m);
    EXPECT_TRUE(ThrowsWith([&] { nb::load_safetensors(q); }, {q, "checksum mismatch"}));
  }
}

TEST_F(Safetensors, EditedHeaderIsAHeaderChecksumMismatch) {
  // One edited byte in the header, the JSON still valid and the length the same: the data CRC
  // cannot see it (the data did not change), the header CRC does.
  const auto p = path("edit.safetensors");
  nb::save_safetensors(p, {{"w", nb::ones({4})}, {"b", nb::zeros({2})}},
                       {{"epoch", "12"}, {"lr", "0.001"}, {"rng", R"({"seed":5,"offset":8})"}});
  const Bytes good = read_bytes(p);
  ASSERT_NO_THROW(nb::load_safetensors(p));
  const std::string text(good.begin(), good.end());
  const std::vector<std::pair<std::string, std::string>> edits = {
      {R"("epoch":"12")", R"("epoch":"19")"},
      {R"("lr":"0.001")", R"("lr":"0.101")"},
      {R"(\"seed\":5)", R"(\"seed\":6)"},
      {R"("w":{"dtype":"F32")", R"("w":{"dtype":"I32")"},  // same byte size: the data CRC holds
      {R"("w":{)", R"("v":{)"},                             // a tensor renamed
      {R"("nabla.crc32c":")", R"("nabla.crc32C":")"},       // the data CRC's key
  };
  for (const auto& [from, to] : edits) {
    const size_t at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    std::string edited = text;
    edited.replace(at, from.size(), to);
    const auto q = write("edited", Bytes(edited.begin(), edited.end()));
    EXPECT_TRUE(ThrowsWith([&] { nb::load_safetensors(q); }, {q, "header checksum mismatch"}))
        << from << " -> " << to;
    EXPECT_TRUE(ThrowsWith([&] { nb::read_safetensors_header(q); }, {q, "checksum"}));
  }
  // The data CRC's value edited: also a change of the header.
  const size_t crc_at = text.find(R"("nabla.crc32c":")") + 16;
  std::string edited = text;
  edited[crc_at] = edited[crc_at] == '0' ? '1' : '0';
  const auto q = write("edited_crc", Bytes(edited.begin(), edited.end()));
  EXPECT_TRUE(ThrowsWith([&] { nb::load_safetensors(q); }, {q, "checksum mismatch"}));
}

TEST_F(Safetensors, HeaderChecksumCoversTheMeaningNotTheLayout) {
  // The same header rewritten with other key order and spacing (as a JSON tool would) keeps its
  // checksum; every value still counts.
  const auto p = path("layout.safetensors");
  nb::save_safetensors(p, {{"w", nb::ones({4})}, {"b", nb::zeros({2})}}, {{"epoch", "12"}});
  const Bytes b = read_bytes(p);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{b[i]} << (8 * i);
  const auto header = nlohmann::json::parse(std::string(b.begin() + 8, b.begin() + 8 + static_cast<ptrdiff_t>(n)));
  const std::string sorted = header.dump(1);  // keys sorted: "b" before "w", newlines, indents
  ASSERT_LT(sorted.find("\"b\""), sorted.find("\"w\""));
  const auto q = write("resorted", st_file(sorted, data_section(b)));
  nb::SafetensorsFile f;
  ASSERT_NO_THROW(f = nb::load_safetensors(q));
  EXPECT_EQ(f.metadata.at("epoch"), "12");
}

TEST_F(Safetensors, FilesWithoutTheHeaderChecksumStillLoad) {
  // An older nabla file: only the data CRC, which is still checked.
  const Bytes d8 = iota_bytes(8);
  const std::string entry = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const auto old_file = write(
      "old", st_file(R"({"__metadata__":{"epoch":"3","nabla.crc32c":")" + crc_hex(d8) + R"("},)" + entry + "}", d8));
  nb::SafetensorsFile f;
  ASSERT_NO_THROW(f = nb::load_safetensors(old_file));
  EXPECT_EQ(f.metadata.at("epoch"), "3");
  Bytes flipped = d8;
  flipped[3] ^= 1;
  const auto old_flipped = write(
      "old_flipped",
      st_file(R"({"__metadata__":{"nabla.crc32c":")" + crc_hex(d8) + R"("},)" + entry + "}", flipped));
  EXPECT_TRUE(ThrowsWith([&] { nb::load_safetensors(old_flipped); }, {old_flipped, "checksum mismatch"}));
  // Another writer's file, without either key.
  const auto foreign = write("foreign", st_file(R"({"__metadata__":{"format":"pt"},)" + entry + "}", d8));
  EXPECT_NO_THROW(nb::load_safetensors(foreign));
  // A header checksum that is not 8 hex digits.
  const auto bad = write(
      "bad_hcrc", st_file(R"({"__metadata__":{"nabla.header_crc32c":"12345"},)" + entry + "}", d8));
  EXPECT_TRUE(ThrowsWith([&] { nb::read_safetensors_header(bad); },
                         {bad, "'nabla.header_crc32c' must be 8 hex digits, got '12345'"}));
}

TEST_F(Safetensors, MutatedFilesLoadOrThrowNeverCrash) {
  // 800 seeded mutations (byte flips, cuts, appended bytes, inserted bytes) of a nabla file (with
  // its CRC) and of a crafted one without: each loads or throws nabla::Error naming the file, and
  // any change to the data of the nabla file is caught by the CRC.
  std::mt19937_64 rng(99);
  Named t = {{"w", random_tensor({4, 6}, nb::DType::float32, rng)},
             {"b", random_tensor({6}, nb::DType::float64, rng)},
             {"i", random_tensor({3}, nb::DType::int32, rng)},
             {"n", random_tensor({2}, nb::DType::int64, rng)},
             {"s", random_tensor({}, nb::DType::float32, rng)}};
  const auto good = path("good.safetensors");
  nb::save_safetensors(good, t, {{"epoch", "3"}});
  const Bytes with_crc = read_bytes(good);
  const size_t data_start = with_crc.size() - data_section(with_crc).size();
  const Bytes no_crc = st_file(
      R"({"__metadata__":{"k":"v"},"x":{"dtype":"F32","shape":[8,8],"data_offsets":[0,256]},)"
      R"("y":{"dtype":"I64","shape":[4],"data_offsets":[256,288]}})",
      iota_bytes(288));
  int errors = 0, loads = 0, crc_caught = 0;
  constexpr int kMutations = 800;
  for (int round = 0; round < kMutations; ++round) {
    const bool crc_file = round % 2 == 0;
    Bytes b = crc_file ? with_crc : no_crc;
    bool data_flip = false;
    switch (rng() % 4) {
      case 0: {
        const size_t at = rng() % b.size();
        b[at] ^= static_cast<uint8_t>(1 + rng() % 255);
        data_flip = crc_file && at >= data_start;
        break;
      }
      case 1:
        b.resize(rng() % b.size());
        break;
      case 2:
        for (size_t k = 1 + rng() % 16; k > 0; --k) b.push_back(static_cast<uint8_t>(rng()));
        break;
      default:
        b.insert(b.begin() + static_cast<ptrdiff_t>(rng() % b.size()), static_cast<uint8_t>(rng()));
        break;
    }
    const std::string name = "mutant" + std::to_string(round);
    const auto p = write(name, b);
    try {
      nb::SafetensorsFile f = nb::load_safetensors(p);
      ++loads;
      EXPECT_FALSE(data_flip) << name << ": a flipped data byte passed the CRC";
    } catch (const nb::Error& e) {
      ++errors;
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p), std::string::npos) << msg;
      if (data_flip) {
        EXPECT_NE(msg.find("checksum mismatch"), std::string::npos) << msg;
        ++crc_caught;
      }
    }
    fs::remove(p);
  }
  std::printf("%d mutations: %d loaded, %d errors (%d data flips caught by the CRC)\n", kMutations,
              loads, errors, crc_caught);
  EXPECT_GT(errors, 400);
  EXPECT_GT(loads, 20);
  EXPECT_GT(crc_caught, 10);
}

TEST_F(Safetensors, SmallFileDeclaringATerabyteDoesNotAllocateIt) {
  // ~1 KB files: a 1 TiB tensor in the header, a header length of 1 TiB, and a header length
  // just under the cap.
  const Bytes huge_tensor = st_file(
      R"({"huge":{"dtype":"F32","shape":[262144,1048576],"data_offsets":[0,1099511627776]}})",
      iota_bytes(900));
  const Bytes huge_header = with_length(uint64_t{1} << 40, Bytes(1016, ' '));
  const Bytes big_header = with_length(99'999'999, Bytes(1016, ' '));
  const std::vector<std::pair<std::string, std::vector<std::string>>> files = {
      {"tensor", {"run past the end"}},
      {"header", {"over the limit"}},
      {"cap", {"runs past the end of the file"}}};
  const Bytes* bytes[] = {&huge_tensor, &huge_header, &big_header};
  for (size_t i = 0; i < files.size(); ++i) {
    const auto p = write(files[i].first, *bytes[i]);
    EXPECT_LE(fs::file_size(p), 1100u);
    AllocWatch watch;
    EXPECT_TRUE(ThrowsWith([&] { nb::load_safetensors(p); }, files[i].second));
    EXPECT_TRUE(ThrowsWith([&] { nb::read_safetensors_header(p); }, files[i].second));
    EXPECT_LT(watch.largest(), size_t{1} << 20) << files[i].first << ": allocated before checking";
  }
  // The watch sees tensor storage: loading a real 4 MiB tensor shows up.
  const auto p = path("real.safetensors");
  nb::save_safetensors(p, {{"w", nb::zeros({1 << 20})}});
  nb::test_hooks::release_cpu_block_cache();  // else the 4 MiB come from the blocks freed above
  AllocWatch watch;
  nb::load_safetensors(p);
  EXPECT_GE(watch.largest(), size_t{4} << 20);
}

// ---- interop with the reference implementation --------------------------------------------------

TEST_F(Safetensors, InteropWithPythonSafetensors) {
  // The virtual environment of scripts/test.sh in the build folder, else python3 on PATH.
  const std::string python = ::access(NABLA_TEST_VENV_PYTHON, X_OK) == 0 ? NABLA_TEST_VENV_PYTHON : "python3";
  if (std::system(fmt::format("command -v '{}' >/dev/null 2>&1", python).c_str()) != 0)
    GTEST_SKIP() << "python3 not found (scripts/test.sh installs it)";
  if (std::system(fmt::format("'{}' -c 'import numpy, safetensors.numpy' >/dev/null 2>&1", python).c_str()) != 0)
    GTEST_SKIP() << "the Python modules numpy and safetensors are missing for " << python
                 << " (scripts/test.sh makes " NABLA_TEST_VENV_PYTHON
                    ": a virtual environment with Debian's python3-numpy and safetensors from pip)";
  // The values of tests/safetensors_interop.py's expected_from_nabla().
  std::vector<float> f32(12);
  std::vector<double> f64(12);
  for (int i = 0; i < 12; ++i) {
    f32[i] = static_cast<float>((i - 5) * 0.375);
    f64[i] = i / 3.0 - 1;
  }
  std::vector<int32_t> i32(5);
  for (int i = 0; i < 5; ++i) i32[i] = (i - 2) * 123456789;
  const int64_t t12 = 1'000'000'000'000;
  const Named ours = {{"f32", nb::from_vector(f32, {3, 4})},
                      {"f64", nb::from_vector(f64, {2, 3, 2})},
                      {"i32", nb::from_vector(i32)},
                      {"i64", nb::from_vector<int64_t>({t12, -2 * t12, 3 * t12, -4 * t12}, {2, 2})},
                      {"scalar", nb::scalar(2.5, {.dtype = nb::DType::float64})},
                      {"empty", nb::Tensor::empty({0, 3})}};
  const Meta meta = {{"arch", R"({"layers": [784, 10], "name": "mlp"})"},
                     {"note", "h\u00e9llo \"quoted\"\n"}};
  const auto from_nabla = path("from_nabla.safetensors"),
             from_python = path("from_python.safetensors");
  nb::save_safetensors(from_nabla, ours, meta);

  const std::string cmd = fmt::format("'{}' '{}/safetensors_interop.py' '{}' '{}' 2>&1", python,
                                      NABLA_TESTS_DIR, from_nabla, from_python);
  std::FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr) << cmd;
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  const int status = ::pclose(pipe);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd << "\n" << out;
  std::printf("python: %s", out.c_str());

  nb::SafetensorsFile f = nb::load_safetensors(from_python);
  EXPECT_EQ(f.metadata, (Meta{{"from", "python"}, {"framework", "numpy"}}));
  auto get = [&](const std::string& name) {
    for (auto& [n, t] : f.tensors)
      if (n == name) return t;
    ADD_FAILURE() << "no tensor " << name;
    return nb::Tensor();
  };
  ASSERT_EQ(f.tensors.size(), 6u);
  // numpy's 0 * -0.5 is -0.0: the bytes are compared, so the sign of zero counts.
  EXPECT_TRUE(SameTensor(get("py.f32"),
                         nb::from_vector<float>({-0.0f, -0.5f, -1, -1.5f, -2, -2.5f}, {2, 3})));
  EXPECT_TRUE(SameTensor(get("py.f64"), nb::from_vector<double>({M_PI, M_E, -0.0, 1e300})));
  EXPECT_TRUE(SameTensor(get("py.i32"), nb::from_vector<int32_t>({INT32_MIN, INT32_MAX, 0})));
  EXPECT_TRUE(SameTensor(get("py.i64"), nb::from_vector<int64_t>({INT64_MIN, INT64_MAX}, {1, 2})));
  EXPECT_TRUE(SameTensor(get("py.scalar"), nb::scalar(7, {.dtype = nb::DType::int64})));
  EXPECT_TRUE(
      SameTensor(get("py.empty"), nb::Tensor::empty({2, 0}, {.dtype = nb::DType::float64})));
}

}  // namespace
