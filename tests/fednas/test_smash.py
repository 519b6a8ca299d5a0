"""SMASH against its reference: a hypernetwork writes the weights of the sampled architecture."""

import numpy as np
import pytest
import torch

from fednas.config import parse_config
from fednas.data import client_data
from fednas.ops import PRIMITIVES
from fednas.paradigms import get_paradigm
from fednas.paradigms.arch import arch_genotype, decode, edge_index, encode, random_arch
from fednas.paradigms.federation import run_federation
from fednas.paradigms.hypernet import CONVS
from fednas.paradigms.ranking import SCORES, candidates_of
from fednas.paradigms.smash import build_smash, smash_optimizer
from fednas.spaces import InputSpec

TINY = {"paradigm": "smash", "dag-nodes": 4, "channels": 4, "local-steps": 3, "batch-size": 8, "max-samples": 300,
        "smash-candidates": 6, "smash-hyper-channels": 8}


@pytest.fixture
def net():
    return build_smash(parse_config(TINY), InputSpec(1, 8, 10))


def test_the_hypernetwork_writes_weights_of_the_sampled_shapes(net):
    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = random_arch(4, 2, rng)
        weights = net.generate(arch)
        expected = {(edge_index(i, j), op) for j, node in enumerate(arch, start=1) for i, op in node
                    if PRIMITIVES[op] in CONVS}
        assert set(weights) == expected  # exactly the sampled conv ops; pools and skips have no weights
        for (e, op), w in weights.items():
            stages = CONVS[PRIMITIVES[op]][2]  # separable: 2 pointwise convs, dilated: 1
            assert tuple(w.shape) == (stages, 4, 4, 1, 1)
        x = torch.rand(3, 1, 8, 8)
        assert net(x, arch).shape == (3, 10)


def test_the_weights_depend_on_the_whole_architecture(net):
    sep = PRIMITIVES.index("sep_conv_3x3")
    a = ((( 0, sep),), ((0, sep), (1, sep)), ((2, sep),))
    b = ((( 0, sep),), ((0, sep), (1, sep)), ((1, PRIMITIVES.index("max_pool_3x3")),))
    wa, wb = net.generate(a), net.generate(b)
    # edge (0, 1) is the same op in both; a change two edges away changes its weights (the
    # hypernetwork reads the neighbourhood of the encoding), not the weights' shape
    assert wa[(0, sep)].shape == wb[(0, sep)].shape
    assert not torch.allclose(wa[(edge_index(1, 2), sep)], wb[(edge_index(1, 2), sep)])


def test_training_reaches_the_hypernetwork(net):
    rng = np.random.default_rng(1)
    arch = random_arch(4, 2, rng)
    while not net.generate(arch):  # an architecture with at least one convolution
        arch = random_arch(4, 2, rng)
    loss = torch.nn.functional.cross_entropy(net(torch.rand(4, 1, 8, 8), arch), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.hyper.parameters())
    opt = smash_optimizer(net, 1e-3)
    groups = {len(g["params"]): g["weight_decay"] for g in opt.param_groups}
    assert groups[len(list(net.hyper.parameters()))] == 0.0  # no weight decay on the hypernetwork (reference)
    assert opt.defaults["betas"] == (0.5, 0.999) and opt.defaults["eps"] == 1e-4


def test_no_architecture_parameter_is_learnt(net):
    assert net.arch_parameters() == []


def test_architectures_round_trip_through_their_encoding():
    rng = np.random.default_rng(3)
    for _ in range(10):
        arch = random_arch(5, 2, rng)
        assert decode(encode(arch, 2), 5, 2) == arch
        assert all(len({i for i, _ in node}) == len(node) for node in arch)  # distinct inputs
    with pytest.raises(ValueError):
        decode(np.array([[1, 3]] * 2 + [[0, 0]] * 4).reshape(-1), 4, 2)  # input 1 into node 1, op none


def test_the_final_architecture_is_the_best_candidate_by_the_clients_mean_score():
    cfg = parse_config({**TINY, "num-server-rounds": 2})
    scores_by_round = []
    arrays = run_federation(cfg, 2, lambda r, a, replies: scores_by_round.append(
        [(rep.arrays[SCORES].numpy(), rep.metrics["num-examples"]) for rep in replies]))
    replies = scores_by_round[-1]
    mean = sum(s * n for s, n in replies) / sum(n for _, n in replies)
    np.testing.assert_allclose(arrays[SCORES], mean, rtol=1e-6)
    best = int(np.argmax(mean))
    spec = client_data(cfg.data, 0, 0, 2)[0].spec
    assert get_paradigm("smash").genotype(cfg, spec, arrays) == arch_genotype(candidates_of(arrays, 4, 2)[best])
    # the candidates are fixed by the seed for the whole run
    assert candidates_of(arrays, 4, 2) == get_paradigm("smash").candidates(cfg)
