"""P-DARTS, ENAS and SMASH end to end through ``flwr run``: captures, a leakage report, the final model."""

import json

import numpy as np
import pandas as pd
import pytest

from fednas.captures import CaptureStore
from simulations.launcher import launch
from tests.scales import TINY_INVERSE, as_sets

SETS = ["num-server-rounds=2", "dag-nodes=3", "channels=4", "local-steps=1", "max-samples=200", "alpha-batch-size=1",
        "head=flatten", "alpha-optimizer=sgd", "central-eval=true", "fraction-evaluate=0.0", "min-evaluate-clients=0",
        "eavesdrop=true", "attack-workers=0", "adra-iterations=5", "adra-restarts=1", "enas-controller-steps=1",
        "enas-num-aggregate=1", "enas-derive-samples=3", "enas-lstm-size=8", "smash-candidates=4",
        "smash-hyper-channels=8", *as_sets(TINY_INVERSE)]


@pytest.mark.slow
@pytest.mark.parametrize("paradigm", ["pdarts", "enas", "smash"])
def test_a_paradigm_runs_through_flower_with_captures_and_a_leakage_report(paradigm, tmp_path):
    result = launch(None, [*SETS, f"paradigm={paradigm}", f"output-dir={tmp_path}", f"run-name={paradigm}"], clients=2)
    assert result.returncode == 0, result.status
    run = result.run_dir
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds-completed"] == 2
    assert summary["genotype"].startswith("node 1 <-")
    rounds = pd.read_csv(run / "rounds.csv")
    assert rounds["central-acc"].between(0, 1).all() and (rounds["replied"] == 2).all()
    store = CaptureStore(run)
    captures = [store.load(cid) for cid in store.ids()]
    assert len(captures) == 4 and all(c.status == "ok" for c in captures)
    with np.load(run / "model.npz") as model:
        saved = dict(model)
    clients = pd.read_csv(run / "leakage" / "clients.csv")
    assert (run / "leakage" / "report.md").is_file() and set(clients["capture"]) == set(store.ids())
    if paradigm == "pdarts":  # two rounds of three stages: stage 0 (8 ops per edge), then stage 1 (5)
        assert [c.alpha_t1["alpha"].shape for c in captures] == [(3, 8), (3, 8), (3, 5), (3, 5)]
        assert saved["alpha"].shape == (3, 5) and saved["paradigm.stage"][0] == 1
        assert (clients["status"] == "ok").all()  # ADRA rebuilt every stage's network
    if paradigm == "enas":
        assert {"alpha_controller.w_lstm", "alpha_baseline", "alpha_scores"} <= set(captures[0].alpha_t2)
        assert (clients["status"] == "ok").all() and (clients["identifiability"] == 0).all()
    if paradigm == "smash":
        assert set(captures[0].alpha_t2) == {"alpha_scores"} and saved["alpha_scores"].shape == (4,)
        assert clients["reason"].str.contains("no architecture gradient").all()
