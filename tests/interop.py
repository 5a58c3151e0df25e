#!/usr/bin/env python3
"""Reads a gpu-mnist model with safetensors + NumPy only, and prints its class probabilities and
predictions for the first N images of an IDX image file (raw or gzipped) as JSON.

usage: interop.py MODEL.safetensors IMAGES-idx3-ubyte[.gz] N
"""
import gzip
import json
import struct
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

model, images, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = load_file(model)
with safe_open(model, framework="numpy") as f:
    meta = f.metadata()

raw = open(images, "rb").read()
if raw[:2] == b"\x1f\x8b":
    raw = gzip.decompress(raw)
_, count, rows, cols = struct.unpack(">IIII", raw[:16])
x = np.frombuffer(raw, np.uint8, count=n * rows * cols, offset=16).reshape(n, rows * cols)
x = x.astype(np.float32) / np.float32(255.0)  # as the metadata's "input" says

act = meta["activation"]


def activation(z):
    if act == "relu":
        return np.maximum(z, 0)
    if act == "sigmoid":
        return 1 / (1 + np.exp(-z))
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))  # elu


# "hidden" lists the hidden widths ("128", or "256,128"): layers w1, b1, ..., then the output layer.
layers = len(meta["hidden"].split(",")) + 1
a = x
for l in range(1, layers + 1):
    z = a @ t[f"w{l}"] + t.get(f"b{l}", np.float32(0))
    a = activation(z) if l < layers else z
z2 = a
e = np.exp(z2 - z2.max(axis=1, keepdims=True))
p = e / e.sum(axis=1, keepdims=True)
print(json.dumps({"predictions": p.argmax(axis=1).tolist(), "probabilities": p.astype(float).ravel().tolist()}))
