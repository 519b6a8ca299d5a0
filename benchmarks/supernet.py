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

Achieved FLOP/s: each form's step is run once more under a FLOP counter (:func:`count_flops`)
and its count divided by the median wall time; the machine's peak is measured in the same
run, same thread count, as the best of a few calls of a large float32 matmul and a
convolution (:func:`measure_peak`). ``of peak`` = achieved / the higher of the two peaks.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

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


def _transposed(shape: Any) -> list[int]:
    return [shape[1], shape[0], *shape[2:]]


def _conv_backward_flop(grad_out_shape: Any, x_shape: Any, w_shape: Any, _bias: Any, _stride: Any, _padding: Any,
                        _dilation: Any, transposed: bool, _output_padding: Any, groups: int, output_mask: Any,
                        out_shape: Any = None, **_: Any) -> int:
    """torch's convolution-backward formula with the weight gradient divided by ``groups``.

    torch (2.14) counts the weight gradient of a grouped convolution as a dense one, ``groups``
    times too many: the fused dag backward step at P = 8, 28x28 would read 7.5x its count.
    """
    flops = 0
    if output_mask[0]:  # grad_input: a transposed convolution of grad_out by the weight
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:  # grad_weight: a convolution of the input by grad_out, per group
        a, b = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += conv_flop_count(_transposed(a), _transposed(b), _transposed(out_shape[1])) // groups
    return flops


