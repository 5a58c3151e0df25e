#!/usr/bin/env python3
"""Checks an ONNX file gpu-mnist exported with onnx.checker, runs it with onnxruntime on the
first N images of an IDX image file (raw or gzipped), and prints the class probabilities and
predictions as JSON.

usage: onnx_check.py MODEL.onnx IMAGES-idx3-ubyte[.gz] N
"""
import gzip
import json
import struct
import sys

import numpy as np
import onnx
import onnxruntime as ort

model, images, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
onnx.checker.check_model(onnx.load(model), full_check=True)

raw = open(images, "rb").read()
if raw[:2] == b"\x1f\x8b":
    raw = gzip.decompress(raw)
_, count, rows, cols = struct.unpack(">IIII", raw[:16])
n = min(n, count)
x = np.frombuffer(raw, np.uint8, count=n * rows * cols, offset=16).reshape(n, rows * cols)
x = x.astype(np.float32) / np.float32(255.0)  # as the export's input description says

session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
(inp,), (out,) = session.get_inputs(), session.get_outputs()
(p,) = session.run([out.name], {inp.name: x})
print(json.dumps({
    "input": [inp.name, inp.shape],
    "output": [out.name, out.shape],
    "predictions": p.argmax(axis=1).tolist(),
    "probabilities": p.astype(float).ravel().tolist(),
}))
