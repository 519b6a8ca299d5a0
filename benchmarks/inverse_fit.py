"""``python -m benchmarks.inverse_fit PAIRS.pt [--sizes 1024,2048,4096] [--results DIR]``:
how well the learned inverse fits its own kind of data, as its training set grows.

It reads a pairs file from the ADRA cache (``pairs-<key>.pt`` under ``$FEDNAS_CACHE/adra``,
written when a round's inverse is made; the attack's log names the folder), keeps the last
tenth of the pairs as a test set no size trains on, and for each size trains the inverse
exactly as the attack does (``attacks.adra.inverse.train_inverse``) on the first that many of
the rest. Per local step it prints the test pairs' label accuracy, pixel MSE and PSNR, beside
the null that knows only the true class (the training images' class mean).

It answers one question before a costlier run: is the inverse limited by its pairs (the
figures still climb with each doubling, so more pairs would help) or by what the update holds
(they have flattened). Nothing of a client is read: pairs are the attacker's own.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from attacks.adra.inverse import InverseSettings, read_pairs, train_inverse
from attacks.adra.pairs import Pairs
from benchmarks.common import RESULTS, int_list, machine, write_results


def load_pairs(path: Path) -> Pairs:
    """A cached pairs file (``attacks.adra.inverse.read_pairs``); a clear error when it is not one."""
    if not path.is_file():
        raise SystemExit(f"error: no pairs file {path}")
    try:
        return read_pairs(path)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None


def step_figures(net, pairs: Pairs) -> dict[str, list[float]]:
    """Per local step on ``pairs``: label accuracy, pixel MSE and PSNR (B = 1: the outputs are in step order)."""
    with torch.no_grad():
        images, logits = net(pairs.features)
    mse = ((images - pairs.images) ** 2).flatten(3).mean(-1).mean(-1)  # (N, K)
    acc = (logits.argmax(-1) == pairs.labels).float().mean(-1)  # (N, K)
    return {"label-acc": acc.mean(0).tolist(), "mse": mse.mean(0).tolist(),
            "psnr": (10 * torch.log10(1 / mse.clamp_min(1e-12))).mean(0).tolist()}


def class_mean_null(train: Pairs, test: Pairs, classes: int) -> dict[str, float]:
    """The class mean of the training images, read at each test image's true class."""
    x = train.images.flatten(0, 2)
    y = train.labels.flatten()
    means = torch.stack([x[y == c].mean(0) if (y == c).any() else x.mean(0) for c in range(classes)])
    guess = means[test.labels]
    mse = ((guess - test.images) ** 2).flatten(3).mean(-1).mean(-1)
    return {"mse": float(mse.mean()), "psnr": float((10 * torch.log10(1 / mse.clamp_min(1e-12))).mean())}


def subset(p: Pairs, rows: torch.Tensor) -> Pairs:
    return Pairs(p.features[rows], p.images[rows], p.labels[rows])


def run(path: Path, sizes: list[int], settings: InverseSettings, classes: int) -> dict:
    pairs = load_pairs(path)
    n, (k, b) = len(pairs), pairs.labels.shape[1:]
    if b != 1:
        raise SystemExit(f"error: {path} holds B = {b} pairs; the fit curve reads B = 1 (outputs in step order)")
    n_test = max(1, n // 10)
    test, pool = subset(pairs, torch.arange(n - n_test, n)), subset(pairs, torch.arange(n - n_test))
    if max(sizes) > len(pool):
        raise SystemExit(f"error: --sizes up to {max(sizes)}, but {path} has {len(pool)} pairs outside its test tenth")
    null = class_mean_null(pool, test, classes)
    rows = []
    for size in sorted(sizes):
        t0, c0 = time.perf_counter(), time.process_time()
        net, figures = train_inverse(subset(pool, torch.arange(size)), k, b, tuple(pairs.images.shape[3:]),
                                     classes, settings)
        net.eval()
        rows.append({"pairs": size, **step_figures(net, test), "val-label-acc": figures["val-label-acc"],
                     "seconds": time.perf_counter() - t0, "cpu-seconds": time.process_time() - c0})
        r = rows[-1]
        print(f"{size:6d} pairs: label acc by step {[round(a, 2) for a in r['label-acc']]} "
              f"(mean {sum(r['label-acc']) / k:.3f}), PSNR by step {[round(p, 1) for p in r['psnr']]} dB "
              f"(class-mean null {null['psnr']:.1f} dB), {r['cpu-seconds']:.0f} CPU s", flush=True)
    return {"pairs-file": path.name, "test-pairs": n_test, "steps": k, "null-class-mean": null, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.inverse_fit", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("pairs", type=Path, help="a pairs-<key>.pt file of the ADRA cache")
    p.add_argument("--sizes", type=int_list, default=[1024, 2048, 4096],
                   help="training-set sizes, comma-separated (each at most nine tenths of the file)")
    p.add_argument("--hidden", type=int, default=InverseSettings.hidden)
    p.add_argument("--epochs", type=int, default=InverseSettings.epochs)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    sizes = args.sizes
    if not sizes or min(sizes) < 16:
        p.error(f"--sizes must hold sizes of at least 16 pairs, got {','.join(map(str, sizes))}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    settings = InverseSettings(pairs=max(sizes), epochs=args.epochs, hidden=args.hidden)
    info = machine()
    out = run(args.pairs, sizes, settings, args.classes)
    path = write_results("inverse-fit", {"machine": info, "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, **out},
                         args.results)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
