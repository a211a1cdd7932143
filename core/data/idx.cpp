#include <nabla/core/data/idx.h>

#include <nabla/core/error.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace nabla::data {

namespace {

// Gzip output is inflated into chunks of at most this many bytes, so a forged header or trailer
// can make us allocate at most one chunk more than the stream really yields.
constexpr size_t kChunkBytes = size_t{1} << 20;

bool is_floating_idx(IdxType t) { return t == IdxType::float32 || t == IdxType::float64; }

bool valid_type(uint8_t code) {
  switch (code) {
    case 0x08: case 0x09: case 0x0B: case 0x0C: case 0x0D: case 0x0E: return true;
    default: return false;
  }
}

// "IDX <path>: <message>", an IOError (the file cannot be read, or is malformed) unless given
// another class.
template <typename E = IOError, typename... Args>
[[noreturn]] void idx_fail(const std::string& path, fmt::format_string<Args...> f, Args&&... args) {
  throw E(fmt::format("IDX {}: {}", path, fmt::format(f, std::forward<Args>(args)...)));
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

// A byte stream: the file itself, or what inflating it yields. read() returns fewer bytes than
// asked only at the end of the stream; corruption and I/O errors throw.
class Source {
 public:
  virtual ~Source() = default;
  virtual size_t read(uint8_t* dst, size_t n) = 0;
};

class RawSource final : public Source {
 public:
  RawSource(std::FILE* f, const std::string& path) : f_(f), path_(path) {}
  size_t read(uint8_t* dst, size_t n) override {
    size_t got = std::fread(dst, 1, n, f_);
    if (got < n && std::ferror(f_)) idx_fail(path_, "read error: {}", std::strerror(errno));
    return got;
  }

 private:
  std::FILE* f_;
  const std::string& path_;
};

class GzipSource final : public Source {
 public:
  GzipSource(std::FILE* f, const std::string& path, uint64_t file_size)
      : f_(f), path_(path), file_size_(file_size), in_(new uint8_t[kInBytes]) {
    std::memset(&zs_, 0, sizeof zs_);
    // 16 + MAX_WBITS: a gzip wrapper (header, CRC-32 and ISIZE checked by zlib), nothing else.
    if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK)
      idx_fail(path_, "cannot initialise zlib: {}", zs_.msg ? zs_.msg : "out of memory");
  }
  ~GzipSource() override { inflateEnd(&zs_); }
  GzipSource(const GzipSource&) = delete;
  GzipSource& operator=(const GzipSource&) = delete;

  // Said after "truncated"/"corrupt" messages once the header is known, e.g. "of 7840016 declared".
  void set_context(std::string c) { context_ = std::move(c); }

  size_t read(uint8_t* dst, size_t n) override {
    if (ended_ || n == 0) return 0;
    size_t produced = 0;
    while (produced < n) {
      if (zs_.avail_in == 0 && !in_eof_) refill();
      uInt want = static_cast<uInt>(std::min<size_t>(n - produced, uInt{1} << 30));
      zs_.next_out = dst + produced;
      zs_.avail_out = want;
      uInt in_before = zs_.avail_in;
      int ret = inflate(&zs_, Z_NO_FLUSH);
      size_t got = want - zs_.avail_out;
      produced += got;
      switch (ret) {
        case Z_STREAM_END:
          ended_ = true;
          check_nothing_follows();
          return produced;
        case Z_OK:
        case Z_BUF_ERROR:  // no progress possible: handled below
          break;
        case Z_MEM_ERROR:
          idx_fail<OutOfMemoryError>(path_, "out of memory while inflating the gzip stream");
        default:  // Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR
          idx_fail(path_, "gzip data corrupt at compressed byte {} (uncompressed byte {}{}): {}",
                   zs_.total_in, zs_.total_out, context_, zs_.msg ? zs_.msg : "invalid data");
      }
      if (got == 0 && zs_.avail_in == in_before && in_eof_ && zs_.avail_in == 0)
        idx_fail(path_,
                 "gzip stream truncated: the file ends at compressed byte {} before the end of "
                 "the stream (uncompressed byte {}{})",
                 file_size_, zs_.total_out, context_);
    }
    return produced;
  }

 private:
  static constexpr size_t kInBytes = 64 * 1024;

  void refill() {
    size_t got = std::fread(in_.get(), 1, kInBytes, f_);
    if (got < kInBytes) {
      if (std::ferror(f_)) idx_fail(path_, "read error: {}", std::strerror(errno));
      in_eof_ = true;
    }
    zs_.next_in = in_.get();
    zs_.avail_in = static_cast<uInt>(got);
  }

  // After the gzip member ends, the file must end too: concatenated members or padding are
  // rejected rather than silently ignored.
  void check_nothing_follows() {
    const uint64_t end_of_stream = zs_.total_in;
    if (file_size_ > end_of_stream)
      idx_fail(path_, "trailing garbage after the gzip stream: {} bytes from compressed byte {}",
               file_size_ - end_of_stream, end_of_stream);
  }

  std::FILE* f_;
  const std::string& path_;
  uint64_t file_size_;
  std::unique_ptr<uint8_t[]> in_;
  z_stream zs_;
  bool in_eof_ = false;
  bool ended_ = false;
  std::string context_;
};

uint32_t load_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// IDX stores multi-byte elements big-endian; turn them into host order in place.
void to_host_order(std::vector<uint8_t>& bytes, size_t elem) {
  if (elem == 1 || std::endian::native == std::endian::big) return;
  for (size_t i = 0; i + elem <= bytes.size(); i += elem)
    std::reverse(bytes.begin() + static_cast<ptrdiff_t>(i),
                 bytes.begin() + static_cast<ptrdiff_t>(i + elem));
}

}  // namespace

