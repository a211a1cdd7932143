// Tests of core/data: the IDX reader against crafted good and hostile files, the MNIST-style
// dataset loaders (with the real Fashion-MNIST when installed), Dataset and DataLoader.
#include <nabla/core/data.h>
#include <nabla/core/error.h>
#include <nabla/core/tensor.h>

#include <gtest/gtest.h>

#include "hostile_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <new>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace nd = nabla::data;
using Bytes = std::vector<uint8_t>;

// ---- file builders -------------------------------------------------------------------------------

void put_be32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}
void put_le32(Bytes& b, uint32_t v) {
  for (int s = 0; s < 32; s += 8) b.push_back(static_cast<uint8_t>(v >> s));
}

Bytes idx_header(uint8_t type, const std::vector<uint32_t>& dims) {
  Bytes b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) put_be32(b, d);
  return b;
}

Bytes idx_file(uint8_t type, const std::vector<uint32_t>& dims, const Bytes& payload) {
  Bytes b = idx_header(type, dims);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

Bytes iota_bytes(size_t n, uint8_t start = 0) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(start + i * 7);
  return b;
}

uint32_t crc32(const Bytes& data) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t byte : data) c = table[(c ^ byte) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

// A valid single-member gzip file of `data`, written with stored (uncompressed) deflate blocks.
// The test binary does not link zlib itself (it is a private dependency of libnabla), so it
// writes the format by hand; the reader inflates it through zlib like any other gzip file.
// `isize` forges the trailer's size field; `crc` forges its checksum.
Bytes gzip_stored(const Bytes& data, std::optional<uint32_t> isize = {},
                  std::optional<uint32_t> crc = {}) {
  Bytes g = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
  size_t pos = 0;
  do {
    size_t len = std::min<size_t>(65535, data.size() - pos);
    bool final = pos + len == data.size();
    g.push_back(final ? 1 : 0);  // BFINAL, BTYPE = 00 (stored), padding to the byte
    g.push_back(static_cast<uint8_t>(len));
    g.push_back(static_cast<uint8_t>(len >> 8));
    g.push_back(static_cast<uint8_t>(~len));
    g.push_back(static_cast<uint8_t>(~len >> 8));
    g.insert(g.end(), data.begin() + static_cast<ptrdiff_t>(pos),
             data.begin() + static_cast<ptrdiff_t>(pos + len));
    pos += len;
  } while (pos < data.size());
  put_le32(g, crc.value_or(crc32(data)));
  put_le32(g, isize.value_or(static_cast<uint32_t>(data.size())));
  return g;
}

// A fresh temporary folder per test, removed afterwards.
class DataFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           (std::string("nabla_data_test_") + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string write(const std::string& name, const Bytes& b) {
    std::string path = (dir_ / name).string();
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    EXPECT_TRUE(f.good()) << path;
    return path;
  }
  fs::path dir_;
};

// ---- hostile IDX files -----------------------------------------------------------------------------

TEST_F(DataFiles, IdxEmptyFile) {
  auto p = write("empty-idx3-ubyte", {});
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); }, {"empty-idx3-ubyte", "empty file"}));
}

TEST_F(DataFiles, IdxTruncatedMagic) {
  auto p = write("short-magic", {0, 0, 8});
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); }, {"short-magic", "truncated header", "byte 3"}));
}

TEST_F(DataFiles, IdxTruncatedDims) {
  Bytes b = idx_header(0x08, {10, 28, 28});
  b.resize(10);  // 4 magic bytes + 1.5 dimensions
  auto p = write("short-dims", b);
  EXPECT_TRUE(
      ThrowsWith([&] { nd::read_idx(p); }, {"short-dims", "truncated header", "byte 10 of 16"}));
}

TEST_F(DataFiles, IdxWrongMagic) {
  Bytes b = idx_file(0x08, {4}, iota_bytes(4));
  b[0] = 'P';
  b[1] = 'K';
  auto p = write("zip-not-idx", b);
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); }, {"zip-not-idx", "bad magic", "50 4b"}));
}

TEST_F(DataFiles, IdxWrongTypeCode) {
  auto p = write("type07", idx_file(0x07, {4}, iota_bytes(4)));
  EXPECT_TRUE(
      ThrowsWith([&] { nd::read_idx(p); }, {"type07", "unsupported type code 0x07", "byte 2"}));
}

TEST_F(DataFiles, IdxRankZeroAndTooLarge) {
  auto p0 = write("rank0", {0, 0, 8, 0, 1, 2, 3});
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p0); }, {"rank0", "bad rank 0"}));
  auto p5 = write("rank5", idx_file(0x08, {1, 1, 1, 1, 1}, {7}));
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p5); }, {"rank5", "bad rank 5", "1..4"}));
}

TEST_F(DataFiles, IdxZeroDimension) {
  auto p = write("zerodim", idx_header(0x08, {3, 0, 2}));
  EXPECT_TRUE(
      ThrowsWith([&] { nd::read_idx(p); }, {"zerodim", "bad dimension 1 at byte 8", "[3, 0, 2]"}));
}

