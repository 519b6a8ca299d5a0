"""The DARTS round (fednas.paradigms.darts.Darts, what fednas.federated runs) against an explicit
composition of its pieces: local search, FedProx's proximal term, the α warm-up, the BatchNorm
recalibration of the reply, the client's own θ, input noise and the private α-gradient rule."""

import pytest
import torch

from fednas.batchnorm import calibration_batches, recalibrate
from fednas.config import ConfigError, parse_config
from fednas.data import client_data
from fednas.federated import client_evaluate, client_train, initial_arrays, round_seed
from fednas.noise import input_noise_from_config
from fednas.paradigms import get_paradigm
from fednas.privacy import PrivateAlphaGradient
from fednas.search import Proximal, evaluate, local_search
from fednas.spaces import build_supernet

TINY = {"dag-nodes": 3, "channels": 4, "local-steps": 3, "batch-size": 8, "alpha-batch-size": 4, "max-samples": 300}
MU = 0.1


def reference(cfg, arrays, server_round, *, pid=0, local_theta=None, mu=None, warmup=True, recalibration=True,
              rule=None):
    """One client's round composed by hand; the keyword switches drop one feature each."""
    dataset, split = client_data(cfg.data, cfg.run.seed, pid, 2)
    s = cfg.search
    model = build_supernet(cfg.space, dataset.spec, cfg.run.seed)
    if local_theta:
        model.load_arrays(local_theta)
    model.load_arrays(arrays)
    sent_theta = any(not k.startswith("alpha") for k in arrays)
    proximal = None if mu is None else Proximal.at(model, mu, theta=sent_theta, alpha=s.proximal_alpha)
    noise = input_noise_from_config(cfg)
    seed = round_seed(cfg, server_round, pid)
    result = local_search(model, dataset, split, s, seed, alpha_gradient=rule, input_noise=noise, proximal=proximal,
                          train_alpha=not warmup or server_round > s.alpha_warmup_rounds)
    if recalibration and (s.bn_statistics == "client" or (s.bn_statistics == "pooled" and not sent_theta)):
        recalibrate(model, calibration_batches(dataset, split.theta, s.batch_size, s.bn_statistics_batches, "cpu",
                                               noise, seed))
    reply = {**model.arch_state(), **(model.weight_state() if sent_theta else {})}
    return reply, dict(model.weight_state()), result


