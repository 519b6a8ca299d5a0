"""The memory estimate of a local search step: against a real step's measured peak, and the
warning it gives before a run that would not fit."""

import pytest
import torch
import torch.nn.functional as F

from benchmarks.common import PeakMemory
from benchmarks.supernet import _trim_heap
from fednas.config import parse_config
from fednas.memory import memory_warning, search_step_bytes
from fednas.spaces import InputSpec, build_supernet

MNIST = InputSpec(channels=1, image_size=28, num_classes=10)


def _measured_step(cfg, spec, batch: int) -> int:
    """Peak RSS one fused forward + backward adds (the second of two: the first warms up)."""
    torch.manual_seed(0)
    model = build_supernet(cfg.space, spec, seed=0).train()
    x, y = torch.randn(batch, spec.channels, spec.image_size, spec.image_size), torch.randint(0, 10, (batch,))

    def step():
        torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))

    step()
    _trim_heap()
    with PeakMemory(interval=0.001) as mem:
        step()
    return mem.peak - mem.baseline


@pytest.mark.parametrize("nodes,batch", [(16, 4), (24, 2)])
def test_the_estimate_is_within_a_third_of_a_measured_step(nodes, batch):
    cfg = parse_config({"dag-nodes": nodes, "channels": 8, "batch-size": batch, "alpha-batch-size": 1})
    measured = _measured_step(cfg, MNIST, batch)
    assert 0.67 <= search_step_bytes(cfg, MNIST) / measured <= 1.5, (search_step_bytes(cfg, MNIST), measured)


def test_the_estimate_grows_with_the_edges_the_batch_and_second_order():
    base = parse_config({"dag-nodes": 32, "batch-size": 8, "alpha-batch-size": 1})
    step = search_step_bytes(base, MNIST)
    assert search_step_bytes(base.replace(dag_nodes=64), MNIST) > 3.5 * step  # 2016 edges against 496
    assert search_step_bytes(base.replace(alpha_batch_size=16), MNIST) == 2 * step  # the larger batch counts
    assert search_step_bytes(base.replace(alpha_order="second"), MNIST) == 2 * step
    assert search_step_bytes(base.replace(space="darts"), MNIST) is None


def test_a_run_that_cannot_fit_is_warned_with_the_keys_to_lower():
    cfg = parse_config({"dag-nodes": 64, "channels": 8, "batch-size": 32, "alpha-batch-size": 1})
    need = search_step_bytes(cfg, MNIST)
    assert 25 * 2**30 < need < 40 * 2**30  # P = 64 on 28x28 at the default batch: what a 24 GB machine could not run
    text = memory_warning(cfg, MNIST, parallel=2, available=24 * 2**30)
    assert "'batch-size' 32" in text and "2 client(s) at once" in text
    fits = int(text.split("about ")[-1].split(" would fit")[0])
    assert search_step_bytes(cfg.replace(batch_size=fits), MNIST) * 2 <= 24 * 2**30
    assert memory_warning(cfg, MNIST, parallel=1, available=64 * 2**30) is None
    assert memory_warning(cfg, MNIST, parallel=0, available=1) is None  # clients whose memory is elsewhere
