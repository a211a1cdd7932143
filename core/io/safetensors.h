// safetensors files: named tensors and string metadata, readable by PyTorch's `safetensors`.
//
// Layout (https://huggingface.co/docs/safetensors):
//   byte 0-7     N, the header length: uint64 little-endian
//   byte 8..     N bytes of UTF-8 JSON, an object: for each tensor
//                  "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
//                and optionally "__metadata__": {"key": "value", ...} (strings only).
//                Trailing spaces pad it (nabla pads to a multiple of 8, like the reference).
//   byte 8+N..   the data section: every tensor's elements, row-major, little-endian; offsets
//                are relative to its start, and the tensors tile it exactly.
// nabla reads and writes F32, F64, I32 and I64 (DType float32, float64, int32, int64).
//
// Integrity: save_safetensors adds two metadata keys, each a CRC-32C (Castagnoli) as 8 hex
// digits:
//   "nabla.crc32c"         of the whole data section;
//   "nabla.header_crc32c"  of the header's meaning: a canonical serialization of every tensor
//                          entry and every metadata entry but this key itself (below), so that
//                          an edited epoch, learning rate or random state is caught too.
// When a file has a key, the reader checks it: the header checksum when the header is read
// (read_safetensors_header too), the data checksum when the data is. Files written elsewhere
// (without the keys) load unchecked, and older nabla files (only "nabla.crc32c") load with the
// data checked. The checksums catch corruption and careless edits, not a forger: whoever edits
// a file can recompute them or remove the keys.
//   The canonical serialization fed to the header CRC: for each metadata entry in bytewise order
// of the keys, except "nabla.header_crc32c": 'M', u64 key length, key bytes, u64 value length,
// value bytes; then for each tensor in bytewise order of the names: 'T', u64 name length, name,
// u64 dtype-code length, dtype code ("F32"), u64 rank, each dimension as u64, u64 begin, u64 end;
// every u64 little-endian. Whitespace, padding and the order of keys in the JSON do not count.
//
// Atomic save: the file is written to a temporary file in the target's folder, fsync'ed,
// renamed over the target, and the folder is fsync'ed. A save that fails or is interrupted
// leaves the old target as it was. The temporary file is "<name>.tmp.<pid>.<n>", n from a
// process-wide counter, created with O_EXCL, so concurrent saves to one path (threads or
// processes) never share one; when that name would exceed NAME_MAX (255 bytes) it is
// ".<16 hex digits of a hash of name>.tmp.<pid>.<n>". A process killed mid-save leaves its
// temporary file behind: the next save to the same target removes those whose process no longer
// exists (kill(pid, 0) fails with ESRCH; the ".tmp.<pid>" of older nabla versions too), never
// one of a live process or of this one. (A process in another PID namespace that saves to the
// same folder looks dead; if its temporary file is removed, its rename fails and its save is an
// error, with the target intact.)
//
// The target: an existing target that is not a regular file (a folder, a device such as
// /dev/null, a FIFO, a socket) is refused before anything is written. A symbolic link is
// followed (through up to 40 links): the file it points at is replaced and the link kept, as
// editors do; a dangling link creates the file it points at. An existing file keeps its
// permission bits (and, where the process may set them, its owner and group); a new file gets
// 0666 & ~umask. Only the name is replaced: other hard links to the old file keep its contents.
//
// A file is treated as hostile. Before any tensor is allocated the reader checks: the file
// holds at least 8 bytes; N <= kSafetensorsMaxHeaderBytes and 8 + N <= the file size; the
// header is a JSON object (valid UTF-8, starting with '{'); every key is unique; each entry
// has exactly dtype, shape and data_offsets with the right JSON types; the dtype is one of the
// four above; the shape has at most kSafetensorsMaxRank non-negative integer entries whose
// element count and byte size do not overflow; end - begin equals that byte size; and the
// sorted offsets tile [0, data size) with no gap and no overlap, where the data size is the
// file size - 8 - N. A file of 1 KB that declares a terabyte is refused before allocation.
//
// Every failure throws nabla::Error; the message starts with "safetensors <path>:", names the
// tensor or field when there is one, and the header or file byte offset where it applies, e.g.
//   "safetensors model.safetensors: tensor 'fc1.weight': data_offsets [0, 12] hold 12 bytes,
//    shape [2] of F32 needs 8"
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace nabla {

// The reference implementation's limit on the header length.
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;
// Longest accepted shape.
constexpr size_t kSafetensorsMaxRank = 64;
// Metadata key under which save_safetensors records the data section's CRC-32C.
inline constexpr const char* kSafetensorsCrcKey = "nabla.crc32c";
// Metadata key under which save_safetensors records the header's CRC-32C (see above).
inline constexpr const char* kSafetensorsHeaderCrcKey = "nabla.header_crc32c";

// One tensor as the header describes it. Offsets are relative to the data section.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::float32;
  Shape shape;
  uint64_t begin = 0;
  uint64_t end = 0;

  uint64_t nbytes() const { return end - begin; }
};

