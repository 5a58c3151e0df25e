#!/usr/bin/env python3
"""gpu-mnist against NumPy and PyTorch on the same training, timed side by side from outside.

For each case every program trains twice, a short and a long run; the difference of the two wall
times over the difference of their steps is the time per step (or per epoch), so start-up, data
loading and the final evaluation cancel. The programs alternate, each measurement is repeated
(median), and the ratios are computed within this one run: absolute times move between
machines of one kind, ratios much less.

  python3 -m venv /tmp/compare && /tmp/compare/bin/pip install numpy torch
  cargo build --release
  /tmp/compare/bin/python compare/side_by_side.py            # all cases, 3 repeats, 2 threads
  /tmp/compare/bin/python compare/side_by_side.py --cases mnist --repeats 5 --json out.json

A program that is not installed (torch) is left out of the table, and said so.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FASHION = "/usr/share/datasets/fashion-mnist"

# name: (what, data, gpu-mnist options, mlp.py options, unit, short, long)
CASES = {
    "mnist": ("MNIST 784-128-10, full batch, gd", None,
              ["--hidden", "128", "--lr", "0.5"], ["--hidden", "128", "--lr", "0.5"], "iteration", 3, 33),
    "fashion": ("Fashion-MNIST 784-128-10, full batch, gd", FASHION,
                ["--hidden", "128", "--lr", "0.5", "--dataset", "fashion"], ["--hidden", "128", "--lr", "0.5"],
                "iteration", 3, 33),
    "deep": ("MNIST 784-256-128-10, full batch, gd", None,
             ["--hidden", "256,128", "--lr", "0.3"], ["--hidden", "256,128", "--lr", "0.3"], "iteration", 2, 17),
    "adam800": ("MNIST 784-800-10, batch 128, Adam", None,
                ["--hidden", "800", "--batch-size", "128", "--optimizer", "adam", "--lr", "0.001"],
                ["--hidden", "800", "--batch-size", "128", "--optimizer", "adam", "--lr", "0.001"], "epoch", 1, 4),
    "deepmini": ("MNIST 784-256-128-10, batch 128, Adam", None,
                 ["--hidden", "256,128", "--batch-size", "128", "--optimizer", "adam", "--lr", "0.001"],
                 ["--hidden", "256,128", "--batch-size", "128", "--optimizer", "adam", "--lr", "0.001"], "epoch", 1, 4),
}


def command(program, case, length, args, out):
    _, data, ours, theirs, unit, _, _ = CASES[case]
    count = ["--iterations" if unit == "iteration" else "--epochs", str(length)]
    if program == "gpu-mnist":
        extra = ["--data", data] if data else []
        return [args.gpu_mnist, "train", "--backend", "cpu", "--threads", str(args.threads), "--out", out,
                *ours, *count, *extra]
    extra = ["--data", data] if data else []
    return [sys.executable, os.path.join(HERE, "mlp.py"), "--framework", program, "--threads", str(args.threads),
            *theirs, *count, *extra]


def wall(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpu-mnist", default=os.path.join(ROOT, "target", "release", "gpu-mnist"))
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    programs = ["gpu-mnist", "numpy"]
    try:
        import torch  # noqa: F401
        programs.append("torch")
    except ImportError:
        print("torch is not installed in this Python: PyTorch is left out", file=sys.stderr)
    results = []
    out = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    for case in args.cases.split(","):
        what, data, _, _, unit, short, long = CASES[case]
        if data and not os.path.isdir(data):
            print(f"{case}: {data} is missing (apt-get install dataset-fashion-mnist): left out", file=sys.stderr)
            continue
        times = {prog: [] for prog in programs}
        for _ in range(args.repeats):
            for prog in programs:
                t_short = wall(command(prog, case, short, args, out))
                t_long = wall(command(prog, case, long, args, out))
                times[prog].append((t_long - t_short) / (long - short))
        per = {prog: statistics.median(ts) for prog, ts in times.items()}
        row = {"case": case, "what": what, "unit": unit, "seconds": per, "all": times}
        row["ratios"] = {prog: per["gpu-mnist"] / per[prog] for prog in programs if prog != "gpu-mnist"}
        results.append(row)
        ratios = ", ".join(f"{r:.2f}x {prog}'s" for prog, r in row["ratios"].items())
        cells = ", ".join(f"{prog} {s:.4f} s" for prog, s in per.items())
        print(f"{what}: per {unit}: {cells}; gpu-mnist takes {ratios} time", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "repeats": args.repeats, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
