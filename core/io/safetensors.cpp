#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <nabla/core/error.h>
#include <nabla/core/io/safetensors.h>
#include <nabla/core/test_hooks.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <functional>
#include <memory>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

namespace nabla {

namespace {

// ---- CRC-32C, slicing by 8 ----------------------------------------------------------------------

using CrcTables = std::array<std::array<uint32_t, 256>, 8>;

constexpr CrcTables make_crc_tables() {
  CrcTables t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k)
      c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // reflected 0x1EDC6F41
    t[0][i] = c;
  }
  // t[k][i]: the CRC of byte i followed by k zero bytes, so 8 bytes fold in one step.
  for (size_t k = 1; k < 8; ++k)
    for (size_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
  return t;
}
constexpr CrcTables kCrc = make_crc_tables();

uint32_t load_le32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

// ---- messages -----------------------------------------------------------------------------------

// "safetensors <path>: <message>", an IOError (the file cannot be read or written, or is malformed)
// unless given another class (a bad argument to save_safetensors is a plain Error).
template <typename E = IOError, typename... Args>
[[noreturn]] void st_fail(const std::string& path, fmt::format_string<Args...> f, Args&&... args) {
  throw E(fmt::format("safetensors {}: {}", path, fmt::format(f, std::forward<Args>(args)...)));
}

std::string errno_text() { return std::strerror(errno); }

// ---- dtypes -------------------------------------------------------------------------------------

const char* st_code(DType t) {
  switch (t) {
    case DType::float32:
      return "F32";
    case DType::float64:
      return "F64";
    case DType::int32:
      return "I32";
    case DType::int64:
      return "I64";
  }
  return "?";
}

std::optional<DType> parse_code(std::string_view s) {
  if (s == "F32") return DType::float32;
  if (s == "F64") return DType::float64;
  if (s == "I32") return DType::int32;
  if (s == "I64") return DType::int64;
  return std::nullopt;
}

// dtypes of the safetensors format that nabla has no DType for.
bool is_foreign_code(std::string_view s) {
  static constexpr std::string_view kForeign[] = {
      "BOOL", "U8",  "I8",      "U16",     "I16",     "F16",     "BF16",    "U32",
      "U64",  "C64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4"};
  return std::find(std::begin(kForeign), std::end(kForeign), s) != std::end(kForeign);
}

// Tensor bytes are little-endian in the file; on a big-endian host they are swapped in place.
void swap_if_big_endian(void* data, size_t nbytes, size_t elem) {
  if constexpr (std::endian::native == std::endian::big) {
    auto* p = static_cast<uint8_t*>(data);
    for (size_t i = 0; i + elem <= nbytes; i += elem) std::reverse(p + i, p + i + elem);
  } else {
    (void)data, (void)nbytes, (void)elem;
  }
}

// ---- file descriptors ---------------------------------------------------------------------------

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now, so that the caller sees the error (close can report a failed write-back).
  int close() {
    int r = ::close(fd_);
    fd_ = -1;
    return r;
  }

 private:
  int fd_;
};

// Reads up to n bytes at `offset`; fewer only at the end of the file.
size_t read_at(int fd, void* dst, size_t n, uint64_t offset, const std::string& path) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, static_cast<char*>(dst) + done, std::min<size_t>(n - done, 1 << 30),
                        static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      st_fail(path, "read error at file byte {}: {}", offset + done, errno_text());
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  return done;
}

// ---- header parsing -----------------------------------------------------------------------------