TEST_F(DataFiles, IdxTruncatedData) {
  Bytes b = idx_file(0x08, {10, 28, 28}, iota_bytes(10 * 28 * 28));
  b.resize(7850);
  auto p = write("t10k-images-idx3-ubyte", b);
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); },
                         {"IDX ", "t10k-images-idx3-ubyte", "data truncated at byte 7850 of 7856",
                          "[10, 28, 28]"}));
}

TEST_F(DataFiles, IdxTrailingGarbage) {
  Bytes b = idx_file(0x08, {2, 3}, iota_bytes(6));
  b.push_back(0xAA);
  b.push_back(0xBB);
  auto p = write("trailing", b);
  EXPECT_TRUE(
      ThrowsWith([&] { nd::read_idx(p); }, {"trailing", "trailing garbage", "2 bytes", "byte 18"}));
}

TEST_F(DataFiles, IdxDeclaredSizeLargerThanFileDoesNotAllocate) {
  // 60000 x 28 x 28 x 4 = 188 MB declared (under the size cap) in a 1 KB file.
  auto p = write("liar", idx_file(0x08, {60000, 28, 28, 4}, iota_bytes(1000)));
  AllocWatch watch;
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); }, {"liar", "truncated", "188160020"}));
  EXPECT_LT(watch.largest(), size_t{1} << 20) << "read_idx allocated before checking the size";
}

TEST_F(DataFiles, IdxHugeDimsAreTooLarge) {
  // 47 GB declared: over the default cap.
  auto p = write("huge", idx_file(0x08, {60000, 28, 28, 1000}, iota_bytes(100)));
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); }, {"huge", "too large", "47040000000"}));
  // Every dimension 2^32-1: the element count overflows 64 bits.
  auto q = write("overflow", idx_file(0x0E, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, {}));
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(q); }, {"overflow", "too large", "2^64"}));
  // A caller's own cap.
  auto r = write("capped", idx_file(0x08, {100}, iota_bytes(100)));
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(r, {.max_bytes = 99}); }, {"capped", "too large"}));
  EXPECT_NO_THROW(nd::read_idx(r, {.max_bytes = 100}));
}

TEST_F(DataFiles, IdxNotAFile) {
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx((dir_ / "absent.gz").string()); },
                         {"absent.gz", "no such file"}));
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(dir_.string()); }, {"not a regular file"}));
}

TEST_F(DataFiles, IdxFifoIsRefusedWithoutWaitingAndErrorsNameTheFile) {
  // Opening a FIFO for reading waits for a writer: the reader must refuse it instead.
  const std::string fifo = (dir_ / "labels.fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(fifo); }, {fifo, "not a regular file"}));
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(dir_.string()); }, {dir_.string(), "not a regular file"}));
  auto p = write("short", Bytes{0, 0, 8});
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); }, {p, "truncated header"}));
}

TEST_F(DataFiles, GzipGarbage) {
  Bytes b = {0x1f, 0x8b};
  for (int i = 0; i < 200; ++i) b.push_back(static_cast<uint8_t>(i * 37 + 11));
  auto p = write("garbage.gz", b);
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); }, {"garbage.gz", "corrupt", "compressed byte"}));
}

TEST_F(DataFiles, GzipTooShort) {
  auto p = write("tiny.gz", {0x1f, 0x8b, 8, 0});
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); }, {"tiny.gz", "truncated"}));
}

TEST_F(DataFiles, GzipTruncated) {
  Bytes g = gzip_stored(idx_file(0x08, {50, 20}, iota_bytes(1000)));
  g.resize(g.size() / 2);
  auto p = write("cut.gz", g);
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); }, {"cut.gz", "truncated"}));
}

TEST_F(DataFiles, GzipTruncatedStreamWithForgedTrailer) {
  // Cut in the middle of the deflate data, then 8 bytes whose last 4 match the declared size, so
  // the trailer check passes and the inflater itself must notice the stream ends too early.
  Bytes idx = idx_file(0x08, {50, 20}, iota_bytes(1000));
  Bytes g = gzip_stored(idx);
  g.resize(g.size() / 2);
  put_le32(g, 0);
  put_le32(g, static_cast<uint32_t>(idx.size()));
  auto p = write("cut-forged.gz", g);
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); }, {"cut-forged.gz", "truncated|corrupt"}));
}

TEST_F(DataFiles, GzipDeclaredSizeLargerThanStream) {
  // The trailer honestly records 1016 bytes; the header declares 1,000,000,016.
  Bytes idx = idx_file(0x08, {1000, 1000, 1000}, iota_bytes(1000));
  auto p = write("liar.gz", gzip_stored(idx));
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); },
                         {"liar.gz", "size mismatch", "1016", "1000000016", "truncated"}));
}

