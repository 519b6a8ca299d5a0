"""P-DARTS against its reference: stages, pruning to the kept counts, held-back α, skip dropout."""

import math

import numpy as np
import pytest
import torch

from fednas.config import parse_config
from fednas.data import client_data
from fednas.ops import PRIMITIVES
from fednas.paradigms import get_paradigm
from fednas.paradigms.base import STATE_PREFIX
from fednas.paradigms.federation import run_federation
from fednas.paradigms.pdarts import prune, round_knobs, stage_of
from fednas.paradigms.pdarts_net import PdartsDag, PdartsDarts, SkipDropout, final_edges
from fednas.spaces import InputSpec

NONE, SKIP = PRIMITIVES.index("none"), PRIMITIVES.index("skip_connect")
TINY = {"paradigm": "pdarts", "dag-nodes": 3, "channels": 4, "local-steps": 2, "batch-size": 8, "alpha-batch-size": 4,
        "max-samples": 300, "alpha-lr": 0.05}


def test_the_schedule_spreads_rounds_over_stages():
    assert [stage_of(r, 6, 3) for r in range(1, 7)] == [0, 0, 1, 1, 2, 2]
    assert [stage_of(r, 2, 3) for r in (1, 2)] == [0, 1]  # fewer rounds than stages: a stage is skipped
    assert [stage_of(r, 7, 3) for r in range(1, 8)] == [0, 0, 0, 1, 1, 2, 2]


def test_round_knobs_follow_the_reference_epoch_schedule():
    # a 25-epoch stage with 10 warm-up epochs (the reference): rounds 1..25 of a one-stage run
    p = 0.4
    assert round_knobs(1, 25, 1, 0.4, p) == (False, pytest.approx(p * 24 / 25))
    assert round_knobs(10, 25, 1, 0.4, p) == (False, pytest.approx(p * 15 / 25))
    assert round_knobs(11, 25, 1, 0.4, p) == (True, pytest.approx(p))
    assert round_knobs(13, 25, 1, 0.4, p) == (True, pytest.approx(p * math.exp(-0.4)))


def test_prune_keeps_the_strongest_ops():
    switches = np.ones((2, 8), np.float32)
    probs = np.array([[0.05, 0.3, 0.1, 0.2, 0.02, 0.15, 0.08, 0.1],
                      [0.4, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.39]])
    out = prune(switches, probs, 5, last=False)
    assert out.sum(1).tolist() == [5, 5]
    assert set(np.flatnonzero(out[0])) == {1, 2, 3, 5, 7}  # the three weakest (4, 0, 6) go
    assert set(np.flatnonzero(out[1])) == {0, 7, 6, 5, 4}  # none survives outside the last stage


def test_the_last_stage_drops_none_first():
    switches = np.zeros((1, 8), np.float32)
    switches[0, [NONE, SKIP, 4]] = 1  # kept: none, skip, sep_conv_3x3
    probs = np.array([[0.8, 0.05, 0.15]])  # none strongest, then sep_conv_3x3
    out = prune(switches, probs, 1, last=True)
    assert np.flatnonzero(out[0]).tolist() == [4]


