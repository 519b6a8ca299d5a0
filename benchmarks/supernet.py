"""Supernet speed: the fused form against the per-edge reference, side by side.

Three steps, all in train mode (BatchNorm on batch statistics, as in local search):

- ``forward``: the loss, with the autograd graph recorded;
- ``backward``: forward plus the gradient of the loss w.r.t. every parameter (θ and α);
- ``inner``: the attack's inner step: ``loss = ||∇_α CE(x) − target||²``, then ``∂loss/∂x``
  (a forward, a backward with ``create_graph`` and a double backward).

Both forms hold the same θ and α; calls alternate between them (fused first on even
repeats, reference first on odd ones) so that load from other processes hits both alike.
The reference is skipped where it would exceed ``--ref-cap`` seconds per call (estimated
from the previous P: time grows with the number of edges, P(P−1)/2). With ``--space darts``
there is one case per size and batch (the config's default cells; P is shown as 0).
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import PeakMemory, mb, median, table, timed
from fednas.config import parse_config
from fednas.spaces import InputSpec, build_supernet

log = logging.getLogger(__name__)
SIDES = ("fused", "reference")


@dataclass(frozen=True)
class Case:
    mode: str
    size: int
    batch: int
    nodes: int


def make_step(mode: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
              target: list[torch.Tensor]) -> Callable[[], Any]:
    """The closure one timed call runs."""
    if mode == "forward":
        return lambda: F.cross_entropy(model(x), y)
    if mode == "backward":
        params = list(model.parameters())
        return lambda: torch.autograd.grad(F.cross_entropy(model(x), y), params)
    if mode == "inner":
        alphas, xg = model.arch_parameters(), x.clone().requires_grad_(True)

        def inner() -> tuple[torch.Tensor, ...]:
            grads = torch.autograd.grad(F.cross_entropy(model(xg), y), alphas, create_graph=True)
            match = sum(((g - t) ** 2).sum() for g, t in zip(grads, target))
            return torch.autograd.grad(match, xg)

        return inner
    raise ValueError(f"unknown mode {mode!r}; choose forward, backward or inner")


def _trim_heap() -> None:
    """Give freed heap memory back to the OS so that the next RSS peak is this call's own."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _fix_mmap_threshold() -> None:
    # glibc raises its mmap threshold after large frees; big tensors would then stay in the
    # heap and RSS would no longer fall between calls. Pin it (M_MMAP_THRESHOLD = -3).
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)
    except OSError:
        pass


