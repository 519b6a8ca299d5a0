"""How much memory a client's local search needs, told before a run starts.

A DAG supernet keeps every edge's eight ops on every pixel for the backward pass, so a
search step's memory grows with the number of edges P(P−1)/2, the channels, the pixels and
the batch. At P = 64 on 28×28 (C = 8) a θ step holds about 1 GB *per sample*: the default
``batch-size`` of 32 needs about 30 GB, and the operating system kills the client minutes
into round 1 with no message of ours. :func:`search_step_bytes` estimates a step's peak
from figures measured on the fused supernet (forward and backward in train mode, the α or
θ step); :func:`memory_warning` compares what the clients that run at once need with
what the machine has.
"""

from __future__ import annotations

from typing import Any

from fednas.paradigms import paradigm_of
from fednas.spaces.base import InputSpec

# Peak bytes a forward + backward adds, per sample, channel and pixel: PER_EDGE for each of
# the P(P−1)/2 edges (eight ops' saved activations) plus PER_NODE for each node (its sum,
# output and normalisation). Least squares on the fused dag supernet in train mode, ELU,
# torch 2.14 on CPU: 11 measured steps, P = 8–64, 8×8 and 28×28, C = 8 and 16, batches
# 1–32; every one within 0.92–1.06 of the estimate (docs/performance.md).
PER_EDGE = 68.5
PER_NODE = 387.0
SECOND_ORDER = 2.0  # the unrolled step holds the graph at θ' while it differentiates through it


def step_batch(cfg: Any) -> int:
    """The larger of a step's two batches: the one whose step peaks."""
    return max(cfg.search.batch_size, cfg.search.alpha_batch_size)


def search_step_bytes(cfg: Any, spec: InputSpec) -> int | None:
    """Estimated peak bytes of one local search step of one client (None where there is no
    estimate: a space other than the dag, or a paradigm that does not search the configured supernet)."""
    if cfg.space.space != "dag" or not paradigm_of(cfg).supernet_search:
        return None
    p = cfg.space.dag_nodes
    per_sample = (PER_EDGE * p * (p - 1) / 2 + PER_NODE * p) * cfg.space.channels * spec.image_size**2
    factor = SECOND_ORDER if cfg.search.alpha_order == "second" else 1.0
    return int(per_sample * step_batch(cfg) * factor)


def memory_warning(cfg: Any, spec: InputSpec, parallel: int, available: int) -> str | None:
    """A warning naming the keys to lower when ``parallel`` clients' steps need more than
    ``available`` bytes; None when they fit or there is no estimate."""
    step = search_step_bytes(cfg, spec)
    if step is None or step * parallel <= available:
        return None
    batch = step_batch(cfg)
    fits = int(batch * available / (step * parallel))
    return (f"a local search step of dag P = {cfg.space.dag_nodes}, C = {cfg.space.channels} on "
            f"{spec.image_size}x{spec.image_size} with batch {batch} ('batch-size' {cfg.search.batch_size}, "
            f"'alpha-batch-size' {cfg.search.alpha_batch_size}) needs about {step / 2**30:.1f} GiB a client; "
            f"{parallel} client(s) at once need {step * parallel / 2**30:.1f} GiB and "
            f"{available / 2**30:.1f} GiB is available. Expect the clients to be killed for memory: lower "
            f"'batch-size'/'alpha-batch-size' (about {fits} would fit), 'dag-nodes' or 'channels', or run fewer clients at once")