def test_the_server_prunes_to_the_kept_counts_from_the_averaged_alpha():
    cfg = parse_config({**TINY, "num-server-rounds": 3, "local-steps": 1})
    seen = []
    run_federation(cfg, 2, lambda r, arrays, replies: seen.append((r, arrays)))
    widths = {r: a["alpha"].shape[1] for r, a in seen}
    assert widths == {1: 8, 2: 5, 3: 3}  # 8 -> 5 -> 3 candidate ops per edge
    paradigm = get_paradigm("pdarts")
    for (r, before), (_, after) in zip(seen, seen[1:]):
        kept = paradigm.server_configure(cfg, r + 1, before)[1][STATE_PREFIX + "switches"]
        np.testing.assert_array_equal(kept, after[STATE_PREFIX + "switches"])
        for e, row in enumerate(before[STATE_PREFIX + "switches"]):  # the survivors are the strongest by mean α
            ops = np.flatnonzero(row)
            strongest = set(ops[np.argsort(-before["alpha"][e], kind="stable")[: after["alpha"].shape[1]]])
            assert set(np.flatnonzero(kept[e])) == strongest
    # after the last stage, one op per edge (none dropped first), at most pdarts-max-skip skips
    genotype = paradigm.genotype(cfg, client_data(cfg.data, 0, 0, 2)[0].spec, seen[-1][1])
    last = seen[-1][1][STATE_PREFIX + "switches"]
    for j, node in enumerate(genotype.cells["dag"], start=1):
        for op, i in node:
            assert last[j * (j - 1) // 2 + i, PRIMITIVES.index(op)] == 1 and op != "none"


def test_alpha_is_held_back_in_the_warm_up_rounds_only():
    cfg = parse_config({**TINY, "num-server-rounds": 4, "pdarts-keep": "5,3", "pdarts-dag-cells": "1,2",
                        "pdarts-add-layers": "0,6", "pdarts-dropout": "0.1,0.4", "pdarts-arch-warmup": 0.5})
    paradigm = get_paradigm("pdarts")
    dataset, split = client_data(cfg.data, cfg.run.seed, 0, 2)
    arrays = paradigm.initial_arrays(cfg, dataset.spec)
    moved = []
    for r in range(1, 5):
        model_arrays, state = paradigm.server_configure(cfg, r, {k: np.asarray(v) for k, v in arrays.items()})
        reply = paradigm.client_round(cfg, cfg.search, {**model_arrays, **state}, dataset, split, seed=[0, r])
        moved.append(float(np.abs(reply.arrays["alpha"].numpy() - model_arrays["alpha"]).max()))
        theta = [k for k in reply.arrays if not k.startswith("alpha")]
        assert any(not np.allclose(reply.arrays[k].numpy(), model_arrays[k]) for k in theta)  # θ trains throughout
        arrays = {**{k: v.numpy() for k, v in reply.arrays.items()}, **state}
    assert moved[0] == 0.0 and moved[2] == 0.0  # the first round of each 2-round stage holds α back
    assert moved[1] > 0 and moved[3] > 0


def test_the_stage_networks_deepen():
    spec = InputSpec(1, 8, 10)
    full = np.ones((3, 8), np.float32)
    sizes = [sum(p.numel() for p in PdartsDag(spec, 3, 4, "elu", "gap", full, cells=c).parameters()) for c in (1, 2, 3)]
    assert sizes[0] < sizes[1] < sizes[2]
    cfg = parse_config({**TINY, "space": "darts", "layers": 3, "pdarts-add-layers": "0,2,4", "channels": 4})
    net = get_paradigm("pdarts").network(cfg, spec, {})
    assert isinstance(net, PdartsDarts) and len(net.cells) == 3 and net.alpha_normal.shape == (14, 8)


def test_skip_connections_are_dropped_out_in_training_only():
    drop = SkipDropout()
    drop.p = 0.5
    x = torch.ones(1000)
    assert (drop.train()(x) == 0).float().mean().item() == pytest.approx(0.5, abs=0.06)
    assert torch.equal(drop.eval()(x), x)


def test_the_final_cell_keeps_at_most_max_skip_skip_connections():
    w = np.full((6, 8), 0.01)
    w[:, SKIP] = [0.9, 0.8, 0.7, 0.95, 0.6, 0.5]  # skip is every edge's strongest op
    w[:, 4] = 0.05
    nodes = final_edges(w, [1, 2, 3], 2, max_skip=2)
    skips = [(j, i) for j, node in enumerate(nodes, start=1) for op, i in node if op == "skip_connect"]
    assert len(skips) == 2
    # the two strongest skip edges among the chosen ones stay: edge 0 (node 1) and edge 3 (node 3, input 0)
    assert skips == [(1, 0), (3, 0)]
    assert len(final_edges(w, [1, 2, 3], 2, max_skip=None)) == 3
