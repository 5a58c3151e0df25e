#!/usr/bin/env python3
"""Trains a small nn.Sequential of nn.Linear layers in PyTorch on the first 6,000 MNIST training
images, saves its state dict with safetensors.torch.save_file (PyTorch's layout: `0.weight`
[out, in], `0.bias`, `2.weight`, ...), and prints as JSON its probabilities and predictions for
the first N test images and how many of all of them it reads right.

usage: torch_model.py DATA_DIR OUT.safetensors relu|sigmoid|elu bias|nobias N
"""
import gzip
import json
import struct
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

data, out, act, bias, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "bias", int(sys.argv[5])


def idx(path):
    raw = gzip.decompress(open(path, "rb").read())
    dims = raw[3]
    shape = struct.unpack(">" + "I" * dims, raw[4 : 4 + 4 * dims])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


x_train = torch.tensor(idx(f"{data}/train-images-idx3-ubyte.gz")[:6000].reshape(-1, 784) / 255.0, dtype=torch.float32)
y_train = torch.tensor(idx(f"{data}/train-labels-idx1-ubyte.gz")[:6000].astype(np.int64))
x_test = torch.tensor(idx(f"{data}/t10k-images-idx3-ubyte.gz").reshape(-1, 784) / 255.0, dtype=torch.float32)
y_test = torch.tensor(idx(f"{data}/t10k-labels-idx1-ubyte.gz").astype(np.int64))

torch.manual_seed(0)
torch.set_num_threads(2)
Act = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "elu": nn.ELU}[act]
model = nn.Sequential(nn.Linear(784, 64, bias=bias), Act(), nn.Linear(64, 32, bias=bias), Act(), nn.Linear(32, 10, bias=bias))
opt = torch.optim.Adam(model.parameters(), lr=2e-3)
for epoch in range(3):
    for i in torch.randperm(6000).split(128):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x_train[i]), y_train[i]).backward()
        opt.step()
save_file(model.state_dict(), out)

with torch.no_grad():
    p = torch.softmax(model(x_test), dim=1)
print(json.dumps({
    "tensors": sorted(model.state_dict().keys()),
    "correct": int((p.argmax(1) == y_test).sum()),
    "predictions": p[:n].argmax(1).tolist(),
    "probabilities": p[:n].double().ravel().tolist(),
}))