TEST_F(DataFiles, GzipHugeDimsInTinyFileDoNotAllocate) {
  // A 1 KB .gz whose header declares 1 GB and whose trailer is forged to agree: only inflating
  // can tell, and memory must follow what the stream yields, not the header.
  Bytes idx = idx_file(0x08, {1000, 1000, 1000}, iota_bytes(1000));
  uint32_t forged = 16 + 1000u * 1000u * 1000u;
  auto p = write("bomb.gz", gzip_stored(idx, forged));
  AllocWatch watch;
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); }, {"bomb.gz", "truncated|corrupt"}));
  EXPECT_LE(watch.largest(), size_t{1} << 20) << "allocated by the declared size";
}

TEST_F(DataFiles, GzipTrailingGarbageInData) {
  Bytes idx = idx_file(0x08, {4}, iota_bytes(4));
  idx.push_back(1);
  idx.push_back(2);
  idx.push_back(3);
  auto p = write("trail.gz", gzip_stored(idx));
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); }, {"trail.gz", "trailing garbage", "15", "12"}));
}

TEST_F(DataFiles, GzipTrailingBytesAfterStream) {
  Bytes g = gzip_stored(idx_file(0x08, {4}, iota_bytes(4)));
  const size_t end = g.size();
  g.push_back(0);
  g.push_back(0);
  g.push_back(0);
  auto p = write("padded.gz", g);
  // The last 4 bytes are no longer the trailer, so the size check may fire first.
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); }, {"padded.gz", "trailing garbage|size mismatch"}));
  // With the padding shaped like a trailer, only the end-of-stream check can catch it.
  Bytes h(g.begin(), g.begin() + static_cast<ptrdiff_t>(end));
  Bytes tail(h.end() - 4, h.end());
  h.insert(h.end(), tail.begin(), tail.end());
  auto q = write("padded2.gz", h);
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(q); },
                         {"padded2.gz", "trailing garbage after the gzip stream", "4 bytes"}));
}

TEST_F(DataFiles, GzipBadChecksum) {
  Bytes idx = idx_file(0x08, {4}, iota_bytes(4));
  auto p = write("crc.gz", gzip_stored(idx, std::nullopt, crc32(idx) ^ 1));
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); }, {"crc.gz", "corrupt"}));
}

TEST_F(DataFiles, GzipBadHeaderInsideLooksValid) {
  // A valid gzip stream whose content is not IDX.
  Bytes text = {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'};
  auto p = write("text.gz", gzip_stored(text));
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx(p); }, {"text.gz", "bad magic", "68 65 6c 6c"}));
}

TEST_F(DataFiles, LabelsOutOfRange) {
  auto p = write("labels-idx1-ubyte", idx_file(0x08, {6}, {0, 9, 3, 10, 12, 1}));
  nd::IdxArray a = nd::read_idx(p);
  EXPECT_TRUE(ThrowsWith([&] { nd::idx_labels(a, 10); },
                         {"labels-idx1-ubyte", "label out of range at index 3", "byte 11", ": 10",
                          "0..9"}));
  EXPECT_EQ(nd::idx_labels(a, 13), (std::vector<int64_t>{0, 9, 3, 10, 12, 1}));
  // Negative int32 labels.
  Bytes neg;
  put_be32(neg, 2);
  put_be32(neg, static_cast<uint32_t>(-5));
  auto q = write("neg-labels", idx_file(0x0C, {2}, neg));
  EXPECT_TRUE(ThrowsWith([&] { nd::idx_labels(nd::read_idx(q), 10); },
                         {"neg-labels", "index 1", "-5"}));
  // Float and multi-dimensional "labels".
  auto r = write("float-labels", idx_file(0x0D, {1}, {0, 0, 0, 0}));
  EXPECT_TRUE(ThrowsWith([&] { nd::idx_labels(nd::read_idx(r), 10); },
                         {"float-labels", "expected labels", "float32"}));
  auto s = write("matrix-labels", idx_file(0x08, {2, 2}, {0, 1, 0, 1}));
  EXPECT_TRUE(ThrowsWith([&] { nd::idx_labels(nd::read_idx(s), 10); },
                         {"matrix-labels", "expected labels", "[2, 2]"}));
}

TEST_F(DataFiles, MutatedFilesThrowOrReadNeverCrash) {
  // 600 seeded mutations (byte flips, cuts, insertions) of a small raw and gzip file: each must
  // read (a flip in the pixel data is still a valid file) or throw nabla::Error naming the file.
  Bytes raw = idx_file(0x08, {3, 4, 5}, iota_bytes(60));
  Bytes gz = gzip_stored(raw);
  uint64_t state = 12345;
  auto next = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<size_t>(state >> 33);
  };
  int errors = 0, reads = 0;
  for (int round = 0; round < 600; ++round) {
    Bytes b = round % 2 ? gz : raw;
    switch (next() % 3) {
      case 0: b[next() % b.size()] ^= static_cast<uint8_t>(1 + next() % 255); break;
      case 1: b.resize(next() % b.size()); break;
      default: b.insert(b.begin() + static_cast<ptrdiff_t>(next() % b.size()), static_cast<uint8_t>(next())); break;
    }
    auto p = write("mutant" + std::to_string(round), b);
    try {
      nd::read_idx(p, {.max_bytes = 1 << 20});
      ++reads;
    } catch (const nabla::Error& e) {
      ++errors;
      EXPECT_NE(std::string(e.what()).find("mutant" + std::to_string(round)), std::string::npos)
          << e.what();
    }
  }
  EXPECT_GT(errors, 300);
  EXPECT_GT(reads, 10);
}