// A validated header: what a caller can check against its own model before any data is read.
struct NABLA_API SafetensorsHeader {
  std::string path;
  uint64_t header_bytes = 0;                    // N: the JSON and its padding
  uint64_t data_bytes = 0;                      // the data section, file size - 8 - N
  std::vector<SafetensorsEntry> tensors;        // in the order of their data (by offset)
  std::map<std::string, std::string> metadata;  // "__metadata__", empty when absent

  // The entry named `name`, or nullptr.
  const SafetensorsEntry* find(const std::string& name) const;
};

// A loaded file. `tensors` is in the order of their data, which for a file written by
// save_safetensors is the order they were given in.
struct SafetensorsFile {
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::map<std::string, std::string> metadata;
};

// Writes `tensors` (any device; copied to the host) in the order given, atomically (see
// above). Names must be non-empty, unique, valid UTF-8 and not "__metadata__"; dtypes are those
// nabla has. `metadata` is stored as __metadata__ with "nabla.crc32c" and "nabla.header_crc32c"
// added (values given for those keys are replaced). Throws nabla::Error naming the path (and
// the tensor, or the errno text of a failed system call); on any failure the temporary file is
// removed and `path` untouched.
NABLA_API void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// One open file: the constructor opens `path` once, reads and validates the header (and checks
// "nabla.header_crc32c" when present); read() reads the data through the same descriptor. A
// caller can therefore check the header against what it expects before any data is read, and
// header and data always come from one version of the file, even while another process renames
// new versions over `path` (a save never writes into an existing file, it replaces it).
class NABLA_API SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::string& path);
  ~SafetensorsReader();
  SafetensorsReader(SafetensorsReader&& other) noexcept;
  SafetensorsReader& operator=(SafetensorsReader&& other) noexcept;
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const SafetensorsHeader& header() const { return header_; }
  // Reads every tensor (on the CPU, then moved to `device`) and, when the metadata has
  // "nabla.crc32c", checks the data against it before returning.
  SafetensorsFile read(Device device = Device::cpu()) const;

 private:
  int fd_ = -1;
  SafetensorsHeader header_;
};

// Reads and validates the header only: reads 8 + N bytes, allocates nothing in proportion to
// the declared tensors. Checks "nabla.header_crc32c" but not the data's CRC (that needs the
// data).
NABLA_API SafetensorsHeader read_safetensors_header(const std::string& path);

// SafetensorsReader(path).read(device).
NABLA_API SafetensorsFile load_safetensors(const std::string& path, Device device = Device::cpu());

// CRC-32C (Castagnoli, the iSCSI polynomial 0x1EDC6F41, reflected) of n bytes. Pass a previous
// result as `crc` to continue over more bytes: crc32c(b, m, crc32c(a, n)) == crc32c(a+b).
NABLA_API uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

}  // namespace nabla