// Builds a SafetensorsHeader straight from the parser's events, so that a hostile header can
// make us hold no more than its names, shapes and metadata (no DOM of arbitrary JSON), and so
// that duplicate keys, which a DOM would silently merge, are seen.
class HeaderSax final : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit HeaderSax(SafetensorsHeader& out) : out_(out) {}

  const std::string& error() const { return error_; }

  bool null() override { return unexpected("null"); }
  bool boolean(bool) override { return unexpected("a boolean"); }
  bool binary(binary_t&) override { return unexpected("binary data"); }

  bool number_unsigned(number_unsigned_t v) override {
    if (state_ == State::Shape) {
      if (entry_.shape.size() == kSafetensorsMaxRank)
        return fail("{}'shape' has more than {} entries", tensor(), kSafetensorsMaxRank);
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return fail("{}shape entry {} is {}, more than 2^63-1", tensor(), entry_.shape.size(), v);
      entry_.shape.push_back(static_cast<int64_t>(v));
      return true;
    }
    if (state_ == State::Offsets) {
      if (offsets_.size() == 2)
        return fail("{}'data_offsets' must be [begin, end], got more than 2 entries", tensor());
      offsets_.push_back(v);
      return true;
    }
    return unexpected("a number");
  }
  bool number_integer(number_integer_t v) override {
    if (v >= 0) return number_unsigned(static_cast<number_unsigned_t>(v));
    if (state_ == State::Shape)
      return fail("{}shape entry {} is negative ({})", tensor(), entry_.shape.size(), v);
    if (state_ == State::Offsets)
      return fail("{}data_offsets entry {} is negative ({})", tensor(), offsets_.size(), v);
    return unexpected("a number");
  }
  bool number_float(number_float_t, const string_t& text) override {
    // nlohmann also reports integers too large for 64 bits here.
    if (state_ == State::Shape)
      return fail("{}shape entry {} must be an integer in [0, 2^63), got {}", tensor(),
                  entry_.shape.size(), text);
    if (state_ == State::Offsets)
      return fail("{}data_offsets entry {} must be an integer in [0, 2^64), got {}", tensor(),
                  offsets_.size(), text);
    return unexpected("a number");
  }

  bool string(string_t& s) override {
    if (state_ == State::Meta) {
      out_.metadata.emplace(key_, std::move(s));
      return true;
    }
    if (state_ == State::Entry && field_ == Field::DType) {
      if (auto t = parse_code(s)) {
        entry_.dtype = *t;
        return true;
      }
      if (is_foreign_code(s))
        return fail("{}unsupported dtype '{}': nabla reads F32, F64, I32 and I64", tensor(), s);
      return fail("{}unknown dtype '{}'", tensor(), s);
    }
    return unexpected("a string");
  }

  bool start_object(std::size_t) override {
    switch (state_) {
      case State::Start:
        state_ = State::Root;
        return true;
      case State::Root:
        if (key_ == "__metadata__") {
          state_ = State::Meta;
        } else {
          state_ = State::Entry;
          entry_ = SafetensorsEntry{};
          entry_.name = key_;
          offsets_.clear();
          fields_.clear();
        }
        return true;
      default:
        return unexpected("an object");
    }
  }

  bool key(string_t& k) override {
    switch (state_) {
      case State::Root:
        if (k.empty()) return fail("empty tensor name in the header");
        if (!keys_.insert(k).second) {
          if (k == "__metadata__") return fail("'__metadata__' appears twice in the header");
          return fail("duplicate tensor name '{}' in the header", k);
        }
        key_ = std::move(k);
        return true;
      case State::Meta:
        if (!meta_keys_.insert(k).second) return fail("__metadata__ key '{}' appears twice", k);
        key_ = std::move(k);
        return true;
      case State::Entry:
        if (k == "dtype")
          field_ = Field::DType;
        else if (k == "shape")
          field_ = Field::Shape;
        else if (k == "data_offsets")
          field_ = Field::Offsets;
        else
          return fail("{}unknown field '{}', expected dtype, shape and data_offsets", tensor(), k);
        if (!fields_.insert(field_).second) return fail("{}field '{}' appears twice", tensor(), k);
        return true;
      default:
        return fail("internal: key in state {}", static_cast<int>(state_));
    }
  }

  bool end_object() override {
    switch (state_) {
      case State::Meta:
        state_ = State::Root;
        return true;
      case State::Entry:
        state_ = State::Root;
        return finish_entry();
      case State::Root:
        state_ = State::Done;
        return true;
      default:
        return fail("internal: end of object in state {}", static_cast<int>(state_));
    }
  }

  bool start_array(std::size_t) override {
    if (state_ == State::Entry && field_ == Field::Shape) {
      state_ = State::Shape;
      return true;
    }
    if (state_ == State::Entry && field_ == Field::Offsets) {
      state_ = State::Offsets;
      return true;
    }
    return unexpected("an array");
  }
  bool end_array() override {
    if (state_ == State::Offsets && offsets_.size() != 2)
      return fail("{}'data_offsets' must be [begin, end], got {} entries", tensor(),
                  offsets_.size());
    state_ = State::Entry;
    return true;
  }

  bool parse_error(std::size_t position, const std::string& last_token,
                   const nlohmann::detail::exception& ex) override {
    return fail("header is not valid JSON at header byte {} (file byte {}), near '{}': {}",
                position, 8 + position, last_token, ex.what());
  }

 private:
  enum class State { Start, Root, Meta, Entry, Shape, Offsets, Done };
  enum class Field { DType, Shape, Offsets };

  template <typename... Args>
  bool fail(fmt::format_string<Args...> f, Args&&... args) {
    if (error_.empty()) error_ = fmt::format(f, std::forward<Args>(args)...);
    return false;
  }

  std::string tensor() const { return fmt::format("tensor '{}': ", entry_.name); }

  // A JSON value where the format has no place for one of its kind.
  bool unexpected(const char* kind) {
    switch (state_) {
      case State::Start:
        return fail("the header must be a JSON object, got {}", kind);
      case State::Root:
        if (key_ == "__metadata__")
          return fail("__metadata__ must be an object of strings, got {}", kind);
        return fail("tensor '{}': expected an object {{dtype, shape, data_offsets}}, got {}", key_,
                    kind);
      case State::Meta:
        return fail("__metadata__ '{}': value must be a string, got {}", key_, kind);
      case State::Entry:
        switch (field_) {
          case Field::DType:
            return fail("{}'dtype' must be a string, got {}", tensor(), kind);
          case Field::Shape:
            return fail("{}'shape' must be an array of non-negative integers, got {}", tensor(),
                        kind);
          case Field::Offsets:
            return fail("{}'data_offsets' must be an array [begin, end], got {}", tensor(), kind);
        }
        break;
      case State::Shape:
        return fail("{}shape entry {} must be a non-negative integer, got {}", tensor(),
                    entry_.shape.size(), kind);
      case State::Offsets:
        return fail("{}data_offsets entry {} must be a non-negative integer, got {}", tensor(),
                    offsets_.size(), kind);
      case State::Done:
        break;
    }
    return fail("unexpected {} after the header object", kind);
  }

  bool finish_entry() {
    for (auto [f, name] : {std::pair{Field::DType, "dtype"}, std::pair{Field::Shape, "shape"},
                           std::pair{Field::Offsets, "data_offsets"}})
      if (!fields_.count(f)) return fail("{}missing '{}'", tensor(), name);
    entry_.begin = offsets_[0];
    entry_.end = offsets_[1];
    const char* code = st_code(entry_.dtype);
    if (entry_.begin > entry_.end)
      return fail("{}data_offsets [{}, {}]: begin is after end", tensor(), entry_.begin,
                  entry_.end);
    // Dimensions are < 2^63 each, but their product and the byte size may overflow.
    uint64_t numel = 1, nbytes = 0;
    bool overflow = false;
    for (int64_t d : entry_.shape)
      overflow = overflow || __builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel);
    overflow = overflow || numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
               __builtin_mul_overflow(numel, uint64_t{dtype_size(entry_.dtype)}, &nbytes);
    if (overflow)
      return fail("{}shape {} of {} is too large: its byte size overflows 64 bits", tensor(),
                  shape_str(entry_.shape), code);
    if (entry_.nbytes() != nbytes)
      return fail("{}data_offsets [{}, {}] hold {} bytes, shape {} of {} needs {}", tensor(),
                  entry_.begin, entry_.end, entry_.nbytes(), shape_str(entry_.shape), code, nbytes);
    if (entry_.end > out_.data_bytes)
      return fail(
          "{}data_offsets [{}, {}] run past the end of the data section ({} bytes, "
          "ending at file byte {})",
          tensor(), entry_.begin, entry_.end, out_.data_bytes,
          8 + out_.header_bytes + out_.data_bytes);
    out_.tensors.push_back(std::move(entry_));
    return true;
  }

  SafetensorsHeader& out_;
  std::string error_;
  State state_ = State::Start;
  std::string key_;  // the current key of the root object or of __metadata__
  Field field_ = Field::DType;
  std::set<Field> fields_;
  SafetensorsEntry entry_;
  std::vector<uint64_t> offsets_;
  std::set<std::string> keys_, meta_keys_;
};

