#!/usr/bin/env python3
"""Interop check for tests/safetensors_test.cpp (SafetensorsInterop.PythonReadsAndWrites).

    safetensors_interop.py FROM_NABLA FROM_PYTHON

Reads FROM_NABLA (written by nabla::save_safetensors) with the reference `safetensors` package
and compares every tensor, dtype, shape and the metadata with what the C++ test wrote; then
writes FROM_PYTHON with safetensors.numpy.save_file for the C++ test to read. Exits 0 when all
matches, 1 with a list of differences otherwise. The values here and in the C++ test must agree.
"""
import re
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file


def expected_from_nabla():
    i12 = np.arange(12)
    return {
        "f32": ((i12 - 5) * 0.375).astype(np.float32).reshape(3, 4),
        "f64": (i12 / 3.0 - 1).astype(np.float64).reshape(2, 3, 2),
        "i32": ((np.arange(5) - 2) * 123456789).astype(np.int32),
        "i64": np.array([[1, -2], [3, -4]], dtype=np.int64) * 1_000_000_000_000,
        "scalar": np.array(2.5, dtype=np.float64),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


EXPECTED_METADATA = {"arch": '{"layers": [784, 10], "name": "mlp"}', "note": "h\u00e9llo \"quoted\"\n"}


def from_python():
    return {
        "py.f32": np.arange(6, dtype=np.float32).reshape(2, 3) * np.float32(-0.5),
        "py.f64": np.array([np.pi, np.e, -0.0, 1e300], dtype=np.float64),
        "py.i32": np.array([-2**31, 2**31 - 1, 0], dtype=np.int32),
        "py.i64": np.array([[-2**63, 2**63 - 1]], dtype=np.int64),
        "py.scalar": np.array(7, dtype=np.int64),
        "py.empty": np.zeros((2, 0), dtype=np.float64),
    }


def main():
    src, dst = sys.argv[1], sys.argv[2]
    problems = []
    got = load_file(src)
    want = expected_from_nabla()
    if set(got) != set(want):
        problems.append(f"tensor names: got {sorted(got)}, want {sorted(want)}")
    for name, w in want.items():
        g = got.get(name)
        if g is None:
            continue
        if g.dtype != w.dtype or g.shape != w.shape:
            problems.append(f"{name}: got {g.dtype} {g.shape}, want {w.dtype} {w.shape}")
        elif not np.array_equal(g, w):
            problems.append(f"{name}: values differ: got {g.tolist()}, want {w.tolist()}")
    with safe_open(src, framework="np") as f:
        meta = dict(f.metadata() or {})
    for key in ("nabla.crc32c", "nabla.header_crc32c"):
        crc = meta.pop(key, None)
        if crc is None or not re.fullmatch(r"[0-9a-f]{8}", crc):
            problems.append(f"metadata {key}: got {crc!r}, want 8 hex digits")
    if meta != EXPECTED_METADATA:
        problems.append(f"metadata: got {meta!r}, want {EXPECTED_METADATA!r}")

    save_file(from_python(), dst, metadata={"from": "python", "framework": "numpy"})

    if problems:
        print("\n".join(problems))
        return 1
    print(f"ok: {len(got)} tensors read, {len(from_python())} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