const char* idx_type_name(IdxType t) {
  switch (t) {
    case IdxType::uint8: return "uint8";
    case IdxType::int8: return "int8";
    case IdxType::int16: return "int16";
    case IdxType::int32: return "int32";
    case IdxType::float32: return "float32";
    case IdxType::float64: return "float64";
  }
  return "?";
}

size_t idx_type_size(IdxType t) {
  switch (t) {
    case IdxType::uint8: case IdxType::int8: return 1;
    case IdxType::int16: return 2;
    case IdxType::int32: case IdxType::float32: return 4;
    case IdxType::float64: return 8;
  }
  return 0;
}

IdxArray read_idx(const std::string& path, const IdxOptions& opts) {
  // One open, and the size and type of what was opened (not of whatever the path names a moment
  // later). O_NONBLOCK so that a FIFO is refused instead of waited on.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) idx_fail(path, "cannot open: no such file");
    idx_fail(path, "cannot open: {}", std::strerror(errno));
  }
  File file(::fdopen(fd, "rb"));
  if (!file) {
    const int err = errno;
    ::close(fd);
    idx_fail(path, "cannot open: {}", std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) idx_fail(path, "cannot read the file size: {}", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) idx_fail(path, "cannot open: not a regular file");
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  const auto file_size = static_cast<uint64_t>(st.st_size);
  if (file_size == 0) idx_fail(path, "empty file (0 bytes), expected an IDX header");

  uint8_t first[2] = {0, 0};
  size_t first_got = std::fread(first, 1, 2, file.get());
  const bool gzip = first_got == 2 && first[0] == 0x1f && first[1] == 0x8b;

  std::unique_ptr<Source> src;
  GzipSource* gz = nullptr;
  uint32_t isize = 0;
  if (gzip) {
    // 10-byte header + 8-byte trailer (CRC-32, ISIZE) at least.
    if (file_size < 18)
      idx_fail(path, "gzip file truncated: {} bytes, a gzip stream needs at least 18", file_size);
    uint8_t t[4];
    if (std::fseek(file.get(), -4, SEEK_END) != 0 || std::fread(t, 1, 4, file.get()) != 4)
      idx_fail(path, "cannot read the gzip trailer: {}", std::strerror(errno));
    isize = uint32_t{t[0]} | (uint32_t{t[1]} << 8) | (uint32_t{t[2]} << 16) | (uint32_t{t[3]} << 24);
    auto g = std::make_unique<GzipSource>(file.get(), path, file_size);
    gz = g.get();
    src = std::move(g);
  } else {
    src = std::make_unique<RawSource>(file.get(), path);
  }
  std::rewind(file.get());

  // ---- header ------------------------------------------------------------------------------------
  uint8_t magic[4];
  size_t got = src->read(magic, 4);
  if (got < 4)
    idx_fail(path, "truncated header: the data ends at byte {}, an IDX header needs at least 4",
             got);
  if (magic[0] != 0 || magic[1] != 0)
    idx_fail(path,
             "bad magic at byte 0: {:02x} {:02x} {:02x} {:02x}, expected 00 00 <type> <rank> "
             "(is this an IDX file?)",
             magic[0], magic[1], magic[2], magic[3]);
  if (!valid_type(magic[2]))
    idx_fail(path,
             "unsupported type code 0x{:02x} at byte 2, expected 0x08 (uint8), 0x09 (int8), "
             "0x0b (int16), 0x0c (int32), 0x0d (float32) or 0x0e (float64)",
             magic[2]);
  const auto type = static_cast<IdxType>(magic[2]);
  const int rank = magic[3];
  if (rank < 1 || rank > kIdxMaxRank)
    idx_fail(path, "bad rank {} at byte 3, expected 1..{}", rank, kIdxMaxRank);
  const uint64_t header_bytes = 4 + 4 * static_cast<uint64_t>(rank);

  uint8_t dim_bytes[4 * kIdxMaxRank];
  got = src->read(dim_bytes, 4 * static_cast<size_t>(rank));
  if (got < 4 * static_cast<size_t>(rank))
    idx_fail(path, "truncated header at byte {} of {}: rank {} needs {} dimensions", 4 + got,
             header_bytes, rank, rank);
  Shape dims(static_cast<size_t>(rank));
  for (int i = 0; i < rank; ++i) dims[i] = load_be32(dim_bytes + 4 * i);
  for (int i = 0; i < rank; ++i)
    if (dims[i] == 0)
      idx_fail(path, "bad dimension {} at byte {}: 0 (dims {}), every dimension must be > 0", i,
               4 + 4 * i, shape_str(dims));

  // Each dimension fits in 32 bits, but their product may overflow 64: check every step.
  uint64_t numel = 1;
  uint64_t data_bytes = 0;
  bool overflow = false;
  for (int64_t d : dims) overflow = overflow || __builtin_mul_overflow(numel, uint64_t(d), &numel);
  overflow = overflow || __builtin_mul_overflow(numel, uint64_t(idx_type_size(type)), &data_bytes);
  if (overflow || data_bytes > opts.max_bytes)
    idx_fail(path, "too large: dims {} of {} declare {} bytes of data, the limit is {} "
             "(IdxOptions::max_bytes)",
             shape_str(dims), idx_type_name(type),
             overflow ? std::string("more than 2^64") : std::to_string(data_bytes), opts.max_bytes);
  const uint64_t total = header_bytes + data_bytes;
  const std::string dims_str = shape_str(dims);

  // ---- declared size against the file, before allocating ---------------------------------------
  if (!gzip) {
    if (file_size < total)
      idx_fail(path, "data truncated at byte {} of {} declared (dims {})", file_size, total,
               dims_str);
    if (file_size > total)
      idx_fail(path, "trailing garbage: {} bytes after the data, which ends at byte {} (dims {})",
               file_size - total, total, dims_str);
  } else {
    if (isize != static_cast<uint32_t>(total))
      idx_fail(path,
               "size mismatch: the gzip trailer records an uncompressed size of {} bytes (mod "
               "2^32), the header declares {} (dims {}): {}, or the gzip file is truncated or "
               "corrupt",
               isize, total, dims_str,
               total < (uint64_t{1} << 32) && isize > total ? "trailing garbage after the data"
                                                            : "the data is truncated");
    gz->set_context(fmt::format(" of {} declared, dims {}", total, dims_str));
  }

  // ---- data --------------------------------------------------------------------------------------
  IdxArray out;
  out.path = path;
  out.type = type;
  out.dims = dims;
  if (!gzip) {
    // The file length was checked above, so this allocation is backed by real bytes.
    out.bytes.resize(data_bytes);
    got = src->read(out.bytes.data(), data_bytes);
    if (got < data_bytes)  // the file shrank while we read it
      idx_fail(path, "data truncated at byte {} of {} declared (dims {})", header_bytes + got,
               total, dims_str);
  } else {
    // Grow chunk by chunk, so memory follows what the stream yields, not what the header says.
    std::vector<std::vector<uint8_t>> chunks;
    uint64_t have = 0;
    while (have < data_bytes) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(kChunkBytes, data_bytes - have));
      std::vector<uint8_t> chunk(want);
      got = src->read(chunk.data(), want);
      have += got;
      if (got < want)
        idx_fail(path, "data truncated at byte {} of {} declared (dims {})", header_bytes + have,
                 total, dims_str);
      chunks.push_back(std::move(chunk));
    }
    uint8_t probe[4096];
    uint64_t extra = 0;
    while (extra < (uint64_t{1} << 20)) {
      size_t n = src->read(probe, sizeof probe);
      if (n == 0) break;
      extra += n;
    }
    if (extra > 0)
      idx_fail(path, "trailing garbage: {}{} bytes after the data, which ends at byte {} (dims {})",
               extra >= (uint64_t{1} << 20) ? "at least " : "", extra, total, dims_str);
    out.bytes.reserve(data_bytes);
    for (auto& c : chunks) {
      out.bytes.insert(out.bytes.end(), c.begin(), c.end());
      std::vector<uint8_t>().swap(c);
    }
  }
  to_host_order(out.bytes, idx_type_size(type));
  return out;
}