// Parses "nabla.crc32c": exactly 8 hex digits.
std::optional<uint32_t> parse_crc(const std::string& s) {
  if (s.size() != 8) return std::nullopt;
  uint32_t v = 0;
  for (char c : s) {
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) return std::nullopt;
    v = (v << 4) | static_cast<uint32_t>(d);
  }
  return v;
}

// The CRC-32C of the header's canonical serialization (safetensors.h describes it).
uint32_t header_crc(const std::vector<SafetensorsEntry>& tensors,
                    const std::map<std::string, std::string>& metadata) {
  uint32_t crc = 0;
  auto u64 = [&](uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    crc = crc32c(b, 8, crc);
  };
  auto bytes = [&](std::string_view s) {
    u64(s.size());
    crc = crc32c(s.data(), s.size(), crc);
  };
  auto tag = [&](char c) { crc = crc32c(&c, 1, crc); };
  for (const auto& [k, v] : metadata) {  // std::string orders bytewise (as unsigned char)
    if (k == kSafetensorsHeaderCrcKey) continue;
    tag('M');
    bytes(k);
    bytes(v);
  }
  std::vector<const SafetensorsEntry*> by_name;
  for (const SafetensorsEntry& e : tensors) by_name.push_back(&e);
  std::sort(by_name.begin(), by_name.end(),
            [](const SafetensorsEntry* a, const SafetensorsEntry* b) { return a->name < b->name; });
  for (const SafetensorsEntry* e : by_name) {
    tag('T');
    bytes(e->name);
    bytes(st_code(e->dtype));
    u64(e->shape.size());
    for (int64_t d : e->shape) u64(static_cast<uint64_t>(d));
    u64(e->begin);
    u64(e->end);
  }
  return crc;
}