// ---- good IDX files ------------------------------------------------------------------------------

TEST_F(DataFiles, ReadsRawAndGzipExactly) {
  Bytes payload = iota_bytes(3 * 2 * 4, 5);
  Bytes file = idx_file(0x08, {3, 2, 4}, payload);
  for (const auto& [name, bytes] :
       {std::pair{std::string("good-idx3-ubyte"), file},
        std::pair{std::string("good-idx3-ubyte.gz"), gzip_stored(file)},
        // gzip is detected by its magic, not by the name
        std::pair{std::string("gzip-without-suffix"), gzip_stored(file)}}) {
    nd::IdxArray a = nd::read_idx(write(name, bytes));
    EXPECT_EQ(a.type, nd::IdxType::uint8) << name;
    EXPECT_EQ(a.dims, (nabla::Shape{3, 2, 4})) << name;
    EXPECT_EQ(a.numel(), 24) << name;
    EXPECT_EQ(a.bytes, payload) << name;
  }
}

TEST_F(DataFiles, ReadsGzipLargerThanOneChunkAndBlock) {
  // 3 MiB + 5 bytes: several 1 MiB inflate chunks and many 64 KiB stored blocks.
  const uint32_t rows = 3 * 1024 + 5, cols = 1024;
  Bytes payload(size_t{rows} * cols);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>((i * 131) >> 3);
  auto p = write("big.gz", gzip_stored(idx_file(0x08, {rows, cols}, payload)));
  AllocWatch watch;
  nd::IdxArray a = nd::read_idx(p);
  // Also proves that the allocation watch sees the library's allocations.
  EXPECT_GE(watch.largest(), payload.size());
  EXPECT_EQ(a.dims, (nabla::Shape{rows, cols}));
  EXPECT_TRUE(a.bytes == payload);
}

TEST_F(DataFiles, ReadsMultiByteTypesBigEndian) {
  Bytes i16 = {0x01, 0x02, 0xFF, 0xFE};  // 258, -2
  nd::IdxArray a = nd::read_idx(write("i16", idx_file(0x0B, {2}, i16)));
  ASSERT_EQ(a.bytes.size(), 4u);
  int16_t v16[2];
  std::memcpy(v16, a.bytes.data(), 4);
  EXPECT_EQ(v16[0], 258);
  EXPECT_EQ(v16[1], -2);

  Bytes i32;
  put_be32(i32, 0x01020304);
  put_be32(i32, static_cast<uint32_t>(-7));
  nd::IdxArray b = nd::read_idx(write("i32.gz", gzip_stored(idx_file(0x0C, {1, 2}, i32))));
  int32_t v32[2];
  std::memcpy(v32, b.bytes.data(), 8);
  EXPECT_EQ(v32[0], 0x01020304);
  EXPECT_EQ(v32[1], -7);
  EXPECT_EQ(b.type, nd::IdxType::int32);

  Bytes f32;
  put_be32(f32, 0x3FC00000);  // 1.5f
  nd::IdxArray c = nd::read_idx(write("f32", idx_file(0x0D, {1}, f32)));
  float vf;
  std::memcpy(&vf, c.bytes.data(), 4);
  EXPECT_EQ(vf, 1.5f);

  Bytes f64;
  put_be32(f64, 0xC0090000);  // -3.125
  put_be32(f64, 0);
  nd::IdxArray d = nd::read_idx(write("f64", idx_file(0x0E, {1}, f64)));
  double vd;
  std::memcpy(&vd, d.bytes.data(), 8);
  EXPECT_EQ(vd, -3.125);

  nd::IdxArray e = nd::read_idx(write("i8", idx_file(0x09, {2}, {0x80, 0x7F})));
  EXPECT_EQ(static_cast<int8_t>(e.bytes[0]), -128);
  EXPECT_TRUE(ThrowsWith([&] { nd::idx_labels(e, 200); }, {"i8", "index 0", "-128"}));
}

// ---- images, labels and datasets (need Tensor) ---------------------------------------------------

namespace more {

using nabla::DType;
using nabla::Tensor;

// x float32 [n, 3] with x[i] = {10 i, 10 i + 1, 10 i + 2}; y int64 [n] with y[i] = i.
nd::Dataset counting_dataset(int64_t n) {
  Tensor x = Tensor::empty({n, 3}, {.dtype = DType::float32});
  Tensor y = Tensor::empty({n}, {.dtype = DType::int64});
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < 3; ++k) x.data<float>()[i * 3 + k] = static_cast<float>(10 * i + k);
    y.data<int64_t>()[i] = i;
  }
  return nd::Dataset{x, y};
}

