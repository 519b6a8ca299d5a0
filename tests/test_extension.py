"""Adding a paradigm and an attack: one class each and one registration (docs/architecture.md).

A toy paradigm (random search over α) and a toy attack (the aux pool's class-mean image)
are registered by a fixture, run end to end on the embedded 8×8 digits through the
in-process federation loop and the generic attack runner and report, and unregistered.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attacks.base import Attack, Knowledge, Reconstruction
from attacks.leakage import LeakageAudit
from fednas.captures import Capture, CaptureStore, Manifest
from fednas.config import ConfigError, parse_config, search_to_record
from fednas.data import ClientSplit, ImageSet, dataset_from_config, make_pools
from fednas.federated import ClientRound
from fednas.paradigms.base import ALPHA_PREFIX, Arrays, Paradigm, as_numpy, as_tensors, split_state
from fednas.paradigms.federation import run_federation
from fednas.registry import ATTACKS, PARADIGMS, UnknownNameError
from fednas.runlog import RunLog
from fednas.spaces import Genotype, InputSpec, Supernet, build_supernet
from fednas.truth import write_truth

# ---------------------------------------------------------------------------- a paradigm


class RandomAlpha(Paradigm):
    """Random search over α: a client draws one α around the global one and keeps it when it
    lowers the loss on one D^α batch; θ is the server's and never trained."""

    name = "random-alpha"
    scale = 0.1

    def network(self, cfg: Any, spec: InputSpec, arrays: Arrays | None = None) -> Supernet:
        model = build_supernet(cfg.space, spec, cfg.run.seed)
        if arrays:
            model.load_arrays(as_tensors(split_state(arrays)[0]))
        return model.eval()

    def initial_arrays(self, cfg: Any, spec: InputSpec) -> dict[str, torch.Tensor]:
        model = self.network(cfg, spec)
        return {**model.arch_state(), **(model.weight_state() if cfg.search.share_weights else {})}

    def client_round(self, cfg: Any, settings: Any, arrays: Arrays, dataset: ImageSet, split: ClientSplit, *,
                     seed: Any, partition_id: int = 0, **unused: Any) -> ClientRound:
        model = self.network(cfg, dataset.spec, arrays)
        g = torch.Generator().manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
        pick = torch.randperm(len(split.alpha), generator=g)[: settings.alpha_batch_size]
        idx = [int(split.alpha[int(i)]) for i in pick]
        x, y = dataset.x[idx], dataset.y[idx]

        def loss() -> float:
            with torch.no_grad():
                return float(F.cross_entropy(model(x), y))

        alpha, before = model.arch_state(), loss()
        model.load_arrays({k: v + self.scale * torch.randn(v.shape, generator=g) for k, v in alpha.items()})
        after = loss()
        if after > before:
            model.load_arrays(alpha)
        sent_theta = any(not k.startswith(ALPHA_PREFIX) for k in split_state(arrays)[0])
        reply = {**model.arch_state(), **(model.weight_state() if sent_theta else {})}
        metrics = {"num-examples": len(split.theta) + len(split.alpha), "local-steps": 1,
                   "alpha-loss": min(before, after)}
        return ClientRound(reply, metrics, {"alpha-indices": idx, "alpha-batch-sizes": [len(idx)]})

    def model(self, cfg: Any, spec: InputSpec, arrays: Arrays) -> Supernet:
        return self.network(cfg, spec, arrays)

    def genotype(self, cfg: Any, spec: InputSpec, arrays: Arrays) -> Genotype:
        return self.network(cfg, spec, arrays).genotype(cfg.space.genotype_k)


# ---------------------------------------------------------------------------- an attack


class ClassMean(Attack):
    """Every sample of a capture rebuilt as the mean aux image of the aux pool's most common class."""

    name = "class-mean"

    def reconstruct(self, captures: Sequence[Capture], knowledge: Knowledge) -> list[Reconstruction]:
        labels, counts = np.unique(knowledge.aux_labels, return_counts=True)
        label = int(labels[np.argmax(counts)])
        image = knowledge.aux_images[knowledge.aux_labels == label].mean(0)
        out = []
        for c in captures:
            b = int(c.metrics.get("alpha-batch-size", c.train_config["alpha-batch-size"]))
            out.append(Reconstruction(c.id, images=np.repeat(image[None], b, 0).astype(np.float32),
                                      labels=np.full(b, label), steps=np.zeros(b, np.int64),
                                      positions=np.arange(b), match=0.0))
        return out