int open_for_read(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) st_fail(path, "cannot open: {}", errno_text());
  return fd;
}

SafetensorsHeader parse_header(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) st_fail(path, "cannot stat: {}", errno_text());
  if (!S_ISREG(st.st_mode)) st_fail(path, "not a regular file");
  const auto file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8)
    st_fail(path,
            "file too short: {} bytes, a safetensors file starts with an 8-byte header length",
            file_size);

  uint8_t len_bytes[8];
  if (read_at(fd, len_bytes, 8, 0, path) != 8)
    st_fail(path, "file truncated while reading bytes 0-7");
  const uint64_t n = uint64_t{load_le32(len_bytes)} | (uint64_t{load_le32(len_bytes + 4)} << 32);
  if (n > kSafetensorsMaxHeaderBytes)
    st_fail(path, "header length {} (bytes 0-7) is over the limit of {} bytes", n,
            kSafetensorsMaxHeaderBytes);
  if (n > file_size - 8)
    st_fail(path, "header length {} (bytes 0-7) runs past the end of the file: 8 + {} > {} bytes",
            n, n, file_size);
  if (n == 0) st_fail(path, "empty header (length 0 in bytes 0-7), expected a JSON object");

  // n is capped and backed by the file, so this allocation is bounded by real bytes.
  std::string text(n, '\0');
  if (read_at(fd, text.data(), n, 8, path) != n)
    st_fail(path, "file truncated while reading the header (file bytes 8-{})", 8 + n - 1);
  if (text[0] != '{')
    st_fail(path, "header does not start with '{{' at file byte 8 (found 0x{:02x})",
            static_cast<uint8_t>(text[0]));

  // nlohmann's lexer takes a NUL byte for the end of the input and would ignore what follows;
  // JSON has no place for one anyway (inside a string it must be escaped).
  if (size_t nul = text.find('\0'); nul != std::string::npos)
    st_fail(path, "header is not valid JSON: NUL byte at header byte {} (file byte {})", nul,
            8 + nul);

  SafetensorsHeader h;
  h.path = path;
  h.header_bytes = n;
  h.data_bytes = file_size - 8 - n;
  HeaderSax sax(h);
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(text.begin(), text.end(), &sax);
  } catch (const nlohmann::json::exception& e) {
    st_fail(path, "header is not valid JSON: {}", e.what());
  }
  if (!ok) st_fail(path, "{}", sax.error().empty() ? "header is not valid JSON" : sax.error());

  // The data of the tensors, in file order, must tile [0, data_bytes) exactly.
  std::stable_sort(h.tensors.begin(), h.tensors.end(),
                   [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
                     return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                   });
  uint64_t covered = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const SafetensorsEntry& e : h.tensors) {
    if (e.begin < covered)
      st_fail(path, "tensor '{}': data_offsets [{}, {}] overlap those of tensor '{}' [{}, {}]",
              e.name, e.begin, e.end, prev->name, prev->begin, prev->end);
    if (e.begin > covered)
      st_fail(path,
              "gap in the data section: bytes [{}, {}) before tensor '{}' belong to no tensor",
              covered, e.begin, e.name);
    covered = e.end;
    prev = &e;
  }
  if (covered != h.data_bytes)
    st_fail(path,
            "the data section has {} bytes but the tensors end at byte {}: {} bytes from file "
            "byte {} belong to no tensor",
            h.data_bytes, covered, h.data_bytes - covered, 8 + n + covered);

  for (const char* key : {kSafetensorsCrcKey, kSafetensorsHeaderCrcKey})
    if (auto it = h.metadata.find(key); it != h.metadata.end() && !parse_crc(it->second))
      st_fail(path, "__metadata__ '{}' must be 8 hex digits, got '{}'", key, it->second);
  if (auto it = h.metadata.find(kSafetensorsHeaderCrcKey); it != h.metadata.end()) {
    const uint32_t want = *parse_crc(it->second), got = header_crc(h.tensors, h.metadata);
    if (want != got)
      st_fail(path,
              "header checksum mismatch: file says {:08x}, header gives {:08x} (CRC-32C of the "
              "tensor entries and metadata, __metadata__ '{}'): the header was edited or is "
              "corrupt",
              want, got, kSafetensorsHeaderCrcKey);
  }
  return h;
}