std::vector<int64_t> labels_of(const Tensor& y) {
  const int64_t* p = y.data<int64_t>();
  return std::vector<int64_t>(p, p + y.numel());
}

}  // namespace more

TEST_F(DataFiles, ReadIdxImagesScalesTo01) {
  Bytes px = {0, 1, 127, 128, 254, 255};
  for (const auto& [name, bytes] : {std::pair{std::string("img-idx3-ubyte"), idx_file(0x08, {1, 2, 3}, px)},
                                    std::pair{std::string("img-idx3-ubyte.gz"),
                                              gzip_stored(idx_file(0x08, {1, 2, 3}, px))}}) {
    nabla::Tensor x = nd::read_idx_images(write(name, bytes));
    EXPECT_EQ(x.shape(), (nabla::Shape{1, 1, 2, 3})) << name;
    EXPECT_EQ(x.dtype(), nabla::DType::float32) << name;
    const float* p = x.data<float>();
    for (size_t i = 0; i < px.size(); ++i) EXPECT_EQ(p[i], static_cast<float>(px[i]) / 255.0f) << name;
    EXPECT_EQ(p[0], 0.0f);
    EXPECT_EQ(p[5], 1.0f);
  }
  auto labels = write("lab-idx1-ubyte", idx_file(0x08, {3}, {0, 1, 2}));
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx_images(labels); },
                         {"lab-idx1-ubyte", "expected images", "[3]"}));
}

TEST_F(DataFiles, ReadIdxLabels) {
  auto p = write("lab-idx1-ubyte.gz", gzip_stored(idx_file(0x08, {5}, {3, 0, 9, 9, 1})));
  nabla::Tensor y = nd::read_idx_labels(p, 10);
  EXPECT_EQ(y.shape(), (nabla::Shape{5}));
  EXPECT_EQ(y.dtype(), nabla::DType::int64);
  EXPECT_EQ(more::labels_of(y), (std::vector<int64_t>{3, 0, 9, 9, 1}));
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx_labels(p, 9); },
                         {"lab-idx1-ubyte.gz", "label out of range at index 2", "9"}));
  EXPECT_TRUE(ThrowsWith([&] { nd::read_idx_labels(p, 0); }, {"num_classes"}));
}

TEST_F(DataFiles, IdxDatasetCountMismatch) {
  auto images = write("x-images-idx3-ubyte", idx_file(0x08, {3, 2, 2}, iota_bytes(12)));
  auto labels = write("x-labels-idx1-ubyte", idx_file(0x08, {4}, {0, 1, 2, 3}));
  EXPECT_TRUE(ThrowsWith([&] { nd::idx_dataset(images, labels, 10); },
                         {"x-images-idx3-ubyte", "x-labels-idx1-ubyte", "mismatch", "3 images",
                          "4 labels"}));
  auto labels3 = write("y-labels-idx1-ubyte", idx_file(0x08, {3}, {0, 1, 2}));
  nd::Dataset d = nd::idx_dataset(images, labels3, 10);
  EXPECT_EQ(d.size(), 3);
  EXPECT_EQ(d.x.shape(), (nabla::Shape{3, 1, 2, 2}));
}

