#!/usr/bin/env python3
"""The training gpu-mnist does, written the way its users write it in NumPy or PyTorch.

784 -> H1 [-> H2 ...] -> 10, ReLU (or sigmoid/ELU) hidden layers, softmax + cross-entropy,
float32, He-normal init (Xavier on the output layer and under sigmoid), biases 0:
  * full batch: `--iterations K` steps of gradient descent over every training image;
  * mini-batches: `--epochs E` of shuffled batches of `--batch-size B`, plain descent or Adam,
    with the test set evaluated after every epoch (as `gpu-mnist train` reports each epoch).
The NumPy version is the classic "MLP from scratch" (explicit forward and backward passes);
the PyTorch version is idiomatic PyTorch (nn.Sequential, autograd, torch.optim).

Prints one JSON line: training seconds (measured inside), steps, test accuracy. For timing two
programs fairly, run them from outside with compare/side_by_side.py.
"""
import argparse
import gzip
import json
import os
import struct
import time

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--framework", choices=["numpy", "torch"], required=True)
p.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "mnist"),
               help="a folder with the four *-ubyte.gz IDX files (MNIST or Fashion-MNIST)")
p.add_argument("--hidden", default="128", help="hidden widths, comma-separated: 800, or 256,128")
p.add_argument("--act", choices=["relu", "sigmoid", "elu"], default="relu")
p.add_argument("--iterations", type=int, help="full-batch steps")
p.add_argument("--epochs", type=int, help="epochs of mini-batches (with --batch-size)")
p.add_argument("--batch-size", type=int)
p.add_argument("--optimizer", choices=["gd", "adam"], default="gd")
p.add_argument("--lr", type=float, default=0.5)
p.add_argument("--samples", type=int, default=60000)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--seed", type=int, default=0)
args = p.parse_args()
if (args.iterations is None) == (args.epochs is None) or (args.epochs is not None and not args.batch_size):
    p.error("give --iterations (full batch) or --epochs with --batch-size")

# The thread count must be set before NumPy's BLAS (or PyTorch) starts.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)
import numpy as np  # noqa: E402


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims[0], -1)


def load(folder, n):
    x = idx(os.path.join(folder, "train-images-idx3-ubyte.gz"))[:n].astype(np.float32) / 255.0
    y = idx(os.path.join(folder, "train-labels-idx1-ubyte.gz"))[:n, 0].astype(np.int64)
    xt = idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    yt = idx(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"))[:, 0].astype(np.int64)
    return x, y, xt, yt


X, Y, XT, YT = load(args.data, args.samples)
WIDTHS = [X.shape[1]] + [int(h) for h in args.hidden.split(",")] + [10]
rng = np.random.default_rng(args.seed)


def init_weights():
    ws = []
    for l, (fan_in, fan_out) in enumerate(zip(WIDTHS, WIDTHS[1:])):
        hidden = l < len(WIDTHS) - 2
        std = np.sqrt(2.0 / fan_in) if hidden and args.act != "sigmoid" else np.sqrt(2.0 / (fan_in + fan_out))
        ws.append((rng.standard_normal((fan_in, fan_out)) * std).astype(np.float32))
    return ws


def batches(epoch, n):
    order = np.random.default_rng(args.seed * 1000 + epoch).permutation(n)
    return [order[i:i + args.batch_size] for i in range(0, n, args.batch_size)]


def run_numpy():
    act = {"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
           "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0)))}[args.act]
    dact = {"relu": lambda a: (a > 0).astype(np.float32), "sigmoid": lambda a: a * (1 - a),
            "elu": lambda a: np.where(a > 0, 1, a + 1).astype(np.float32)}[args.act]
    params = [(w, np.zeros(w.shape[1], np.float32)) for w in init_weights()]
    moments = [[np.zeros_like(t) for t in layer] for layer in params for _ in range(2)]
    step = [0]

    def forward(x):
        acts = [x]
        for l, (w, b) in enumerate(params):
            z = acts[-1] @ w + b
            acts.append(act(z) if l < len(params) - 1 else z)
        z = acts[-1] - acts[-1].max(axis=1, keepdims=True)
        e = np.exp(z)
        return acts, e / e.sum(axis=1, keepdims=True)

    def train_step(x, y):
        acts, probs = forward(x)
        dz = probs
        dz[np.arange(len(y)), y] -= 1
        dz /= len(y)
        grads = []
        for l in reversed(range(len(params))):
            w, _ = params[l]
            grads.append((acts[l].T @ dz, dz.sum(axis=0)))
            if l > 0:
                dz = (dz @ w.T) * dact(acts[l])
        grads.reverse()
        step[0] += 1
        for l, (g_w, g_b) in enumerate(grads):
            for t, (p_, g) in enumerate(zip(params[l], (g_w, g_b))):
                if args.optimizer == "gd":
                    p_ -= args.lr * g
                else:
                    m, v = moments[2 * l][t], moments[2 * l + 1][t]
                    m *= 0.9
                    m += 0.1 * g
                    v *= 0.999
                    v += 0.001 * g * g
                    mh, vh = m / (1 - 0.9 ** step[0]), v / (1 - 0.999 ** step[0])
                    p_ -= args.lr * mh / (np.sqrt(vh) + 1e-8)

    def accuracy():
        return float((forward(XT)[1].argmax(axis=1) == YT).mean())

    return train_step, accuracy, lambda i: (X[i], Y[i]), (X, Y)


def run_torch():
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    act = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "elu": torch.nn.ELU}[args.act]
    layers = []
    for l, w in enumerate(init_weights()):
        lin = torch.nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.zero_()
        layers += [lin] + ([act()] if l < len(WIDTHS) - 2 else [])
    model = torch.nn.Sequential(*layers)
    opt = (torch.optim.SGD if args.optimizer == "gd" else torch.optim.Adam)(model.parameters(), lr=args.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    x_all, y_all, xt, yt = (torch.from_numpy(a) for a in (X, Y, XT, YT))

    def train_step(x, y):
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    def accuracy():
        with torch.no_grad():
            return float((model(xt).argmax(dim=1) == yt).float().mean())

    return train_step, accuracy, lambda i: (x_all[i], y_all[i]), (x_all, y_all)


train_step, accuracy, rows, everything = run_numpy() if args.framework == "numpy" else run_torch()
start = time.perf_counter()
if args.iterations is not None:
    steps = args.iterations
    for _ in range(steps):
        train_step(*everything)
    acc = accuracy()
else:
    steps = 0
    for epoch in range(args.epochs):
        for b in batches(epoch, len(X)):
            train_step(*rows(b))
            steps += 1
        acc = accuracy()
seconds = time.perf_counter() - start
print(json.dumps({"framework": args.framework, "layers": WIDTHS, "steps": steps, "seconds": seconds,
                  "test_accuracy": acc, "threads": args.threads}))