// ---- writing ------------------------------------------------------------------------------------

// A JSON string literal; throws on invalid UTF-8.
std::string json_string(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
}

// The entries save_safetensors writes: the tensors in the order given, tiling the data section.
std::vector<SafetensorsEntry> entries_of(
    const std::vector<std::pair<std::string, Tensor>>& tensors) {
  std::vector<SafetensorsEntry> out;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype());
    out.push_back({name, t.dtype(), t.shape(), offset, offset + nbytes});
    offset += nbytes;
  }
  return out;
}

// The header JSON, padded with spaces to a multiple of 8 bytes.
std::string header_text(const std::vector<SafetensorsEntry>& entries,
                        const std::map<std::string, std::string>& metadata) {
  std::string s = "{\"__metadata__\":{";
  bool first = true;
  for (const auto& [k, v] : metadata) {
    if (!first) s += ',';
    first = false;
    s += json_string(k) + ':' + json_string(v);
  }
  s += '}';
  for (const SafetensorsEntry& e : entries)
    s += fmt::format(",{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                     json_string(e.name), st_code(e.dtype), fmt::join(e.shape, ","), e.begin,
                     e.end);
  s += '}';
  s.append((8 - s.size() % 8) % 8, ' ');
  return s;
}

void write_all(int fd, const void* data, size_t n, const std::string& path,
               const std::string& tmp) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, std::min<size_t>(n, 1 << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      st_fail(path, "cannot write {}: {}", tmp, errno_text());
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Removes the temporary file unless the save got as far as renaming it. Its name is this
// save's alone (O_EXCL), so this never removes another save's file.
struct TempFile {
  std::string path;
  bool keep = false;
  ~TempFile() {
    if (!keep) ::unlink(path.c_str());
  }
};

// ---- the save target ----------------------------------------------------------------------------

// What a save replaces or creates: the file at the end of any symbolic links.
struct SaveTarget {
  std::string file;  // the path renamed over
  std::string dir;   // its folder ("." for a bare name)
  std::string name;  // its last component
  bool exists = false;
  struct stat st {};  // when it exists
};

const char* file_kind(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  return "a special file";
}

constexpr int kMaxSymlinks = 40;  // Linux's limit on a path lookup

// Follows `path` through symbolic links to the file a save replaces (or creates, for a missing
// file or a dangling link) and refuses one that exists and is not a regular file.
SaveTarget resolve_target(const std::string& path) {
  namespace fs = std::filesystem;
  std::string cur = path;
  for (int links = 0;; ++links) {
    SaveTarget t;
    if (::lstat(cur.c_str(), &t.st) != 0) {
      if (errno != ENOENT) st_fail(path, "cannot stat {}: {}", cur, errno_text());
    } else if (S_ISLNK(t.st.st_mode)) {
      if (links == kMaxSymlinks)
        st_fail(path, "more than {} symbolic links to follow from {}", kMaxSymlinks, path);
      std::error_code ec;
      fs::path to = fs::read_symlink(cur, ec);
      if (ec) st_fail(path, "cannot read the symbolic link {}: {}", cur, ec.message());
      cur = (to.is_relative() ? fs::path(cur).parent_path() / to : to).string();
      continue;
    } else if (!S_ISREG(t.st.st_mode)) {
      if (cur == path)
        st_fail(path, "refusing to save over {}: not a regular file", file_kind(t.st.st_mode));
      st_fail(path, "refusing to save over {}, {} that the symbolic link points at: not a regular "
              "file", cur, file_kind(t.st.st_mode));
    } else {
      t.exists = true;
    }
    const fs::path p(cur);
    t.file = cur;
    t.dir = p.has_parent_path() ? p.parent_path().string() : ".";
    t.name = p.filename().string();
    if (t.name.empty() || t.name == "." || t.name == "..")
      st_fail(path, "names a folder, not a file");
    return t;
  }
}

// ---- temporary files ----------------------------------------------------------------------------

std::atomic<uint64_t> g_temp_counter{0};
std::function<void(const std::string&, const std::string&)> g_before_rename;

// Longest ".tmp.<pid>.<n>": pid_t up to 10 digits, n up to 20.
constexpr size_t kTempSuffixMax = 5 + 10 + 1 + 20;

// What comes before ".tmp.<pid>.<n>" in a temporary file's name: the target's name, or, when
// that would make the name longer than NAME_MAX, "." and 16 hex digits of its FNV-1a hash.
std::string temp_stem(const std::string& name, bool long_form) {
  if (!long_form) return name;
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return fmt::format(".{:016x}", h);
}

// The pid in "<pid>" or "<pid>.<n>" (the part after ".tmp."), or 0 when it is not that.
pid_t temp_owner(std::string_view rest) {
  const size_t dot = rest.find('.');
  auto digits = [](std::string_view s) {
    return !s.empty() && s.size() <= 19 &&
           s.find_first_not_of("0123456789") == std::string_view::npos;
  };
  const std::string_view pid = rest.substr(0, dot);
  if (!digits(pid) || (dot != std::string_view::npos && !digits(rest.substr(dot + 1)))) return 0;
  const uint64_t v = std::stoull(std::string(pid));
  return v <= static_cast<uint64_t>(std::numeric_limits<pid_t>::max()) ? static_cast<pid_t>(v) : 0;
}

// Removes the temporary files of `t` (both name forms, and the ".tmp.<pid>" of older nabla)
// left by processes that no longer exist. A live process's file, this process's own (another
// thread may be saving) and anything that is not a regular file are left alone. Best effort:
// errors are ignored.
void remove_stale_temps(const SaveTarget& t) {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(t.dir.c_str()), ::closedir);
  if (!dir) return;
  const std::string prefixes[] = {temp_stem(t.name, false) + ".tmp.",
                                  temp_stem(t.name, true) + ".tmp."};
  const pid_t self = ::getpid();
  while (const dirent* e = ::readdir(dir.get())) {
    const std::string_view n = e->d_name;
    for (const std::string& prefix : prefixes) {
      if (!n.starts_with(prefix)) continue;
      const pid_t pid = temp_owner(n.substr(prefix.size()));
      struct stat st {};
      if (pid <= 0 || pid == self || ::kill(pid, 0) == 0 || errno != ESRCH) break;
      if (::fstatat(::dirfd(dir.get()), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISREG(st.st_mode))
        ::unlinkat(::dirfd(dir.get()), e->d_name, 0);
      break;
    }
  }
}

// Creates a temporary file for `t` in its folder, with a name no other save uses (O_EXCL), and
// gives it the permissions of the file it will replace. Returns the descriptor and the path.
std::pair<int, std::string> create_temp(const SaveTarget& t, const std::string& path) {
  namespace fs = std::filesystem;
  const std::string stem = temp_stem(t.name, t.name.size() + kTempSuffixMax > NAME_MAX);
  // A file that exists keeps its mode: start private, then take its bits before any data is
  // written. A new file gets 0666 & ~umask.
  const mode_t mode = t.exists ? 0600 : 0666;
  for (int attempt = 0;; ++attempt) {
    const std::string tmp =
        (fs::path(t.file).parent_path() /
         fmt::format("{}.tmp.{}.{}", stem, ::getpid(), g_temp_counter.fetch_add(1)))
            .string();
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
      if (errno == EEXIST && attempt < 100) continue;  // a stale file of a reused pid
      st_fail(path, "cannot create {}: {}", tmp, errno_text());
    }
    if (t.exists) {
      // Owner and group only where the process may set them (root, or a group it is in).
      if ((t.st.st_uid != ::geteuid() || t.st.st_gid != ::getegid()) &&
          ::fchown(fd, t.st.st_uid, t.st.st_gid) != 0) {
      }
      if (::fchmod(fd, t.st.st_mode & 07777) != 0) {
        const std::string why = errno_text();
        ::close(fd);
        ::unlink(tmp.c_str());
        st_fail(path, "cannot give {} the mode {:o} of the file it replaces: {}", tmp,
                t.st.st_mode & 07777, why);
      }
    }
    return {fd, tmp};
  }
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  for (; n >= 8; p += 8, n -= 8) {
    const uint32_t lo = load_le32(p) ^ c, hi = load_le32(p + 4);
    c = kCrc[7][lo & 0xFF] ^ kCrc[6][(lo >> 8) & 0xFF] ^ kCrc[5][(lo >> 16) & 0xFF] ^
        kCrc[4][lo >> 24] ^ kCrc[3][hi & 0xFF] ^ kCrc[2][(hi >> 8) & 0xFF] ^
        kCrc[1][(hi >> 16) & 0xFF] ^ kCrc[0][hi >> 24];
  }
  for (; n > 0; ++p, --n) c = kCrc[0][(c ^ *p) & 0xFF] ^ (c >> 8);
  return ~c;
}

