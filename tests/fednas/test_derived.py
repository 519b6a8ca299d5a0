"""The derived network is the genotype's (one op per kept edge), with DARTS's evaluation knobs; random genotypes."""

from collections import Counter

import pytest
import torch

from fednas.config import parse_config
from fednas.ops import OPS, PRIMITIVES
from fednas.progress import edges
from fednas.spaces import InputSpec, build_supernet
from fednas.spaces.derived import (DerivedDag, DerivedDarts, count_parameters, derived_network, drop_path,
                                   random_genotype)

SPEC = InputSpec(1, 8, 10)


@pytest.mark.parametrize("space", ["dag", "darts"])
def test_the_derived_network_holds_exactly_the_genotypes_ops(space):
    cfg = parse_config({"space": space, "dag-nodes": 5, "layers": 3, "cell-nodes": 2, "channels": 4})
    supernet = build_supernet(cfg.space, SPEC, seed=0)
    with torch.no_grad():
        for a in supernet.arch_parameters():
            a.normal_()  # a definite architecture
    genotype = supernet.genotype(2)
    net = derived_network(genotype, cfg.space, SPEC, seed=0)
    assert isinstance(net, DerivedDag if space == "dag" else DerivedDarts)
    assert net(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    cells = [(net, "dag", False)] if space == "dag" else [(c, "reduce" if c.reduction else "normal", c.reduction)
                                                          for c in net.cells]
    for cell, kind, reduction in cells:
        for module, edges in zip(cell.nodes, genotype.cells[kind], strict=True):
            assert module.inputs == [i for _, i in edges]
            stride = lambda i: 2 if reduction and i < 2 else 1  # noqa: E731
            assert [type(m).__name__ for m in module.ops] == [type(OPS[op](4, stride(i), "elu")).__name__
                                                              for op, i in edges]
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in supernet.weight_parameters())



def test_channels_layers_and_the_auxiliary_head_of_the_evaluation_network():
    cfg = parse_config({"space": "darts", "layers": 3, "cell-nodes": 2, "channels": 4})
    genotype = random_genotype(cfg.space, SPEC, 2, seed=1)
    small = derived_network(genotype, cfg.space, SPEC, seed=0)
    big = derived_network(genotype, cfg.space, SPEC, seed=0, channels=8, layers=5, auxiliary=True)
    assert len(big.cells) == 5 and big.auxiliary_head is not None and count_parameters(big) > count_parameters(small)
    assert count_parameters(big) == sum(p.numel() for p in big.parameters()) - sum(
        p.numel() for p in big.auxiliary_head.parameters())
    x = torch.rand(4, 1, 8, 8)
    big.train()
    logits, aux = big.forward_with_aux(x)
    assert logits.shape == aux.shape == (4, 10)
    big.eval()
    assert big.forward_with_aux(x)[1] is None and big(x).shape == (4, 10)


def test_drop_path_drops_whole_samples_and_keeps_the_expectation():
    torch.manual_seed(0)
    x = torch.ones(4000, 2, 3, 3)
    y = drop_path(x, 0.25)
    per_sample = y.flatten(1)
    values = per_sample.unique()
    assert len(values) == 2 and values[0] == 0 and float(values[1]) == pytest.approx(1 / 0.75)
    assert (per_sample == per_sample[:, :1]).all()  # a sample is dropped whole
    assert float(y.mean()) == pytest.approx(1.0, abs=0.05)
    assert drop_path(x, 0.0) is x


def test_random_genotypes_are_uniform_over_ops_and_reproducible():
    cfg = parse_config({"dag-nodes": 6})
    draws = [random_genotype(cfg.space, SPEC, 2, seed=s) for s in range(150)]
    assert random_genotype(cfg.space, SPEC, 2, seed=3) == draws[3] and draws[3] != draws[4]
    ops = Counter(e[3] for g in draws for e in edges(g))
    assert "none" not in ops and set(ops) == set(PRIMITIVES) - {"none"}
    n = sum(ops.values())  # 150 genotypes x 9 kept edges; each op expected n/7 = 193
    assert all(abs(c - n / 7) < 4 * (n / 7) ** 0.5 for c in ops.values()), ops
