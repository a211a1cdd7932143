#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

Small valid files and a few broken ones per target, so that libFuzzer starts from inputs that
reach deep into each reader. The output is committed; rerun this after changing it:
    python3 tests/fuzz/make_corpus.py
"""
import gzip
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def write(target: str, name: str, data: bytes) -> None:
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- IDX ------------------------------------------------------------------------------------------

def idx(type_code: int, dims, payload: bytes) -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


def gz(data: bytes) -> bytes:
    # mtime=0: the same bytes on every run.
    return gzip.compress(data, compresslevel=6, mtime=0)


images = idx(0x08, [3, 4, 5], bytes((i * 37) % 256 for i in range(60)))
labels = idx(0x08, [6], bytes([0, 1, 2, 9, 3, 4]))
write("idx", "images_u8_3x4x5", images)
write("idx", "images_u8_3x4x5.gz", gz(images))
write("idx", "labels_u8_6", labels)
write("idx", "labels_u8_6.gz", gz(labels))
write("idx", "labels_i16_4", idx(0x0B, [4], struct.pack(">4h", 0, 1, 7, 5)))
write("idx", "labels_i32_3", idx(0x0C, [3], struct.pack(">3i", 2, 0, 8)))
write("idx", "labels_i8_2", idx(0x09, [2], bytes([1, 0xFF])))
write("idx", "f32_2x2", idx(0x0D, [2, 2], struct.pack(">4f", 1.5, -2, 0, 3e38)))
write("idx", "f64_1x1x1x2", idx(0x0E, [1, 1, 1, 2], struct.pack(">2d", 1e-300, -7)))
write("idx", "bad_truncated", images[:30])
write("idx", "bad_trailing", labels + b"\xaa")
write("idx", "bad_rank5", idx(0x08, [1, 1, 1, 1, 1], b"\x07"))
write("idx", "bad_gzip_isize", gz(images)[:-4] + struct.pack("<I", 999))
write("idx", "bad_huge_dims", idx(0x0E, [60000, 28, 28, 1000], b"\x00" * 16))
write("idx", "bad_gzip_trailing", gz(labels) + b"\x00\x00")
write("idx", "bad_zlib_not_gzip", zlib.compress(labels))


# ---- safetensors ----------------------------------------------------------------------------------

def header_bytes(header: dict, pad: bool = True) -> bytes:
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return h


def st_file(tensors, metadata=None, crc=True) -> bytes:
    """tensors: list of (name, dtype, shape, raw bytes) in data order."""
    header, data, off = {}, b"", 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    meta = dict(metadata or {})
    if crc:
        meta["nabla.crc32c"] = "%08x" % crc32c(data)
    if meta:
        header = {"__metadata__": meta, **header}
    h = header_bytes(header)
    return struct.pack("<Q", len(h)) + h + data


w = struct.pack("<6f", *[0.5 * i for i in range(6)])
b = struct.pack("<3d", 1, -2, 3)
good = st_file([("fc.weight", "F32", [2, 3], w), ("fc.bias", "F64", [3], b),
                ("step", "I64", [], struct.pack("<q", 42)), ("idx", "I32", [2], struct.pack("<2i", 1, 2)),
                ("empty", "F32", [0, 4], b"")],
               {"format": "pt", "nabla.architecture": "{\"layers\":[\"Dense(3->2)\"]}"})
write("safetensors", "good_five_tensors", good)
write("safetensors", "good_no_crc", st_file([("x", "F32", [2], struct.pack("<2f", 1, 2))], crc=False))
write("safetensors", "good_empty", st_file([], crc=False))
bad_crc = bytearray(good)
bad_crc[-20] ^= 0xFF
write("safetensors", "bad_crc", bytes(bad_crc))
write("safetensors", "bad_truncated", good[:-5])
write("safetensors", "bad_len_huge", struct.pack("<Q", 1 << 40) + good[8:])
write("safetensors", "bad_terabyte", st_file([("t", "F64", [1 << 37], b"")], crc=False)[:200])
overlap = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
           "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}
h = header_bytes(overlap)
write("safetensors", "bad_overlap", struct.pack("<Q", len(h)) + h + b"\x00" * 8)


# ---- the header JSON alone (the json_metadata target adds the framing and 64 data bytes) ---------

def js(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


zeros64_crc = "%08x" % crc32c(b"\x00" * 64)
write("json_metadata", "good_one_f32_16", js({"w": {"dtype": "F32", "shape": [16], "data_offsets": [0, 64]}}))
write("json_metadata", "good_with_metadata", js({
    "__metadata__": {"nabla.crc32c": zeros64_crc, "format": "pt", "nabla.architecture": "{\"a\":[1,2]}"},
    "a": {"dtype": "F64", "shape": [2, 2], "data_offsets": [0, 32]},
    "b": {"dtype": "I32", "shape": [4, 2], "data_offsets": [32, 64]}}))
write("json_metadata", "good_i64_scalar_and_rest", js({
    "s": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]},
    "r": {"dtype": "F32", "shape": [2, 7], "data_offsets": [8, 64]}}))
write("json_metadata", "bad_crc_format", js({"__metadata__": {"nabla.crc32c": "xyz"},
                                              "w": {"dtype": "F32", "shape": [16], "data_offsets": [0, 64]}}))
write("json_metadata", "bad_duplicate_key",
      b'{"w":{"dtype":"F32","shape":[16],"data_offsets":[0,64]},"w":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}}')
write("json_metadata", "bad_unicode", '{"\u00e9\u4e2d":{"dtype":"F32","shape":[16],"data_offsets":[0,64]},"__metadata__":{"k":"\\ud83d\\ude00"}}'.encode())
write("json_metadata", "bad_nested_metadata", b'{"__metadata__":{"k":{"x":1}}}')
write("json_metadata", "bad_float_shape", b'{"w":{"dtype":"F32","shape":[1e400],"data_offsets":[0,64]}}')
write("json_metadata", "bad_negative", b'{"w":{"dtype":"BF16","shape":[-1],"data_offsets":[0,-64]}}')
write("json_metadata", "bad_deep", b"{\"w\":{\"shape\":" + b"[" * 200 + b"]" * 200 + b"}}")
write("json_metadata", "bad_big_number", b'{"w":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,64]}}')