const SafetensorsEntry* SafetensorsHeader::find(const std::string& name) const {
  for (const SafetensorsEntry& e : tensors)
    if (e.name == name) return &e;
  return nullptr;
}

// ---- SafetensorsReader --------------------------------------------------------------------------

SafetensorsReader::SafetensorsReader(const std::string& path) : fd_(open_for_read(path)) {
  try {
    header_ = parse_header(fd_, path);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

SafetensorsReader::~SafetensorsReader() {
  if (fd_ >= 0) ::close(fd_);
}

SafetensorsReader::SafetensorsReader(SafetensorsReader&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), header_(std::move(other.header_)) {}

SafetensorsReader& SafetensorsReader::operator=(SafetensorsReader&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    header_ = std::move(other.header_);
  }
  return *this;
}

SafetensorsFile SafetensorsReader::read(Device device) const {
  NABLA_ASSERT(fd_ >= 0);
  const SafetensorsHeader& h = header_;
  const std::string& path = h.path;
  const uint64_t data_start = 8 + h.header_bytes;
  SafetensorsFile out;
  out.tensors.reserve(h.tensors.size());
  uint32_t crc = 0;
  // The tensors tile the data section in this order, so this reads it once, front to back,
  // and every allocation is backed by bytes the file was seen to have.
  for (const SafetensorsEntry& e : h.tensors) {
    Tensor t = Tensor::empty(e.shape, {.dtype = e.dtype});
    const size_t nbytes = e.nbytes();
    if (nbytes > 0) {
      if (read_at(fd_, t.data_ptr(), nbytes, data_start + e.begin, path) != nbytes)
        st_fail(path, "tensor '{}': data truncated: the file ended before file byte {}", e.name,
                data_start + e.end);
      crc = crc32c(t.data_ptr(), nbytes, crc);
      swap_if_big_endian(t.data_ptr(), nbytes, dtype_size(e.dtype));
    }
    out.tensors.emplace_back(e.name, std::move(t));
  }
  if (auto it = h.metadata.find(kSafetensorsCrcKey); it != h.metadata.end()) {
    const uint32_t want = *parse_crc(it->second);  // format checked by parse_header
    if (want != crc)
      st_fail(path,
              "checksum mismatch: file says {:08x}, data gives {:08x} (CRC-32C of the {}-byte "
              "data section, __metadata__ '{}')",
              want, crc, h.data_bytes, kSafetensorsCrcKey);
  }
  out.metadata = h.metadata;
  if (!device.is_cpu()) {
    for (auto& [name, t] : out.tensors) {
      try {
        t = t.to(device);
      } catch (const Error& e) {
        // Out of device memory stays an OutOfMemoryError.
        e.rethrow_with(
            fmt::format("safetensors {}: tensor '{}': cannot move it to {}: {}", path, name, device, e.what()));
      }
    }
  }
  return out;
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
  return SafetensorsReader(path).header();
}

SafetensorsFile load_safetensors(const std::string& path, Device device) {
  return SafetensorsReader(path).read(device);
}

// ---- save ---------------------------------------------------------------------------------------

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    // Bad arguments, not I/O: plain Errors.
    if (name.empty()) st_fail<Error>(path, "tensor {} has an empty name", i);
    if (name == "__metadata__") st_fail<Error>(path, "tensor {}: the name '__metadata__' is reserved", i);
    if (!names.insert(name).second) st_fail<Error>(path, "duplicate tensor name '{}' (tensor {})", name, i);
    if (!t.defined()) st_fail<Error>(path, "tensor '{}' is undefined", name);
  }
  const std::vector<SafetensorsEntry> entries = entries_of(tensors);
  std::map<std::string, std::string> meta = metadata;
  // Fixed width: rewritten in place once the data is known.
  meta[kSafetensorsCrcKey] = meta[kSafetensorsHeaderCrcKey] = "00000000";
  std::string header;
  try {
    header = header_text(entries, meta);
  } catch (const nlohmann::json::exception& e) {
    st_fail<Error>(path, "a tensor name or metadata string is not valid UTF-8: {}", e.what());
  }

  const SaveTarget target = resolve_target(path);
  remove_stale_temps(target);
  auto [raw_fd, tmp] = create_temp(target, path);
  Fd fd(raw_fd);
  TempFile guard{tmp};

  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));
  write_all(fd.get(), len, 8, path, tmp);
  write_all(fd.get(), header.data(), header.size(), path, tmp);
  uint32_t crc = 0;
  for (const auto& [name, t] : tensors) {
    // One host copy at a time: a model on the GPU never needs its full size in host memory.
    Tensor host = t.detach().to(Device::cpu()).contiguous();
    const size_t nbytes = static_cast<size_t>(host.numel()) * dtype_size(host.dtype());
    if (nbytes == 0) continue;
    const void* src = host.data_ptr();
    std::vector<uint8_t> swapped;
    if constexpr (std::endian::native == std::endian::big) {
      swapped.assign(static_cast<const uint8_t*>(src), static_cast<const uint8_t*>(src) + nbytes);
      swap_if_big_endian(swapped.data(), nbytes, dtype_size(host.dtype()));
      src = swapped.data();
    }
    crc = crc32c(src, nbytes, crc);
    write_all(fd.get(), src, nbytes, path, tmp);
  }
  meta[kSafetensorsCrcKey] = fmt::format("{:08x}", crc);
  meta[kSafetensorsHeaderCrcKey] = fmt::format("{:08x}", header_crc(entries, meta));
  const std::string final_header = header_text(entries, meta);
  NABLA_ASSERT(final_header.size() == header.size());
  for (size_t done = 0; done < final_header.size();) {
    ssize_t w = ::pwrite(fd.get(), final_header.data() + done, final_header.size() - done,
                         static_cast<off_t>(8 + done));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) st_fail(path, "cannot write {}: {}", tmp, errno_text());
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd.get()) != 0) st_fail(path, "cannot fsync {}: {}", tmp, errno_text());
  if (fd.close() != 0) st_fail(path, "cannot close {}: {}", tmp, errno_text());
  if (g_before_rename) g_before_rename(tmp, target.file);
  if (::rename(tmp.c_str(), target.file.c_str()) != 0)
    st_fail(path, "cannot rename {} to {}: {}", tmp, target.file, errno_text());
  guard.keep = true;

  // The rename is durable only once the folder's entry is on disk.
  Fd dfd(::open(target.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() < 0 || ::fsync(dfd.get()) != 0)
    st_fail(path, "saved, but cannot fsync the folder {}: {}", target.dir, errno_text());
}

namespace test_hooks {
void set_save_before_rename_hook(
    std::function<void(const std::string& tmp, const std::string& target)> hook) {
  g_before_rename = std::move(hook);
}
}  // namespace test_hooks

}  // namespace nabla
