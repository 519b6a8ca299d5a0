"""The derived network is the genotype's (one op per kept edge), and the fixed shadows fit small images."""

import pytest
import torch

from attacks.amia.models import DerivedDag, DerivedDarts, derived_network, fixed_architecture
from fednas.config import parse_config
from fednas.ops import OPS
from fednas.spaces import InputSpec, build_supernet

SPEC = InputSpec(1, 8, 10)


@pytest.mark.parametrize("space", ["dag", "darts"])
def test_the_derived_network_holds_exactly_the_genotypes_ops(space):
    cfg = parse_config({"space": space, "nodes": 5, "layers": 3, "steps": 2, "channels": 4})
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


@pytest.mark.parametrize("name, spec", [("resnet18", InputSpec(1, 8, 10)), ("resnet18", InputSpec(3, 32, 100)),
                                        ("cnn", InputSpec(3, 28, 10))])
def test_fixed_shadows_take_the_datasets_channels_and_size(name, spec):
    net = fixed_architecture(name, spec, seed=0).eval()
    with torch.no_grad():
        assert net(torch.rand(2, spec.channels, spec.image_size, spec.image_size)).shape == (2, spec.num_classes)
    with pytest.raises(ValueError, match="unknown fixed architecture"):
        fixed_architecture("vgg", spec, 0)