class DataMnistFolder : public DataFiles {
 protected:
  void make(const std::string& sub, int n_train, int n_test, bool gz, uint32_t side = 28) {
    fs::create_directories(dir_ / sub);
    for (auto [prefix, n] : {std::pair{"train", n_train}, std::pair{"t10k", n_test}}) {
      Bytes labels(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = static_cast<uint8_t>(i % 10);
      Bytes img = idx_file(0x08, {static_cast<uint32_t>(n), side, side},
                           iota_bytes(static_cast<size_t>(n) * side * side));
      Bytes lab = idx_file(0x08, {static_cast<uint32_t>(n)}, labels);
      std::string ext = gz ? ".gz" : "";
      write(sub + "/" + prefix + "-images-idx3-ubyte" + ext, gz ? gzip_stored(img) : img);
      write(sub + "/" + prefix + "-labels-idx1-ubyte" + ext, gz ? gzip_stored(lab) : lab);
    }
  }
};

TEST_F(DataMnistFolder, LoadsFromDirGzAndRaw) {
  make("gz", 12, 5, true);
  make("raw", 7, 3, false);
  nd::Split a = nd::fashion_mnist((dir_ / "gz").string());
  EXPECT_EQ(a.train.size(), 12);
  EXPECT_EQ(a.test.size(), 5);
  EXPECT_EQ(a.train.x.shape(), (nabla::Shape{12, 1, 28, 28}));
  EXPECT_EQ(more::labels_of(a.test.y), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  nd::Split b = nd::mnist((dir_ / "raw").string());
  EXPECT_EQ(b.train.size(), 7);
  EXPECT_EQ(b.test.size(), 3);
}

TEST_F(DataMnistFolder, EnvironmentVariableChoosesFolder) {
  make("env", 4, 2, true);
  const char* old = std::getenv("NABLA_FASHION_MNIST");
  std::string saved = old ? old : "";
  ::setenv("NABLA_FASHION_MNIST", (dir_ / "env").c_str(), 1);
  nd::Split s = nd::fashion_mnist();
  if (old) ::setenv("NABLA_FASHION_MNIST", saved.c_str(), 1); else ::unsetenv("NABLA_FASHION_MNIST");
  EXPECT_EQ(s.train.size(), 4);
  EXPECT_EQ(s.test.size(), 2);
}

TEST_F(DataMnistFolder, MissingFileNamesPathsAndPackage) {
  fs::create_directories(dir_ / "nothing");
  const std::string d = (dir_ / "nothing").string();
  EXPECT_TRUE(ThrowsWith([&] { nd::fashion_mnist(d); },
                         {"fashion_mnist", d + "/train-images-idx3-ubyte.gz",
                          d + "/train-images-idx3-ubyte", "dataset-fashion-mnist",
                          "NABLA_FASHION_MNIST"}));
  EXPECT_TRUE(ThrowsWith([&] { nd::mnist(d); }, {"mnist", "NABLA_MNIST", "train-images"}));
}

TEST_F(DataMnistFolder, RejectsWrongImageSizeAndCounts) {
  make("small", 3, 2, false, 14);
  EXPECT_TRUE(ThrowsWith([&] { nd::fashion_mnist((dir_ / "small").string()); },
                         {"train-images-idx3-ubyte", "14x14", "28x28"}));
  make("mismatch", 3, 2, true);
  write("mismatch/t10k-labels-idx1-ubyte.gz", gzip_stored(idx_file(0x08, {3}, {0, 1, 2})));
  EXPECT_TRUE(ThrowsWith([&] { nd::fashion_mnist((dir_ / "mismatch").string()); },
                         {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "mismatch"}));
  make("badlabel", 3, 2, true);
  write("badlabel/train-labels-idx1-ubyte.gz", gzip_stored(idx_file(0x08, {3}, {0, 11, 2})));
  EXPECT_TRUE(ThrowsWith([&] { nd::fashion_mnist((dir_ / "badlabel").string()); },
                         {"train-labels-idx1-ubyte.gz", "index 1", "11"}));
}

// ---- the real Fashion-MNIST ------------------------------------------------------------------------

TEST(DataFashionMnist, RealDataLoads) {
  const char* env = std::getenv("NABLA_FASHION_MNIST");
  const std::string dir = env && *env ? env : "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir))
    GTEST_SKIP() << dir << " does not exist: install the Debian package dataset-fashion-mnist";
  nd::Split s = nd::fashion_mnist();
  ASSERT_EQ(s.train.x.shape(), (nabla::Shape{60000, 1, 28, 28}));
  ASSERT_EQ(s.test.x.shape(), (nabla::Shape{10000, 1, 28, 28}));
  ASSERT_EQ(s.train.y.shape(), (nabla::Shape{60000}));
  ASSERT_EQ(s.test.y.shape(), (nabla::Shape{10000}));
  for (const auto* d : {&s.train, &s.test}) {
    std::vector<int64_t> counts(10, 0);
    for (int64_t v : more::labels_of(d->y)) {
      ASSERT_TRUE(v >= 0 && v < 10) << v;
      ++counts[static_cast<size_t>(v)];
    }
    // Fashion-MNIST is balanced: 6000 (train) or 1000 (test) of every class.
    for (int c = 0; c < 10; ++c) EXPECT_EQ(counts[c], d->size() / 10) << "class " << c;
    const float* p = d->x.data<float>();
    const auto [lo, hi] = std::minmax_element(p, p + d->x.numel());
    EXPECT_EQ(*lo, 0.0f);
    EXPECT_EQ(*hi, 1.0f);
  }
  // The well-known mean pixel of the training set is 0.2860.
  double sum = 0;
  const float* p = s.train.x.data<float>();
  for (int64_t i = 0; i < s.train.x.numel(); ++i) sum += p[i];
  EXPECT_NEAR(sum / static_cast<double>(s.train.x.numel()), 0.2860, 5e-4);
  // The first training label of Fashion-MNIST is 9 (ankle boot), the first test label 9 too.
  EXPECT_EQ(more::labels_of(s.train.y)[0], 9);
  EXPECT_EQ(more::labels_of(s.test.y)[0], 9);
}

// ---- Dataset ---------------------------------------------------------------------------------------

TEST(Dataset, SubsetTakeNormalize) {
  nd::Dataset d = more::counting_dataset(10);
  EXPECT_EQ(d.size(), 10);
  nd::Dataset s = d.subset(3, 7);
  EXPECT_EQ(s.size(), 4);
  EXPECT_EQ(s.x.shape(), (nabla::Shape{4, 3}));
  EXPECT_EQ(more::labels_of(s.y), (std::vector<int64_t>{3, 4, 5, 6}));
  EXPECT_EQ(s.x.data<float>()[0], 30.0f);
  EXPECT_EQ(s.x.data<float>()[11], 62.0f);
  EXPECT_EQ(d.take(2).size(), 2);
  EXPECT_EQ(d.take(100).size(), 10);
  EXPECT_EQ(d.subset(5, 5).size(), 0);
  EXPECT_TRUE(ThrowsWith([&] { d.subset(4, 11); }, {"subset", "[4, 11)"}));
  EXPECT_TRUE(ThrowsWith([&] { d.subset(5, 4); }, {"subset"}));
  EXPECT_TRUE(ThrowsWith([&] { d.take(-1); }, {"take"}));

  nd::Dataset n = d.normalize(5.0, 2.0);
  EXPECT_EQ(n.x.data<float>()[4], (11.0f - 5.0f) / 2.0f);
  EXPECT_EQ(d.x.data<float>()[4], 11.0f) << "normalize must not modify the original";
  EXPECT_EQ(n.y.data<int64_t>()[9], 9);
  EXPECT_TRUE(ThrowsWith([&] { d.normalize(0.0, 0.0); }, {"normalize", "std"}));
  EXPECT_TRUE(ThrowsWith([&] { d.normalize(0.0, -1.0); }, {"normalize"}));

  nd::Dataset mismatch{d.x, more::counting_dataset(9).y};
  EXPECT_TRUE(ThrowsWith([&] { mismatch.size(); }, {"Dataset", "10 samples", "9"}));
  EXPECT_TRUE(ThrowsWith([&] { nd::Dataset{}.size(); }, {"undefined"}));
}

// ---- DataLoader --------------------------------------------------------------------------------------

// The labels of one epoch, batch by batch; checks that every x row belongs to its label.
std::vector<std::vector<int64_t>> run_epoch(nd::DataLoader& loader) {
  std::vector<std::vector<int64_t>> epoch;
  for (auto& batch : loader) {
    std::vector<int64_t> ys = more::labels_of(batch.y);
    EXPECT_EQ(batch.x.size(0), static_cast<int64_t>(ys.size()));
    EXPECT_EQ(batch.x.shape()[1], 3);
    const float* x = batch.x.data<float>();
    for (size_t i = 0; i < ys.size(); ++i)
      for (int k = 0; k < 3; ++k)
        EXPECT_EQ(x[i * 3 + static_cast<size_t>(k)], static_cast<float>(10 * ys[i] + k))
            << "row " << i << " of a batch holds the wrong sample";
    epoch.push_back(ys);
  }
  return epoch;
}

std::vector<int64_t> concat(const std::vector<std::vector<int64_t>>& batches) {
  std::vector<int64_t> all;
  for (const auto& b : batches) all.insert(all.end(), b.begin(), b.end());
  return all;
}

TEST(DataLoader, BatchCountsN10B3) {
  nd::Dataset d = more::counting_dataset(10);
  nd::DataLoader keep(d, {.batch_size = 3});
  EXPECT_EQ(keep.size(), 4);
  EXPECT_EQ(keep.num_samples(), 10);
  auto e = run_epoch(keep);
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].size(), 3u);
  EXPECT_EQ(e[3].size(), 1u) << "last partial batch";