std::vector<int64_t> idx_labels(const IdxArray& a, int64_t num_classes) {
  NABLA_CHECK(num_classes > 0, "IDX {}: num_classes must be > 0, got {}", a.path, num_classes);
  if (a.dims.size() != 1 || is_floating_idx(a.type))
    idx_fail(a.path, "expected labels: an integer type with rank 1 [N], got {} {}",
             idx_type_name(a.type), shape_str(a.dims));
  const size_t n = static_cast<size_t>(a.dims[0]);
  const size_t esize = idx_type_size(a.type);
  NABLA_ASSERT(a.bytes.size() == n * esize);
  std::vector<int64_t> labels(n);
  const uint8_t* p = a.bytes.data();
  for (size_t i = 0; i < n; ++i) {
    int64_t v = 0;
    switch (a.type) {
      case IdxType::uint8: v = p[i]; break;
      case IdxType::int8: v = static_cast<int8_t>(p[i]); break;
      case IdxType::int16: { int16_t x; std::memcpy(&x, p + 2 * i, 2); v = x; break; }
      case IdxType::int32: { int32_t x; std::memcpy(&x, p + 4 * i, 4); v = x; break; }
      default: NABLA_ASSERT(false);
    }
    if (v < 0 || v >= num_classes)
      idx_fail(a.path, "label out of range at index {} (byte {}): {}, expected 0..{}", i,
               8 + i * esize, v, num_classes - 1);
    labels[i] = v;
  }
  return labels;
}

Tensor read_idx_images(const std::string& path, const IdxOptions& opts) {
  IdxArray a = read_idx(path, opts);
  if (a.type != IdxType::uint8 || a.dims.size() != 3)
    idx_fail(path, "expected images: uint8 with rank 3 [N, rows, cols], got {} {}",
             idx_type_name(a.type), shape_str(a.dims));
  Tensor x = Tensor::empty({a.dims[0], 1, a.dims[1], a.dims[2]}, {.dtype = DType::float32});
  float* dst = x.data<float>();
  const uint8_t* src = a.bytes.data();
  const size_t n = a.bytes.size();
  for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]) / 255.0f;
  return x;
}

Tensor read_idx_labels(const std::string& path, int64_t num_classes, const IdxOptions& opts) {
  NABLA_CHECK(num_classes > 0, "IDX {}: num_classes must be > 0, got {}", path, num_classes);
  std::vector<int64_t> labels = idx_labels(read_idx(path, opts), num_classes);
  Tensor y = Tensor::empty({static_cast<int64_t>(labels.size())}, {.dtype = DType::int64});
  std::memcpy(y.data<int64_t>(), labels.data(), labels.size() * sizeof(int64_t));
  return y;
}

}  // namespace nabla::data
