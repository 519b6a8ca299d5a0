import numpy as np
import pytest
import torch

from fednas.config import parse_config
from fednas.ops import OPS, PRIMITIVES, MixedOp
from fednas.spaces import InputSpec, build_supernet, dag_edges, derive_edges
from fednas.spaces.genotype import Genotype

ACTS = ("elu", "tanh", "sigmoid", "relu")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("stride", [1, 2])
def test_every_op_keeps_or_halves_the_shape(act, stride):
    x = torch.randn(2, 4, 8, 8)
    for name in PRIMITIVES:
        y = OPS[name](4, stride, act)(x)
        assert y.shape == (2, 4, 8 // stride, 8 // stride), name


def test_mixed_op_is_the_weighted_sum_of_its_ops():
    op = MixedOp(4, 1, "elu")
    x, w = torch.randn(2, 4, 6, 6), torch.softmax(torch.randn(len(PRIMITIVES)), 0)
    expected = sum(wi * o(x) for wi, o in zip(w, op.ops))
    torch.testing.assert_close(op(x, w), expected)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("head", ["gap", "flatten"])
@pytest.mark.parametrize("nodes", [2, 3, 5])
def test_dag_shapes_and_alpha_size(act, head, nodes):
    cfg = parse_config({"dag-nodes": nodes, "channels": 4, "activation": act, "head": head})
    model = build_supernet(cfg.space, InputSpec(1, 8, 10), seed=0)
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    (alpha,) = model.arch_parameters()
    assert alpha.shape == (nodes * (nodes - 1) // 2, 8)
    assert alpha.numel() == nodes * (nodes - 1) // 2 * 8
    assert [n for n, _ in model.named_arch_parameters()] == ["alpha"]


@pytest.mark.parametrize("act", ACTS)
def test_darts_shapes(act):
    cfg = parse_config({"space": "darts", "layers": 3, "channels": 4, "activation": act})
    model = build_supernet(cfg.space, InputSpec(3, 8, 5), seed=0)
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 5)
    names = [n for n, _ in model.named_arch_parameters()]
    assert names == ["alpha_normal", "alpha_reduce"]
    assert all(p.shape == (14, 8) for p in model.arch_parameters())


def test_darts_rejects_sizes_it_cannot_halve_twice():
    cfg = parse_config({"space": "darts", "layers": 3, "channels": 4})
    with pytest.raises(ValueError, match="multiple of 4"):
        build_supernet(cfg.space, InputSpec(1, 10, 10), seed=0)


def test_alpha_and_theta_split_the_parameters():
    cfg = parse_config({"dag-nodes": 4, "channels": 4})
    model = build_supernet(cfg.space, InputSpec(1, 8, 10), seed=0)
    a = {id(p) for p in model.arch_parameters()}
    w = {id(p) for p in model.weight_parameters()}
    assert a and w and not a & w and a | w == {id(p) for p in model.parameters()}


def test_init_is_seeded_and_follows_the_config():
    cfg = parse_config({"dag-nodes": 4, "channels": 4, "theta-init-bound": 0.1, "alpha-init-scale": 1e-3})
    m1 = build_supernet(cfg.space, InputSpec(1, 8, 10), seed=3)
    m2 = build_supernet(cfg.space, InputSpec(1, 8, 10), seed=3)
    m3 = build_supernet(cfg.space, InputSpec(1, 8, 10), seed=4)
    for (n, p), q in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(p, q), n
    assert not torch.equal(m1.alpha, m3.alpha)
    assert max(p.abs().max().item() for p in m1.weight_parameters()) <= 0.1
    assert m1.alpha.abs().max().item() < 1e-2


def test_arrays_round_trip_exactly_through_flower_array_record():
    from flwr.app import ArrayRecord

    cfg = parse_config({"dag-nodes": 4, "channels": 4})
    src = build_supernet(cfg.space, InputSpec(1, 8, 10), seed=1)
    dst = build_supernet(cfg.space, InputSpec(1, 8, 10), seed=2)
    record = ArrayRecord({**src.arch_state(), **src.weight_state()})
    dst.load_arrays(record.to_torch_state_dict())
    for name, value in {**src.arch_state(), **src.weight_state()}.items():
        assert torch.equal(dst.state_dict()[name], value), name
    assert torch.equal(ArrayRecord(src.arch_state()).to_torch_state_dict()["alpha"], src.alpha.detach())


def test_load_arrays_names_the_bad_array():
    cfg = parse_config({"dag-nodes": 4, "channels": 4})
    model = build_supernet(cfg.space, InputSpec(1, 8, 10), seed=0)
    with pytest.raises(ValueError, match="'alpha'"):
        model.load_arrays({"alpha": torch.zeros(3, 8)})
    with pytest.raises(KeyError, match="bogus"):
        model.load_arrays({"bogus": torch.zeros(1)})


def _onehot_weights(choice: list[tuple[int, str, float]], n_edges: int) -> np.ndarray:
    w = np.full((n_edges, len(PRIMITIVES)), 0.01)
    for edge, op, strength in choice:
        w[edge, PRIMITIVES.index(op)] = strength
    return w


def test_genotype_on_a_hand_set_alpha():
    # P = 4: edges (0,1) (0,2) (1,2) (0,3) (1,3) (2,3)
    assert dag_edges(4) == [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]
    w = _onehot_weights([(0, "sep_conv_3x3", 0.9), (1, "max_pool_3x3", 0.5), (2, "skip_connect", 0.8),
                         (3, "dil_conv_5x5", 0.3), (4, "none", 0.99), (4, "avg_pool_3x3", 0.2),
                         (5, "sep_conv_5x5", 0.7)], 6)
    nodes = derive_edges(w, [1, 2, 3], k=2)
    assert nodes == (
        (("sep_conv_3x3", 0),),
        (("max_pool_3x3", 0), ("skip_connect", 1)),
        (("dil_conv_5x5", 0), ("sep_conv_5x5", 2)),  # 'none' never wins; (1,3) is weakest
    )
    cfg = parse_config({"dag-nodes": 4, "channels": 4})
    model = build_supernet(cfg.space, InputSpec(1, 8, 10), seed=0)
    with torch.no_grad():
        model.alpha.copy_(torch.log(torch.tensor(w, dtype=torch.float32)))
    g = model.genotype(k=2)
    assert g.cells["dag"] == nodes
    assert g.pretty().splitlines()[2] == "node 3 <- dil_conv_5x5(0) + sep_conv_5x5(2)"
    assert Genotype.from_dict(g.to_dict()) == g


def test_darts_genotype_keeps_two_inputs_per_node():
    cfg = parse_config({"space": "darts", "layers": 3, "channels": 4})
    model = build_supernet(cfg.space, InputSpec(1, 8, 10), seed=0)
    g = model.genotype()
    assert set(g.cells) == {"normal", "reduce"}
    for nodes in g.cells.values():
        assert [len(n) for n in nodes] == [2, 2, 2, 2]
        assert all(op != "none" for node in nodes for op, _ in node)
    assert g.concat == (2, 3, 4, 5)