  nd::DataLoader drop(d, {.batch_size = 3, .drop_last = true});
  EXPECT_EQ(drop.size(), 3);
  auto f = run_epoch(drop);
  ASSERT_EQ(f.size(), 3u);
  for (const auto& b : f) EXPECT_EQ(b.size(), 3u);
  const std::vector<int64_t> kept = concat(f);
  EXPECT_EQ(std::set<int64_t>(kept.begin(), kept.end()).size(), 9u) << "9 distinct samples";

  nd::DataLoader exact(d, {.batch_size = 5, .drop_last = true});
  EXPECT_EQ(exact.size(), 2);
  nd::DataLoader big(d, {.batch_size = 64});
  EXPECT_EQ(big.size(), 1);
  EXPECT_EQ(run_epoch(big)[0].size(), 10u);
  nd::DataLoader none(d, {.batch_size = 64, .drop_last = true});
  EXPECT_EQ(none.size(), 0);
  EXPECT_TRUE(run_epoch(none).empty());
}

TEST(DataLoader, EverySampleOncePerEpochN103B8) {
  nd::Dataset d = more::counting_dataset(103);
  nd::DataLoader loader(d, {.batch_size = 8, .seed = 7});
  std::vector<int64_t> all_ids(103);
  std::iota(all_ids.begin(), all_ids.end(), 0);
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> seen = concat(run_epoch(loader));
    EXPECT_NE(seen, all_ids) << "epoch " << epoch << " was not shuffled";
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, all_ids) << "epoch " << epoch;
  }
  EXPECT_EQ(loader.epoch(), 3);
}

