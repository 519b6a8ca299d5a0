"""``python -m benchmarks [supernet] [federation] [scaling] [all] [--device cpu|cuda] [--quick] [...]``.

- ``supernet``: forward, backward and the attack's inner step (forward + double backward),
  fused against reference, P x image size x batch size, with achieved GFLOP/s against the
  machine's peak (a large matmul and a convolution timed in the same run);
- ``federation``: a federated run through ``flwr run`` (1 Ray CPU) against the same work in
  a plain loop: the overhead ratio, start-up shown apart;
- ``scaling``: client rounds per minute with 1 and 2 Ray CPUs;
- ``all`` (the default): the three. ``federation`` and ``scaling`` together share their 1-CPU run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from benchmarks import federation, supernet
from benchmarks.common import RESULTS, int_list, machine, resolve_device, write_results
from fednas.overrides import DeprecatedOption, dag_nodes_option
from fednas.registry import SPACES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("what", nargs="*", default=["all"], choices=("supernet", "federation", "scaling", "all"),
                   help="which benchmarks (several allowed)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (an error when torch sees no GPU)")
    p.add_argument("--quick", action="store_true", help="a small grid and a 2-round federation (a smoke run)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for the supernet benchmark (default 1: on a shared 2-core machine a "
                        "second OpenMP thread mostly waits; try 2 on an idle one)")
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSON results (default benchmarks/results)")
    s = p.add_argument_group("supernet")
    s.add_argument("--space", default="dag", choices=tuple(SPACES))
    dag_nodes_option(s, type=int_list, default=[8, 16, 32, 64], help="P values (dag), e.g. 8,16,32,64")
    s.add_argument("--sizes", type=int_list, default=[8, 28], help="image sizes, e.g. 8,28")
    s.add_argument("--batches", type=int_list, default=[1, 8], help="batch sizes B, e.g. 1,8")
    s.add_argument("--modes", default="forward,backward,inner", help="comma-separated: forward,backward,inner")
    s.add_argument("--channels", type=int, default=8, help="channels C of every node")
    s.add_argument("--repeats", type=int, default=3, help="timed calls per form and case (after one warm-up)")
    s.add_argument("--ref-cap", type=float, default=60.0, help="skip the reference where a call would exceed this (s)")
    s.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory calls")
    s.add_argument("--no-flops", dest="flops", action="store_false",
                   help="skip the FLOP counting calls and the peak measurement")
    s.add_argument("--peak-size", type=int, default=2048,
                   help="n of the n x n float32 matmul (and the n/8-channel conv) timed for the machine's peak")
    f = p.add_argument_group("federation and scaling")
    f.add_argument("--clients", type=int, default=4)
    f.add_argument("--rounds", type=int, default=10)
    f.add_argument("--local-steps", type=int, default=10)
    f.add_argument("--fed-dag-nodes", type=int, default=8, help="P of the federated runs' dag supernet")
    f.add_argument("--fed-nodes", dest="fed_dag_nodes", type=int, action=DeprecatedOption, new="--fed-dag-nodes")
    f.add_argument("--gpus-per-client", type=float, default=0.5, help="with --device cuda")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.quick:
        args.dag_nodes, args.sizes, args.batches = [8, 16], [8], [1]
        args.repeats, args.ref_cap = 1, 20.0
        args.clients, args.rounds, args.local_steps = 2, 2, 2
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    what = {"supernet", "federation", "scaling"} if "all" in args.what else set(args.what)
    if "supernet" in what:
        info = machine()
        payload = supernet.run(args, device)
        print("results:", write_results(f"supernet-{args.space}", {"machine": info, "quick": args.quick, **payload},
                                       args.results))
    if what & {"federation", "scaling"}:
        info = machine()
        payload = federation.run(args, overhead="federation" in what, scaling="scaling" in what)
        print("results:", write_results("federation", {"machine": info, "quick": args.quick, **payload}, args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
