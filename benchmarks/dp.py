"""One private α step (DP-SGD) against one plain α step, side by side.

``python -m benchmarks.dp [--dag-nodes 8 32] [--batch 1 8 32] [--repeats 3] [--fused auto|on|off]
[--device cpu|cuda] [--quick] [--results DIR]``

Both steps start from the same model and batch: the plain step is the first-order rule
(one batched forward and backward, BatchNorm with batch statistics); the private step is
``PrivateAlphaGradient`` (per-example gradients by ``vmap(grad)``, clipping, noise). The
ratio private/plain is the cost of DP-SGD; the aim is within 3x. Median of ``--repeats``
timed calls after one warm-up, the two rules interleaved so that a busy machine slows both;
beside it the range of the ratios of the back-to-back pairs.
The table goes to stdout, the figures to ``DIR/dp-<time>.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import RESULTS, machine, resolve_device, synchronize, write_results
from fednas.config import parse_config
from fednas.data import dataset_from_config
from fednas.overrides import dag_nodes_option
from fednas.privacy import PrivateAlphaGradient
from fednas.search import FirstOrder, StepContext
from fednas.spaces import build_supernet


def time_steps(nodes: int, batch: int, repeats: int, fused: bool | None,
               device: torch.device | str = "cpu") -> dict[str, list[float]]:
    """Seconds of ``repeats`` plain and private α steps at P = ``nodes``, B = ``batch``, interleaved."""
    device = torch.device(device)
    cfg = parse_config({"dag-nodes": nodes, "alpha-batch-size": batch})
    data = dataset_from_config(cfg.data, 0)
    model = build_supernet(cfg.space, data.spec, 0, fused=fused).to(device)
    model.train()
    x, y = data.x[:batch].to(device), data.y[:batch].to(device)
    ctx = StepContext((x, y), None, cfg.search)
    rules = {"plain": FirstOrder(), "private": PrivateAlphaGradient(cfg.dp.dp_sgd_clip, cfg.dp.dp_sgd_noise_multiplier, seed=0)}
    times: dict[str, list[float]] = {name: [] for name in rules}
    for i in range(repeats + 1):
        for name, rule in rules.items():
            synchronize(device)
            t0 = time.perf_counter()
            rule(model, (x, y), ctx)
            synchronize(device)
            if i:  # the first call of each rule is a warm-up
                times[name].append(time.perf_counter() - t0)
    return times


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dp", description=__doc__.splitlines()[0])
    dag_nodes_option(parser, type=int, nargs="+", default=[8, 32], help="P values (default 8 32)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32], help="B values (default 1 8 32)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fused", choices=("auto", "on", "off"), default="auto",
                        help="supernet form: the config's default (auto), fused, or the per-edge reference")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (an error when torch sees no GPU)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: P 4, B 1 and 4, one timed call each")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSON results (default benchmarks/results)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    if args.quick:
        args.dag_nodes, args.batch, args.repeats = [4], [1, 4], 1
    if args.threads:
        torch.set_num_threads(args.threads)
    fused = {"auto": None, "on": True, "off": False}[args.fused]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, supernet fused={args.fused}, device {device}")
    print(f"{'P':>4} {'B':>4} {'plain s':>10} {'private s':>10} {'private/plain':>14} {'pairs (min-max)':>16}")
    rows: list[dict[str, Any]] = []
    for nodes in args.dag_nodes:
        for batch in args.batch:
            times = time_steps(nodes, batch, args.repeats, fused, device)
            plain, private = statistics.median(times["plain"]), statistics.median(times["private"])
            pairs = [b / a for a, b in zip(times["plain"], times["private"])]  # each timed back to back
            rows.append({"nodes": nodes, "batch": batch, "plain-s": plain, "private-s": private,
                         "ratio": private / plain, "pair-ratio-min": min(pairs), "pair-ratio-max": max(pairs),
                         "runs": args.repeats, "plain-all-s": times["plain"], "private-all-s": times["private"]})
            print(f"{nodes:>4} {batch:>4} {plain:>10.4f} {private:>10.4f} {private / plain:>13.2f}x "
                  f"{min(pairs):>6.2f}-{max(pairs):.2f}x", flush=True)
    payload = {"machine": machine(), "quick": args.quick, "device": str(device), "fused": args.fused, "rows": rows}
    print("results:", write_results("dp", payload, args.results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