class _GlobalOnly:
    """Stands in for FlopCounterMode's module tracker, which attributes FLOPs to modules."""

    # The tracker's backward hooks make ``autograd.grad(..., inputs)`` fail ("A leaf node was
    # passed to _will_engine_execute_node"), and the inner step is exactly such a call.
    parents = {"Global"}

    def __enter__(self) -> _GlobalOnly:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn``: its matrix products and convolutions, forward and backward.

    ``torch.utils.flop_counter`` counts a multiply-add as 2 FLOPs in ``mm``, ``addmm``, ``bmm``,
    convolutions and their backward (double backward included, as the ops it runs), with the
    weight gradient of grouped convolutions corrected (:func:`_conv_backward_flop`). It leaves out
    elementwise work (activations, BatchNorm, softmax, bias adds, the reductions of the
    mixture): the achieved rate is of the arithmetic a CPU peak is measured on, a lower bound
    of all the work done. ``fn`` is run once, untimed.
    """
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop})
    counter.mod_tracker = _GlobalOnly()  # type: ignore[assignment]
    with counter:
        fn()
    return counter.get_total_flops()


def measure_peak(device: torch.device, size: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """The machine's float32 GFLOP/s now: the best of ``repeats`` calls of two dense ops.

    A ``size`` x ``size`` matmul, and a 3x3 convolution (padding 1) of ``size/8`` channels on a
    ``size/32`` square image, batch 1 (at 2048: a 4096 x 2304 x 256 product after im2col, as
    compute-bound as the matmul). Both run with the current torch thread count; their FLOPs are
    counted by :func:`count_flops`, as the supernet's steps are. Best-of, not median: the peak is
    what the machine can do, and other work on it only ever slows a call down.
    """
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=g).to(device) for _ in range(2))
    channels, side = max(size // 8, 1), max(size // 32, 3)
    x = torch.randn(1, channels, side, side, generator=g).to(device)
    w = torch.randn(channels, channels, 3, 3, generator=g).to(device)
    ops = {"matmul": (lambda: a @ b, f"{size}x{size} @ {size}x{size}"),
           "conv": (lambda: F.conv2d(x, w, padding=1), f"1x{channels}x{side}x{side} * {channels}x{channels}x3x3")}
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "repeats": repeats}
    for name, (op, shape) in ops.items():
        flops = count_flops(op)
        timed(op, device)  # warm-up: first-call allocation and kernel selection
        best = min(timed(op, device)[0] for _ in range(repeats))
        out[name] = {"shape": shape, "flops": flops, "best-s": best, "gflops": flops / best / 1e9}
    out["peak-gflops"] = max(out["matmul"]["gflops"], out["conv"]["gflops"])
    return out


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


def run_case(case: Case, args: Any, device: torch.device, ref_estimate: float | None,
             peak_gflops: float | None = None) -> dict[str, Any]:
    """Time (and measure the memory and the achieved FLOP/s of) both forms on one case."""
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
    if args.flops:
        for side in active:  # a reference over the cap is not run again to be counted
            row[f"{side}-flops"] = flops = count_flops(steps[side])
            row[f"{side}-gflops"] = gflops = flops / row[f"{side}-s"] / 1e9
            if peak_gflops:
                row[f"{side}-of-peak"] = gflops / peak_gflops
    if row["reference-s"] and row["fused-s"]:
        row["ratio"] = row["reference-s"] / row["fused-s"]
    if row["reference-cpu-s"] and row["fused-cpu-s"]:
        row["cpu-ratio"] = row["reference-cpu-s"] / row["fused-cpu-s"]
    return row


def run(args: Any, device: torch.device) -> dict[str, Any]:
    """Every case of the grid; prints one table per mode and returns the rows."""
    _fix_mmap_threshold()
    peak = measure_peak(device, args.peak_size) if args.flops else None
    if peak:
        print(f"peak, {device.type}, {peak['threads']} thread(s), best of {peak['repeats']}: matmul "
              f"{peak['matmul']['shape']} {peak['matmul']['gflops']:.1f} GFLOP/s, conv {peak['conv']['shape']} "
              f"{peak['conv']['gflops']:.1f} GFLOP/s", flush=True)
    rows: list[dict[str, Any]] = []
    for mode in args.modes:
        for size in args.sizes:
            for batch in args.batches:
                last: dict[str, Any] | None = None
                for nodes in sorted(args.dag_nodes) if args.space == "dag" else [0]:
                    estimate = None
                    if last is not None and last.get("reference-s"):
                        estimate = last["reference-s"] * (nodes * (nodes - 1)) / (last["nodes"] * (last["nodes"] - 1))
                    row = run_case(Case(mode, size, batch, nodes), args, device, estimate,
                                   peak["peak-gflops"] if peak else None)
                    print(_line(row), flush=True)
                    rows.append(row)
                    last = row
        print(f"\n[{mode}] {args.space} supernet, C={args.channels}, {device.type}, "
              f"{torch.get_num_threads()} thread(s): wall seconds per call (median); ratio = reference / fused, "
              f"in wall and in process CPU time; GF/s = counted matmul/conv GFLOP per median wall second, "
              f"of peak = fused GF/s / peak")
        print(table(([r["size"], r["batch"], r["nodes"], r["fused-s"], r["reference-s"], r.get("ratio"),
                      r.get("cpu-ratio"), r.get("fused-peak-mb"), r.get("reference-peak-mb"), r.get("fused-gflops"),
                      r.get("reference-gflops"), r.get("fused-of-peak"), r.get("note", "")]
                     for r in rows if r["mode"] == mode),
                    ["size", "B", "P", "fused s", "ref s", "ratio", "cpu ratio", "fused MB", "ref MB", "fused GF/s",
                     "ref GF/s", "of peak", "note"]) + "\n")
    return {"space": args.space, "channels": args.channels, "device": device.type, "repeats": args.repeats,
            "ref-cap-s": args.ref_cap, "peak": peak, "rows": rows}


def _line(r: dict[str, Any]) -> str:
    ratio = f"{r['ratio']:.1f}x (cpu {r['cpu-ratio']:.1f}x)" if r.get("cpu-ratio") else (
        f"{r['ratio']:.1f}x" if r.get("ratio") else "-")
    ref = f"{r['reference-s']:.3f}s" if r.get("reference-s") else "-"
    rate = f"  fused {r['fused-gflops']:.2f} GFLOP/s" if r.get("fused-gflops") else ""
    if r.get("fused-of-peak"):
        rate += f" ({100 * r['fused-of-peak']:.1f}% of peak)"
    return (f"  {r['mode']:8s} {r['size']:2d}x{r['size']:<2d} B={r['batch']:<2d} P={r['nodes']:<3d} "
            f"fused {r['fused-s']:.3f}s  reference {ref}  {ratio}{rate}  {r.get('note', '')}")