@pytest.fixture
def registered() -> Iterator[None]:
    PARADIGMS.register("random-alpha", RandomAlpha, "random search over alpha (a test's toy)", spaces=("dag",))
    ATTACKS.register("class-mean", ClassMean, "the aux pool's class-mean image (a test's toy)")
    try:
        yield
    finally:
        PARADIGMS.unregister("random-alpha")
        ATTACKS.unregister("class-mean")


TOY = {"paradigm": "random-alpha", "attack": "class-mean", "eavesdrop": True, "dag-nodes": 3, "channels": 4,
       "max-samples": 300, "alpha-batch-size": 2, "num-server-rounds": 2, "seed": 5, "attack-workers": 0}


def _run(cfg: Any, run_dir: Path, clients: int = 2) -> None:
    """The federation in one process, recorded as the eavesdropper and the clients would."""
    store, log = CaptureStore(run_dir), RunLog(cfg, run_dir, {"supernodes": clients})
    store.write_manifest(Manifest(alpha_pattern=cfg.attack.alpha_pattern, paradigm=cfg.paradigm.paradigm))
    sent = as_numpy(PARADIGMS.get(cfg.paradigm.paradigm)().initial_arrays(
        cfg, dataset_from_config(cfg.data, cfg.run.seed).spec))

    def on_round(r: int, arrays: dict, replies: list) -> None:
        nonlocal sent
        alpha = {k: v for k, v in sent.items() if k.startswith(ALPHA_PREFIX)}
        name = store.write_sent(r, alpha, {k: v for k, v in sent.items() if k not in alpha})
        for pid, reply in enumerate(replies):  # run_federation replies in partition order
            write_truth(run_dir, r, pid, reply.audit)
            store.write(server_round=r, node_id=100 + pid, sent=name, partition_id=pid,
                        alpha_t2={k: v for k, v in as_numpy(reply.arrays).items() if k.startswith(ALPHA_PREFIX)},
                        train_config=search_to_record(cfg.search), metrics=reply.metrics)
        sent = arrays

    log.finish(run_federation(cfg, clients, on_round=on_round))


def test_a_registry_takes_a_new_name_and_gives_it_back(registered):
    assert "random-alpha" in PARADIGMS and PARADIGMS.get("random-alpha") is RandomAlpha
    with pytest.raises(ValueError, match="registered already"):
        ATTACKS.register("class-mean", ClassMean)
    with pytest.raises(ConfigError, match="built for 'space' = dag only"):
        parse_config({**TOY, "space": "darts"})


def test_before_registration_the_config_refuses_the_names():
    with pytest.raises(ConfigError, match="'paradigm' = 'random-alpha' is not allowed; choose one of: darts, "):
        parse_config({"paradigm": "random-alpha"})
    with pytest.raises(UnknownNameError, match="unknown attack 'class-mean'; choose one of: adra"):
        ATTACKS.get("class-mean")


def test_a_new_paradigm_and_attack_run_end_to_end(registered, tmp_path):
    cfg = parse_config(TOY)
    assert (cfg.paradigm.paradigm, cfg.attack.attack) == ("random-alpha", "class-mean")
    _run(cfg, tmp_path)
    ids = CaptureStore(tmp_path).ids()
    assert ids == ["r001-n100", "r001-n101", "r002-n100", "r002-n101"]

    summary = LeakageAudit(tmp_path, cfg.flat(), workers=0).finish()
    assert (summary["captures"], summary["attacked"], summary["not-attacked"]) == (4, 4, 0)
    assert summary["samples"] == 4 * 2 and summary["scored"] and summary["unscored"] == 0
    assert "mean-identifiability" not in summary  # ADRA's own figures stay ADRA's

    # each row is scored against the sample the client really used, with the attack's image
    dataset = dataset_from_config(cfg.data, cfg.run.seed)
    x, y = dataset.x.numpy(), dataset.y.numpy()
    aux = make_pools(len(dataset), cfg.data, cfg.run.seed).aux
    labels, counts = np.unique(y[aux], return_counts=True)
    label = int(labels[np.argmax(counts)])
    mean = x[aux][y[aux] == label].mean(0)
    with open(tmp_path / "leakage" / "clients.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}
    assert "theta-knowledge" not in rows[0] and "identifiability" not in rows[0]
    for r in rows:
        g = int(r["sample"])
        assert float(r["mse"]) == pytest.approx(float(((mean - x[g]) ** 2).mean()), rel=1e-5)
        assert int(r["predicted-label"]) == label and (r["label-correct"] == "True") == (int(y[g]) == label)
    report = (tmp_path / "leakage" / "report.md").read_text()
    assert "`attack` = `class-mean`" in report and "θ known as" not in report