TEST(DataLoader, SeedsAndEpochsN50B4) {
  nd::Dataset d = more::counting_dataset(50);
  nd::DataLoader a(d, {.batch_size = 4, .seed = 42});
  nd::DataLoader b(d, {.batch_size = 4, .seed = 42});
  nd::DataLoader c(d, {.batch_size = 4, .seed = 43});
  auto a0 = concat(run_epoch(a)), a1 = concat(run_epoch(a));
  auto b0 = concat(run_epoch(b)), b1 = concat(run_epoch(b));
  auto c0 = concat(run_epoch(c));
  EXPECT_EQ(a0, b0) << "same seed, same first epoch";
  EXPECT_EQ(a1, b1) << "same seed, same second epoch";
  EXPECT_NE(a0, a1) << "epochs must differ";
  EXPECT_NE(a0, c0) << "seeds must differ";
  EXPECT_EQ(a0, nd::DataLoader::permutation(50, 42, 0));
  EXPECT_EQ(a1, nd::DataLoader::permutation(50, 42, 1));
  // Resuming at epoch 1 replays it.
  nd::DataLoader r(d, {.batch_size = 4, .seed = 42});
  r.set_epoch(1);
  EXPECT_EQ(concat(run_epoch(r)), a1);
  EXPECT_EQ(r.order(), a1);
  // (seed, epoch) pairs are mixed, not added.
  EXPECT_NE(nd::DataLoader::permutation(50, 1, 0), nd::DataLoader::permutation(50, 0, 1));
}

TEST(DataLoader, NoShuffleKeepsOrderN10B4) {
  nd::Dataset d = more::counting_dataset(10);
  nd::DataLoader loader(d, {.batch_size = 4, .shuffle = false});
  for (int epoch = 0; epoch < 2; ++epoch) {
    auto e = run_epoch(loader);
    ASSERT_EQ(e.size(), 3u);
    EXPECT_EQ(e[0], (std::vector<int64_t>{0, 1, 2, 3}));
    EXPECT_EQ(e[1], (std::vector<int64_t>{4, 5, 6, 7}));
    EXPECT_EQ(e[2], (std::vector<int64_t>{8, 9}));
  }
  nd::Batch b = loader.batch(1);
  EXPECT_EQ(b.size(), 4);
  EXPECT_EQ(b.x.data<float>()[0], 40.0f);
  EXPECT_TRUE(ThrowsWith([&] { loader.batch(3); }, {"batch", "out of range"}));
}

TEST(DataLoader, NchwImagesKeepTheirShape) {
  nabla::Tensor x = nabla::Tensor::empty({5, 1, 2, 2}, {.dtype = nabla::DType::float32});
  nabla::Tensor y = nabla::Tensor::empty({5}, {.dtype = nabla::DType::int64});
  for (int i = 0; i < 20; ++i) x.data<float>()[i] = static_cast<float>(i);
  for (int i = 0; i < 5; ++i) y.data<int64_t>()[i] = i;
  nd::DataLoader loader(nd::Dataset{x, y}, {.batch_size = 2, .shuffle = false});
  auto it = loader.begin();
  ++it;
  EXPECT_EQ(it->x.shape(), (nabla::Shape{2, 1, 2, 2}));
  EXPECT_EQ(it->x.data<float>()[0], 8.0f);
  EXPECT_EQ(it->x.data<float>()[7], 15.0f);
}

TEST(DataLoader, BadOptions) {
  nd::Dataset d = more::counting_dataset(10);
  EXPECT_TRUE(ThrowsWith([&] { nd::DataLoader(d, {.batch_size = 0}); }, {"batch_size", "0"}));
  EXPECT_TRUE(ThrowsWith([&] { nd::DataLoader(d, {.batch_size = -4}); }, {"batch_size", "-4"}));
  EXPECT_TRUE(ThrowsWith([&] { nd::DataLoader(more::counting_dataset(0)); }, {"empty"}));
  nd::Dataset mismatch{d.x, more::counting_dataset(9).y};
  EXPECT_TRUE(ThrowsWith([&] { nd::DataLoader{mismatch}; }, {"10 samples", "9"}));
  EXPECT_TRUE(ThrowsWith([&] { nd::DataLoader{nd::Dataset{}}; }, {"undefined"}));
  nd::DataLoader loader(d);
  EXPECT_TRUE(ThrowsWith([&] { loader.batch(0); }, {"begin()"}));
}

TEST(DataLoader, CopiesToTheRequestedDevice) {
  if (!nabla::Device::best().is_cuda()) GTEST_SKIP() << "no CUDA device";
  nd::Dataset d = more::counting_dataset(10);
  nd::DataLoader loader(d, {.batch_size = 4, .seed = 3, .device = nabla::Device::cuda()});
  std::vector<int64_t> seen;
  for (auto& batch : loader) {
    EXPECT_TRUE(batch.x.device().is_cuda());
    EXPECT_TRUE(batch.y.device().is_cuda());
    std::vector<int64_t> ys = batch.y.to(nabla::Device::cpu()).to_vector<int64_t>();
    std::vector<float> xs = batch.x.to(nabla::Device::cpu()).to_vector<float>();
    for (size_t i = 0; i < ys.size(); ++i) EXPECT_EQ(xs[i * 3], static_cast<float>(10 * ys[i]));
    seen.insert(seen.end(), ys.begin(), ys.end());
  }
  EXPECT_EQ(seen, nd::DataLoader::permutation(10, 3, 0));
}

}  // namespace
