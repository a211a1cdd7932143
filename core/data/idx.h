// IDX files: the format of MNIST and Fashion-MNIST, raw or gzip-compressed.
//
// Layout (all integers big-endian):
//   byte 0-1   0x00 0x00
//   byte 2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
//              0x0E float64
//   byte 3     rank (number of dimensions)
//   byte 4..   rank uint32 dimensions, then the elements in row-major order.
//
// A file is treated as hostile. Before anything is allocated the reader checks the magic, the
// type code, the rank (1..kIdxMaxRank), that every dimension is > 0, the element count and byte
// size with overflow-checked arithmetic, a cap on the size (IdxOptions::max_bytes), and the
// declared size against the file: the file length for a raw file, the gzip trailer's ISIZE
// (uncompressed size mod 2^32) for a .gz. A gzip stream is then inflated in bounded chunks, so
// memory grows only with what the stream really yields. Missing data, data past the declared
// end, bytes after the gzip stream and corrupt compressed data are all errors.
//
// Gzip is recognised by its magic bytes (1f 8b), not by the file name. Only single-member gzip
// files are read (what gzip(1) writes); bytes after the first member are an error.
//
// Every failure throws nabla::Error; the message starts with "IDX <path>:", names the problem
// and, where it applies, the byte offset (in the uncompressed stream) and expected vs actual
// values, e.g.
//   "IDX t10k-images-idx3-ubyte.gz: data truncated at byte 7850 of 7840016 declared
//    (dims [10000, 28, 28])"
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace nabla::data {

constexpr int kIdxMaxRank = 4;

enum class IdxType : uint8_t {
  uint8 = 0x08,
  int8 = 0x09,
  int16 = 0x0B,
  int32 = 0x0C,
  float32 = 0x0D,
  float64 = 0x0E,
};

NABLA_API const char* idx_type_name(IdxType t);
NABLA_API size_t idx_type_size(IdxType t);

struct IdxOptions {
  // Largest accepted data size in bytes (not counting the header). The MNIST training images
  // are 47 MB; the default leaves room for much larger sets and stops absurd headers.
  uint64_t max_bytes = uint64_t{4} << 30;
};

// The decoded contents of one IDX file.
struct IdxArray {
  std::string path;
  IdxType type = IdxType::uint8;
  Shape dims;                  // every entry > 0
  std::vector<uint8_t> bytes;  // numel() * idx_type_size(type) bytes, converted to host order

  int64_t numel() const { return numel_of(dims); }
};

// Reads and validates an IDX file (raw or gzip). Does not need a Tensor backend.
NABLA_API IdxArray read_idx(const std::string& path, const IdxOptions& opts = {});

// An image file: uint8, rank 3 [N, rows, cols]. Returns float32 [N, 1, rows, cols] on the CPU
// with each pixel divided by 255, so values lie in [0, 1].
NABLA_API Tensor read_idx_images(const std::string& path, const IdxOptions& opts = {});

// A label file: an integer type (uint8, int8, int16, int32), rank 1 [N]. Every label must lie
// in [0, num_classes); the error names the index and value of the first that does not.
// Returns int64 [N] on the CPU.
NABLA_API Tensor read_idx_labels(const std::string& path, int64_t num_classes, const IdxOptions& opts = {});

// Checks the labels of an already-read array (same rules and messages as read_idx_labels)
// and returns them as int64. Does not need a Tensor backend.
NABLA_API std::vector<int64_t> idx_labels(const IdxArray& a, int64_t num_classes);

}  // namespace nabla::data
