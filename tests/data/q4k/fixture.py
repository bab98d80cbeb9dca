#!/usr/bin/python3
"""fixture.py - the expected q4_k result of tests/test_quant_k.c's fixed
matrix, from bench/q4k_quality.py's quantizer (the algorithm the C one
ports). Prints the FNV-1a 64-bit hash of the dequantized float32 weights
(little-endian bytes, row-major) and a few values; the test holds the hash.
The matrix is built in float32 exactly as the test builds it."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "bench"))
import q4k_quality  # noqa: E402

ROWS, COLS = 3, 512
f = np.float32


def matrix():
    w = np.zeros((ROWS, COLS), np.float32)
    for r in range(ROWS):
        for k in range(COLS):
            b = f((k * 7919 + r * 104729) % 2001 - 1000) / f(1000)
            j = (k // 32) % 8
            v = [b, b * f(0.5) + f(0.6), f(0), f(0.25), b * b * b * f(3), b - f(0.9), b * f(0.01),
                 b * (f(20) if k % 32 == 5 else f(1))][j]
            w[r, k] = v
    return w


def fnv1a(data):
    h = 0xcbf29ce484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


deq = q4k_quality.q4_k(matrix())
print(f"hash 0x{fnv1a(deq.astype('<f4').tobytes()):016x}")
print("w[0][0..3]", [float(v) for v in deq[0, :4]], "w[2][511]", float(deq[2, 511]))
