"""The plugin around another app's strategies, in one process (the example app's real ClientApp)."""

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg, FedMedian

from attacks.adra.__main__ import main as adra_main
from attacks.adra.attack import ADRA
from attacks.adra.client_model import replay
from attacks.foreign import ForeignTarget, TargetError
from fednas.captures import CaptureStore
from fednas.config import parse_config
from fednas.truth import read_truth
from server.plugin import eavesdrop
from tests.server.inprocess_grid import InProcessGrid

TRAIN = {"lr-arch": 0.5, "lr-weights": 0.05, "batch-arch": 1, "batch-weights": 16, "steps": 1}
WIRE = {"alpha-lr": "lr-arch", "alpha-batch-size": "batch-arch", "local-steps": "steps"}


def _strategy(cls):
    return cls(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2)


def _run(strategy, rounds=2, run_dir=None):
    from tinynas.client_app import train
    from tinynas.model import build

    torch.manual_seed(0)
    initial = ArrayRecord(build().state_dict())
    # the clients write their truth into the run directory (a simulation's shared filesystem)
    run_config = {"run-dir": str(run_dir)} if run_dir else {"write-truth": False}
    return strategy.start(grid=InProcessGrid(run_config, 2, train), initial_arrays=initial, num_rounds=rounds,
                          train_config=ConfigRecord(TRAIN))


def _wrap(strategy, run_dir, **kw):
    from tinynas.model import build

    return eavesdrop(strategy, run_dir, model=build, alpha_pattern=r"^arch\.", input_shape=(1, 8, 8),
                     client_settings={"alpha-optimizer": "sgd"}, wire_keys=WIRE, **kw)


def _custom():
    from tinynas.server_app import FiniteMedian

    return FiniteMedian


@pytest.mark.parametrize("make", [lambda: FedAvg, lambda: FedMedian, _custom], ids=["fedavg", "fedmedian", "custom"])
def test_the_plugin_changes_nothing_a_users_strategy_aggregates(make, tmp_path):
    cls = make()
    plain = _run(_strategy(cls))
    wrapped = _run(_wrap(_strategy(cls), tmp_path), run_dir=tmp_path)
    for name, value in plain.arrays.items():
        np.testing.assert_array_equal(value.numpy(), wrapped.arrays[name].numpy())
    store = CaptureStore(tmp_path)
    assert len(store.ids()) == 4 and all(store.load(c).status == "ok" for c in store.ids())


def test_captures_describe_the_model_and_replay_the_clients_update_exactly(tmp_path):
    from tinynas.data import load_all

    _run(_wrap(_strategy(FedAvg), tmp_path), rounds=1, run_dir=tmp_path)
    store = CaptureStore(tmp_path)
    manifest = store.manifest()
    assert manifest.model == "tinynas.model:build" and manifest.alpha_pattern == r"^arch\."
    assert manifest.arrays["alpha"] == {"arch.edges": [3, 4]} and "head.weight" in manifest.arrays["theta"]
    target = ForeignTarget.from_run(tmp_path)
    assert target.spec().num_classes == 10  # inferred from one forward pass of the factory's network
    knowledge = target.knowledge(parse_config({"adra-init": "noise"}))
    x, y = load_all()
    for cid in store.ids():
        capture, truth = store.load(cid), read_truth(tmp_path, store.meta(cid))
        assert capture.meta["client-settings"] == {"alpha-optimizer": "sgd", "alpha-lr": 0.5,
                                                   "alpha-batch-size": 1, "local-steps": 1}
        problem, known = ADRA(knowledge.config.attack).problem(capture, knowledge)
        assert known["theta-knowledge"] == "wire θ_t1" and known["fidelity"] == "exact"
        # the client's own sample, run through the factory's network and the settings read off
        # the wire, gives back exactly the Δα the eavesdropper saw: the contract holds end to end
        idx = list(truth.alpha_indices)
        xs = torch.as_tensor(x[idx])[None]
        ys = torch.nn.functional.one_hot(torch.as_tensor(y[idx]), 10).float()[None]
        v = problem.victim
        predicted = replay(problem.proc, v.alpha_flat[None], lambda k, a: v.grads(xs, ys, a))[0]
        np.testing.assert_allclose(predicted.numpy(), problem.observed.numpy(), rtol=1e-4, atol=1e-7)


def test_a_setting_the_wire_does_not_show_fails_the_capture_with_its_name(tmp_path):
    from tinynas.model import build

    strategy = eavesdrop(_strategy(FedAvg), tmp_path, model=build, alpha_pattern=r"^arch\.", input_shape=(1, 8, 8),
                         wire_keys=WIRE)  # the optimizer is not declared, and not on the wire
    _run(strategy, rounds=1)
    store = CaptureStore(tmp_path)
    knowledge = ForeignTarget.from_run(tmp_path).knowledge(parse_config({"adra-init": "noise"}))
    rec = ADRA(knowledge.config.attack).reconstruct([store.load(store.ids()[0])], knowledge)[0]
    assert rec.status == "failed" and "alpha-optimizer" in rec.reason


def test_bad_plugin_arguments_fail_before_the_first_round(tmp_path):
    with pytest.raises(ValueError, match="absolute"):
        eavesdrop(_strategy(FedAvg), "relative/run")
    with pytest.raises(ValueError, match="package.module:factory"):
        eavesdrop(_strategy(FedAvg), tmp_path, model="no-colon")
    with pytest.raises(ValueError, match="alpha-learning-rate"):
        eavesdrop(_strategy(FedAvg), tmp_path, client_settings={"alpha-learning-rate": 0.1})
    with pytest.raises(TargetError, match="not a module-level callable"):
        eavesdrop(_strategy(FedAvg), tmp_path, model=lambda: None)


def test_the_cli_names_what_breaks_the_model_contract(tmp_path, capsys):
    _run(_wrap(_strategy(FedAvg), tmp_path), rounds=1)
    assert adra_main([str(tmp_path), "--model", "tinynas.nowhere:build"]) == 2
    assert "cannot import 'tinynas.nowhere'" in capsys.readouterr().err
    assert adra_main([str(tmp_path), "--model", "tinynas.data:load_all"]) == 2
    assert "not a torch.nn.Module" in capsys.readouterr().err
    assert adra_main([str(tmp_path), "--model", "torch.nn:Linear"]) == 2  # needs arguments: not a factory
    assert "error" in capsys.readouterr().err
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    assert adra_main([str(empty)]) == 2
    assert "--model" in capsys.readouterr().err
