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

z1 = x @ t["w1"] + t.get("b1", np.float32(0))
act = meta["activation"]
if act == "relu":
    a1 = np.maximum(z1, 0)
elif act == "sigmoid":
    a1 = 1 / (1 + np.exp(-z1))
else:  # elu
    a1 = np.where(z1 > 0, z1, np.expm1(np.minimum(z1, 0)))
z2 = a1 @ t["w2"] + t.get("b2", np.float32(0))
e = np.exp(z2 - z2.max(axis=1, keepdims=True))
p = e / e.sum(axis=1, keepdims=True)
print(json.dumps({"predictions": p.argmax(axis=1).tolist(), "probabilities": p.astype(float).ravel().tolist()}))