def peak_memory(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak memory one call adds: device memory on CUDA, else process RSS sampled every ms."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    _trim_heap()
    with PeakMemory(interval=0.001) as mem:
        fn()
    return mem.peak - mem.baseline


def build_pair(space: str, nodes: int, channels: int, size: int, device: torch.device,
               activation: str = "elu") -> dict[str, torch.nn.Module]:
    """Fused and reference supernets with the same seeded θ and α, in train mode."""
    keys = {"space": space, "channels": channels, "activation": activation}
    if space == "dag":
        keys["dag-nodes"] = nodes  # darts: the default cells (layers, cell-nodes) of the config
    cfg = parse_config(keys).space
    spec = InputSpec(channels=1, image_size=size, num_classes=10)
    models = {side: build_supernet(cfg, spec, seed=0, fused=side == "fused").to(device) for side in SIDES}
    models["reference"].load_state_dict(models["fused"].state_dict())
    return {side: m.train() for side, m in models.items()}


def run_case(case: Case, args: Any, device: torch.device, ref_estimate: float | None) -> dict[str, Any]:
    """Time (and measure the memory of) both forms on one case."""
    models = build_pair(args.space, case.nodes, args.channels, case.size, device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(case.batch, 1, case.size, case.size, generator=g).to(device)
    y = torch.randint(0, 10, (case.batch,), generator=g).to(device)
    target = [torch.randn(a.shape, generator=g).to(device) for a in models["fused"].arch_parameters()]
    steps = {side: make_step(case.mode, m, x, y, target) for side, m in models.items()}
    row: dict[str, Any] = {"mode": case.mode, "size": case.size, "batch": case.batch, "nodes": case.nodes}
    active = list(SIDES)
    if ref_estimate is not None and ref_estimate > args.ref_cap:
        active.remove("reference")
        row["note"] = f"reference skipped (est. {ref_estimate:.0f} s > cap {args.ref_cap:.0f} s)"
    times: dict[str, list[tuple[float, float]]] = {side: [] for side in active}
    for side in list(active):  # warm-up; a reference call over the cap is its only one
        t = timed(steps[side], device)
        if side == "reference" and t[0] > args.ref_cap:
            times[side].append(t)
            active.remove(side)
            row["note"] = f"reference ran once ({t[0]:.0f} s > cap {args.ref_cap:.0f} s)"
    for rep in range(args.repeats):
        for side in (active if rep % 2 == 0 else active[::-1]):
            times[side].append(timed(steps[side], device))
    for side in SIDES:
        runs = times.get(side, [])
        row[f"{side}-s"] = median([wall for wall, _ in runs])
        row[f"{side}-cpu-s"] = median([cpu for _, cpu in runs]) if device.type == "cpu" else None
        row[f"{side}-runs"] = len(runs)
    if args.memory:
        for side in times:
            row[f"{side}-peak-mb"] = mb(peak_memory(steps[side], device))
    if row["reference-s"] and row["fused-s"]:
        row["ratio"] = row["reference-s"] / row["fused-s"]
    if row["reference-cpu-s"] and row["fused-cpu-s"]:
        row["cpu-ratio"] = row["reference-cpu-s"] / row["fused-cpu-s"]
    return row


def run(args: Any, device: torch.device) -> dict[str, Any]:
    """Every case of the grid; prints one table per mode and returns the rows."""
    _fix_mmap_threshold()
    rows: list[dict[str, Any]] = []
    for mode in args.modes:
        for size in args.sizes:
            for batch in args.batches:
                last: dict[str, Any] | None = None
                for nodes in sorted(args.dag_nodes) if args.space == "dag" else [0]:
                    estimate = None
                    if last is not None and last.get("reference-s"):
                        estimate = last["reference-s"] * (nodes * (nodes - 1)) / (last["nodes"] * (last["nodes"] - 1))
                    row = run_case(Case(mode, size, batch, nodes), args, device, estimate)
                    print(_line(row), flush=True)
                    rows.append(row)
                    last = row
        print(f"\n[{mode}] {args.space} supernet, C={args.channels}, {device.type}, "
              f"{torch.get_num_threads()} thread(s): wall seconds per call (median); ratio = reference / fused, "
              f"in wall and in process CPU time")
        print(table(([r["size"], r["batch"], r["nodes"], r["fused-s"], r["reference-s"], r.get("ratio"),
                      r.get("cpu-ratio"), r.get("fused-peak-mb"), r.get("reference-peak-mb"), r.get("note", "")]
                     for r in rows if r["mode"] == mode),
                    ["size", "B", "P", "fused s", "ref s", "ratio", "cpu ratio", "fused MB", "ref MB", "note"]) + "\n")
    return {"space": args.space, "channels": args.channels, "device": device.type, "repeats": args.repeats,
            "ref-cap-s": args.ref_cap, "rows": rows}


def _line(r: dict[str, Any]) -> str:
    ratio = f"{r['ratio']:.1f}x (cpu {r['cpu-ratio']:.1f}x)" if r.get("cpu-ratio") else (
        f"{r['ratio']:.1f}x" if r.get("ratio") else "-")
    ref = f"{r['reference-s']:.3f}s" if r.get("reference-s") else "-"
    return (f"  {r['mode']:8s} {r['size']:2d}x{r['size']:<2d} B={r['batch']:<2d} P={r['nodes']:<3d} "
            f"fused {r['fused-s']:.3f}s  reference {ref}  {ratio}  {r.get('note', '')}")