def assert_same(got, want):
    assert list(got) == list(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k


def differs(a, b):
    return any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("server_round", [1, 2])
def test_fedprox_warmup_and_client_statistics_are_the_round_composed_by_hand(server_round):
    cfg = parse_config({**TINY, "strategy": "fedprox", "proximal-mu": MU, "proximal-alpha": True,
                        "alpha-warmup-rounds": 1, "bn-statistics": "client", "input-noise-std": 0.2})
    arrays = initial_arrays(cfg)
    got = client_train(cfg, cfg.search, arrays, partition_id=0, num_clients=2, server_round=server_round,
                       proximal_mu=MU)
    want, _, result = reference(cfg, arrays, server_round, mu=MU)
    assert_same(got.arrays, want)
    assert got.theta == {}
    warm = server_round == 1
    assert got.audit["alpha-steps"] == (0 if warm else result.steps) == len(result.alpha_batches)
    assert got.audit["alpha-indices"] == [i for b in result.alpha_batches for i in b]
    assert got.metrics["local-steps"] == result.steps and got.metrics["on-cuda"] == 0.0
    assert {k: v for k, v in got.metrics.items() if k in result.metrics} == pytest.approx(result.metrics, nan_ok=True)
    # each feature changes the reply: a round that dropped one would fail the comparison above
    assert differs(want, reference(cfg, arrays, server_round)[0])  # no proximal term
    assert differs(want, reference(cfg, arrays, server_round, mu=MU, recalibration=False)[0])
    if warm:
        assert torch.equal(got.arrays["alpha"], arrays["alpha"])  # α held back
        assert differs(want, reference(cfg, arrays, server_round, mu=MU, warmup=False)[0])


def test_the_proximal_term_stays_on_theta_unless_proximal_alpha():
    cfg = parse_config({**TINY, "strategy": "fedprox", "proximal-mu": MU})
    arrays = initial_arrays(cfg)
    got = client_train(cfg, cfg.search, arrays, partition_id=1, num_clients=2, server_round=1, proximal_mu=MU)
    assert_same(got.arrays, reference(cfg, arrays, 1, pid=1, mu=MU)[0])
    with_alpha = parse_config({**TINY, "strategy": "fedprox", "proximal-mu": MU, "proximal-alpha": True})
    assert differs(got.arrays, client_train(with_alpha, with_alpha.search, arrays, partition_id=1, num_clients=2,
                                            server_round=1, proximal_mu=MU).arrays)


def test_a_client_keeping_its_own_theta_recalibrates_it_and_evaluates_it_recalibrated():
    cfg = parse_config({**TINY, "share-weights": False})  # bn-statistics = pooled: as client without a global θ
    arrays = initial_arrays(cfg)
    first = client_train(cfg, cfg.search, arrays, partition_id=0, num_clients=2, server_round=1)
    _, theta, _ = reference(cfg, arrays, 1)
    assert_same(first.theta, theta)
    assert differs(theta, reference(cfg, arrays, 1, recalibration=False)[1])
    second = client_train(cfg, cfg.search, first.arrays, partition_id=0, num_clients=2, server_round=2,
                          local_theta=first.theta)
    want, theta, _ = reference(cfg, first.arrays, 2, local_theta=first.theta)
    assert_same(second.arrays, want)
    assert_same(second.theta, theta)
    # a global α (here the other client's) over the client's own θ, whose statistics were taken
    # under its own α: they are re-estimated for the global α first
    other = client_train(cfg, cfg.search, arrays, partition_id=1, num_clients=2, server_round=1).arrays
    dataset, split = client_data(cfg.data, cfg.run.seed, 0, 2)
    model = build_supernet(cfg.space, dataset.spec, cfg.run.seed)
    model.load_arrays({**second.theta, **other})
    stale = evaluate(model, dataset.x[split.test], dataset.y[split.test])
    recalibrate(model, calibration_batches(dataset, split.theta, cfg.search.batch_size, 0, "cpu", None,
                                           round_seed(cfg, 0, 0)))
    res = evaluate(model, dataset.x[split.test], dataset.y[split.test])
    got = client_evaluate(cfg, other, partition_id=0, num_clients=2, local_theta=second.theta)
    assert (got["eval-loss"], got["eval-acc"]) == (res["loss"], res["acc"])
    assert stale["loss"] != res["loss"]


def test_the_private_alpha_rule_replaces_the_alpha_gradient():
    cfg = parse_config(TINY)
    arrays = initial_arrays(cfg)
    private = PrivateAlphaGradient(1.0, 0.5, seed=3)
    got = client_train(cfg, cfg.search, arrays, partition_id=0, num_clients=2, server_round=1, alpha_gradient=private)
    assert_same(got.arrays, reference(cfg, arrays, 1, rule=PrivateAlphaGradient(1.0, 0.5, seed=3))[0])
    assert private.steps == got.audit["alpha-steps"] > 0
    assert differs(got.arrays, reference(cfg, arrays, 1)[0])


def test_pdarts_inherits_the_round_but_replies_its_moving_averages():
    # P-DARTS runs Darts' round on its stage's network; the config refuses what it does not take
    # (its own α hold-back replaces the warm-up; no recalibration, no proximal term)
    for flat in ({"alpha-warmup-rounds": 2}, {"bn-statistics": "client"}, {"proximal-alpha": True},
                 {"strategy": "fedprox"}):
        with pytest.raises(ConfigError, match="'paradigm' = 'pdarts'"):
            parse_config({**TINY, "paradigm": "pdarts", **flat})
    cfg = parse_config({**TINY, "paradigm": "pdarts", "share-weights": False})  # bn-statistics = pooled
    paradigm = get_paradigm("pdarts")
    dataset, split = client_data(cfg.data, cfg.run.seed, 0, 2)
    model_arrays, state = paradigm.server_configure(cfg, 1, paradigm.initial_arrays(cfg, dataset.spec))
    seed = round_seed(cfg, 1, 0)
    torch.manual_seed(0)  # the skip-connect dropout draws from torch's global generator
    got = paradigm.client_round(cfg, cfg.search, {**model_arrays, **state}, dataset, split, seed=seed, server_round=1)
    model = paradigm.network(cfg, dataset.spec, state)
    model.load_arrays({k: torch.as_tensor(v) for k, v in model_arrays.items()})
    paradigm.prepare(model, state)
    rule, settings = paradigm.round_rule(cfg, state, None, split, cfg.search)
    torch.manual_seed(0)
    local_search(model, dataset, split, settings, seed, alpha_gradient=rule)
    assert_same(got.theta, dict(model.weight_state()))  # no recalibration pass
    recalibrate(model, calibration_batches(dataset, split.theta, settings.batch_size))
    assert differs(got.theta, dict(model.weight_state()))
