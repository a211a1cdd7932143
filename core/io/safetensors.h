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
// Integrity: save_safetensors adds the metadata key "nabla.crc32c", the CRC-32C (Castagnoli)
// of the whole data section as 8 hex digits. When a file has that key, load_safetensors checks
// it; files written elsewhere (without it) load unchecked.
//
// Atomic save: the file is written to "<path>.tmp.<pid>" in the same folder, fsync'ed, renamed
// over `path`, and the folder is fsync'ed. A save that fails or is interrupted leaves the old
// `path` as it was (a killed process may leave its .tmp.<pid> file behind).
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

#include <nabla/core/tensor.h>

#include <cstddef>
#include <cstdint>
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
struct SafetensorsHeader {
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
// nabla has. `metadata` is stored as __metadata__ with "nabla.crc32c" added (a value given for
// that key is replaced). Throws nabla::Error naming the path (and the tensor, or the errno text
// of a failed system call); on any failure the temporary file is removed and `path` untouched.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads and validates the header only: reads 8 + N bytes, allocates nothing in proportion to
// the declared tensors. Does not check the CRC (that needs the data).
SafetensorsHeader read_safetensors_header(const std::string& path);

// Reads the header, validates it, reads every tensor (on the CPU, then moved to `device`) and,
// when the metadata has "nabla.crc32c", checks the data against it before returning.
SafetensorsFile load_safetensors(const std::string& path, Device device = Device::cpu());

// CRC-32C (Castagnoli, the iSCSI polynomial 0x1EDC6F41, reflected) of n bytes. Pass a previous
// result as `crc` to continue over more bytes: crc32c(b, m, crc32c(a, n)) == crc32c(a+b).
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

}  // namespace nabla
