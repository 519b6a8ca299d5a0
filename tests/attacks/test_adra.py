"""ADRA on captures made by the real local search, in small set-ups that run in seconds."""

import copy
import dataclasses
import inspect

import numpy as np
import pytest
import torch

from attacks import metrics as M
from attacks.adra.attack import ADRA
from attacks.adra.victim import Victim
from attacks.base import Knowledge
from fednas.captures import Capture
from fednas.config import parse_config, search_to_record
from fednas.data import ClientSplit, ImageSet
from fednas.search import local_search
from fednas.spaces import InputSpec, build_supernet

SPEC = InputSpec(1, 4, 4)  # small images (4x4), four classes


def _blobs(n, gen):
    """Smooth images in [0, 1]: two Gaussian blobs each."""
    size = SPEC.image_size
    r = torch.arange(float(size))
    out = torch.zeros(n, 1, size, size)
    for i in range(n):
        for _ in range(2):
            cy, cx = torch.rand(2, generator=gen) * (size - 1)
            out[i, 0] += torch.exp(-((r[:, None] - cy) ** 2 + (r[None, :] - cx) ** 2) / 1.5)
    return (out / out.amax((1, 2, 3), keepdim=True)).clamp(0, 1)


def make_capture(cfg, data, split, seed=0, round_=1, theta=True):
    """A capture as the eavesdropper records it, from a real local search."""
    model = build_supernet(cfg.space, SPEC, seed)
    start = copy.deepcopy(model)
    result = local_search(model, data, split, cfg.search, [seed], "cpu")
    cap = Capture(id=f"r{round_:03d}-n{seed}", round=round_, node_id=seed, partition_id=0,
                  alpha_t1={k: v.numpy() for k, v in start.arch_state().items()},
                  alpha_t2={k: v.numpy() for k, v in model.arch_state().items()},
                  theta_t1={k: v.numpy() for k, v in start.weight_state().items()} if theta else {},
                  train_config={**search_to_record(cfg.search), "server-round": round_},
                  metrics={"local-steps": result.steps})
    return cap, [i for b in result.alpha_batches for i in b]


@pytest.fixture(scope="module")
def easy():
    """P = 6 on 4x4 images (15 edges x 8 = 120 alpha entries for 16 pixels), SGD, B = 1, one step."""
    cfg = parse_config({"dag-nodes": 6, "channels": 4, "head": "flatten", "alpha-optimizer": "sgd", "alpha-lr": 0.01,
                        "local-steps": 1, "alpha-batch-size": 1, "adra-iterations": 50, "adra-restarts": 4,
                        "adra-lr": 0.05, "adra-tv": 0.0, "adra-method": "search"})  # the search's tests
    gen = torch.Generator().manual_seed(0)
    x = _blobs(60, gen)
    data = ImageSet("blobs", x, torch.randint(0, 4, (60,), generator=gen), 4)
    split = ClientSplit(0, np.arange(0, 20), np.arange(20, 40), np.arange(0))
    aux = np.arange(40, 60)
    knowledge = Knowledge(cfg, SPEC, data.x[aux].numpy(), data.y[aux].numpy())
    return cfg, data, split, knowledge


def test_strong_mode_rebuilds_the_sample_in_an_easy_setup(easy):
    cfg, data, split, knowledge = easy
    cap, used = make_capture(cfg, data, split)
    rec = ADRA(cfg.attack).reconstruct([cap], knowledge)[0]
    assert rec.status == "ok", rec.reason
    truth = data.x[used[0]].numpy()
    assert rec.images.shape == (1, 1, 4, 4)
    assert M.psnr(M.mse(rec.images[0], truth)) > 17.0
    assert int(rec.labels[0]) == int(data.y[used[0]])
    pool = data.x[split.alpha].numpy()
    assert int(split.alpha[M.nearest(rec.images[0], pool)]) == used[0]


def test_paper_mode_returns_denoised_images_in_the_box(easy):
    cfg, data, split, knowledge = easy
    paper = cfg.replace(adra_mode="paper", adra_iterations=5, knows_weights=False)
    cap, _ = make_capture(paper, data, split)
    rec = ADRA(paper.attack).reconstruct([cap], knowledge)[0]
    assert rec.status == "ok", rec.reason
    assert rec.images.min() >= 0.0 and rec.images.max() <= paper.attack.adra_kappa
    assert rec.details["theta-knowledge"].startswith("surrogate")


def test_the_attack_interface_cannot_receive_the_truth():
    params = list(inspect.signature(ADRA.reconstruct).parameters)
    assert params == ["self", "captures", "knowledge"]
    fields = {f.name for f in dataclasses.fields(Capture)} | {f.name for f in dataclasses.fields(Knowledge)}
    assert not fields & {"truth", "audit", "alpha_indices", "indices", "data", "split"}
    with pytest.raises(TypeError):
        ADRA(parse_config().attack).reconstruct([], None, truth={})  # no way to pass it


@pytest.mark.parametrize("damage, words", [
    (lambda c: dataclasses.replace(c, alpha_t2={k: np.full_like(v, np.nan) for k, v in c.alpha_t2.items()}), "NaN or Inf"),
    (lambda c: dataclasses.replace(c, alpha_t2={k: v[:-1] for k, v in c.alpha_t2.items()}), "has shape"),
    (lambda c: dataclasses.replace(c, alpha_t2={}), "lacks"),
    (lambda c: dataclasses.replace(c, alpha_t2=c.alpha_t1), "zero"),
    (lambda c: dataclasses.replace(c, status="failed", reason="the reply has no alpha"), "no alpha"),
    (lambda c: dataclasses.replace(c, train_config={"alpha-lr": -1}), "train config"),
])
def test_a_bad_capture_is_reported_not_fatal(easy, damage, words):
    cfg, data, split, knowledge = easy
    good, _ = make_capture(cfg, data, split)
    quick = cfg.replace(adra_iterations=1, adra_restarts=1)
    recs = ADRA(quick.attack).reconstruct([damage(good), good], knowledge)
    assert recs[0].status == "failed" and words in recs[0].reason
    assert recs[1].status == "ok"


def test_theta_priors_say_what_the_attacker_knew(easy):
    from attacks.adra.theta import attacker_theta, server_init_theta
    from fednas.config import search_from_record

    cfg, data, split, knowledge = easy
    cap, _ = make_capture(cfg, data, split, seed=cfg.run.seed)
    model = build_supernet(cfg.space, SPEC, 0)
    search = search_from_record(cap.train_config)
    wire = attacker_theta(cap, knowledge, cfg.attack, search, model.named_weight_parameters(), 1)
    assert wire.knowledge == "wire θ_t1" and wire.exact
    blind = cfg.attack.__class__(**{**cfg.attack.__dict__, "knows_weights": False, "theta_prior": "init"})
    init = attacker_theta(cap, knowledge, blind, search, model.named_weight_parameters(), 1)
    theta0 = server_init_theta(cfg, SPEC)
    assert init.exact and "round 1" in init.knowledge
    for name, value in init.thetas[0].items():  # the server's own seeded θ_0: what the client started from
        torch.testing.assert_close(value, theta0[name])
        torch.testing.assert_close(value, torch.as_tensor(cap.theta_t1[name]))
    later = dataclasses.replace(cap, round=3)
    assert not attacker_theta(later, knowledge, blind, search, model.named_weight_parameters(), 1).exact
    shadow = cfg.attack.__class__(**{**cfg.attack.__dict__, "knows_weights": False, "theta_prior": "shadow",
                                     "surrogate_draws": 2})
    moved = attacker_theta(later, knowledge, shadow, search, model.named_weight_parameters(), 1)
    assert len(moved.thetas) == 2 and "2 rounds on aux" in moved.knowledge
    drift = [sum(float((t[n] - theta0[n]).norm()) for n in theta0) for t in moved.thetas]
    assert all(d > 0 for d in drift) and drift[0] != drift[1]  # two trajectories, both moved off θ_0
    surrogate = cfg.attack.__class__(**{**cfg.attack.__dict__, "knows_weights": False, "surrogate_draws": 3})
    draws = attacker_theta(cap, knowledge, surrogate, search, model.named_weight_parameters(), 1)
    assert len(draws.thetas) == 3 and "×3" in draws.knowledge and not draws.exact


def test_paper_mode_averages_its_objective_over_theta_draws(easy):
    from attacks.adra.paper import _paper_grads
    from attacks.adra.theta import surrogate_theta

    cfg, data, split, knowledge = easy
    model = build_supernet(cfg.space, SPEC, 0)
    thetas = surrogate_theta(model, 0.25, 2, 7)
    victim = Victim(cfg.space, SPEC, model.arch_state(), thetas)
    x, y = torch.rand(1, 1, 1, 4, 4), torch.randn(1, 1, 4)
    both = _paper_grads(victim, x, y)
    for d in range(2):
        alone = Victim(cfg.space, SPEC, model.arch_state(), [thetas[d]]).grads(x, torch.softmax(y, -1))
        torch.testing.assert_close(both[d], alone[0])


def test_knobs_are_honoured_or_refused_before_anything_runs(easy):
    from fednas.config import ConfigError

    cfg, data, split, knowledge = easy
    with pytest.raises(ConfigError, match="lbfgs"):
        parse_config({"adra-mode": "strong", "adra-optimizer": "lbfgs"})
    cap, _ = make_capture(cfg, data, split)
    adam = ADRA(cfg.replace(adra_optimizer="adam", adra_iterations=2).attack).reconstruct([cap], knowledge)[0]
    lm = ADRA(cfg.replace(adra_optimizer="lm", adra_iterations=2).attack).reconstruct([cap], knowledge)[0]
    assert adam.details["solver"] == "adam" and lm.details["solver"] == "lm"
    second = cfg.replace(alpha_order="second", adra_iterations=1)
    cap2, _ = make_capture(second, data, split)
    rec = ADRA(second.attack).reconstruct([cap2], knowledge)[0]
    assert rec.status == "ok" and rec.details["fidelity"].startswith("not modelled: second-order")
    assert rec.details["fidelity"] != "exact" and adam.details["fidelity"] == "exact"


def test_a_capture_holding_only_weight_decay_is_refused_with_the_reason(easy):
    """A client whose loss is exactly 0 (its softmax saturated on the right class) sends Δα = −lr·wd·α_t1."""
    cfg, data, split, knowledge = easy
    cap, _ = make_capture(cfg, data, split)
    lr, wd = cfg.search.alpha_lr, cfg.search.alpha_weight_decay
    assert wd > 0
    decay_only = dataclasses.replace(cap, alpha_t2={k: v - lr * wd * v for k, v in cap.alpha_t1.items()})
    rec = ADRA(cfg.attack).reconstruct([decay_only], knowledge)[0]
    assert rec.status == "failed" and "weight decay alone" in rec.reason
    # the real capture of the same round is attacked
    assert ADRA(dataclasses.replace(cfg.attack, adra_iterations=1)).reconstruct([cap], knowledge)[0].status == "ok"


def test_the_screen_sizes_its_gradient_calls_to_memory_and_chunking_changes_nothing(easy):
    import dataclasses

    from attacks.adra.screen import CHUNK, gradient_table
    from attacks.adra.solver import FIRST_ORDER_SHARE, screen_chunk, set_budget

    cfg, data, split, knowledge = easy
    cap, _ = make_capture(cfg, data, split)
    problem, _ = ADRA(cfg.attack).problem(cap, knowledge)
    aux_x, aux_y = torch.as_tensor(knowledge.aux_images), torch.as_tensor(knowledge.aux_labels)
    one_by_one = gradient_table(problem.victim, aux_x, aux_y, 4, chunk=1)
    assert torch.allclose(gradient_table(problem.victim, aux_x, aux_y, 4, chunk=7), one_by_one, rtol=1e-4, atol=1e-7)
    assert screen_chunk(problem) == CHUNK  # a small supernet at 8x8: the cap
    budget = FIRST_ORDER_SHARE * set_budget(problem.victim.device)
    for side in (280, 900, 5000):  # larger images: fewer per call, never 0, within the budget while > 1
        big = dataclasses.replace(problem, image_shape=(1, side, side))
        chunk = screen_chunk(big)
        per = problem.victim.n_alpha / 8 * side * side
        assert 1 <= chunk < CHUNK and (chunk == 1 or chunk * per <= budget)


def test_aux_starts_include_the_learned_inverse_and_the_coarse_stage_keeps_their_detail(easy):
    from attacks.adra.priors import PCA
    from attacks.adra.screen import _one_step, gradient_table, ridge_inverse, screen
    from attacks.adra.solver import _lm_stage

    cfg, data, split, knowledge = easy
    cap, _ = make_capture(cfg, data, split)
    problem, _ = ADRA(cfg.attack).problem(cap, knowledge)
    aux_x, aux_y = torch.as_tensor(knowledge.aux_images), torch.as_tensor(knowledge.aux_labels)
    restarts = 3
    starts = screen(problem.victim, problem.proc, problem.observed, aux_x, aux_y, 4, 1, 1, restarts, 2,
                    torch.Generator().manual_seed(0))
    table = gradient_table(problem.victim, aux_x, aux_y, 4)
    learned = ridge_inverse(_one_step(problem.proc, table, 0.0), aux_x, problem.observed)
    for last in starts.images[restarts - 1 :: restarts]:  # one per label hypothesis
        assert torch.allclose(last.flatten(), learned)
    # no LM step taken: 'around' hands each start back whole, re-encoding keeps only 3 components
    x0 = starts.images[:2]
    basis = PCA((1, 1, *x0.shape[-3:]), knowledge.aux_images, 3)
    fixed = starts.labels[:2]
    kept, *_ = _lm_stage(problem, basis, x0, fixed, None, 0.0, "coarse", 0, {}, lambda *a: None, "cosine", around=True)
    assert torch.allclose(kept, x0)
    coded, *_ = _lm_stage(problem, basis, x0, fixed, None, 0.0, "coarse", 0, {}, lambda *a: None, "cosine")
    assert not torch.allclose(coded, x0, atol=1e-3)


def test_label_groups_follow_the_screens_ranking():
    from attacks.adra.solver import _label_groups

    fixed = torch.tensor([7, 7, 2, 2, 9, 9, 0, 0, 4]).view(-1, 1, 1)
    groups = _label_groups(fixed, 2)
    assert [fixed.flatten()[g].tolist() for g in groups] == [[7, 7, 2, 2], [9, 9, 0, 0], [4]]


@pytest.mark.parametrize("matches, runs, best", [([0.05, 0.01], 1, 0.05), ([0.4, 0.02], 2, 0.02),
                                                 ([0.4, 0.9], 2, 0.4), ([float("nan"), 0.3], 2, 0.3)])
def test_the_next_labels_are_refined_only_while_the_match_stays_high(matches, runs, best):
    from attacks.adra import solver

    assert solver.LABEL_GROUPS == 2 and solver.ESCALATE_MATCH == 0.1
    calls = []

    def refine(rows):
        calls.append(rows.tolist())
        m = matches[len(calls) - 1]
        return solver.Solution(torch.full((1, 1, 1, 2, 2), m), torch.zeros(1, 1, dtype=torch.long), m, 4, 10)

    groups = [torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5])]
    sol = solver._escalate(refine, groups)
    assert calls == [[0, 1], [2, 3]][:runs]  # never the third group
    assert sol.match == best and sol.hypotheses == 4 * runs and sol.iterations == 10 * runs


def test_only_free_pixels_refine_the_next_labels(easy, monkeypatch):
    # a learned basis never matches below ESCALATE_MATCH, so it keeps to the screen's first labels
    from attacks.adra import solver

    cfg, data, split, knowledge = easy
    cap, _ = make_capture(cfg, data, split)
    monkeypatch.setattr(solver, "ESCALATE_MATCH", -1.0)  # every match counts as too high
    for prior, groups in (("none", 2), ("pca", 1)):  # 4 classes: groups of 3 labels and 1
        run = cfg.replace(adra_prior=prior, adra_prior_components=4, adra_iterations=2).attack
        problem, _ = ADRA(run).problem(cap, knowledge)
        args = (knowledge.aux_images, knowledge.aux_labels)
        _, fixed, _ = solver._starts(problem, run, torch.Generator().manual_seed(0), *args)
        rows = solver._label_groups(fixed, solver.LABELS_KEPT)
        assert len(rows) == 2
        sol = solver.solve_strong(problem, run, torch.Generator().manual_seed(0), *args)
        assert sol.hypotheses == sum(len(r) for r in rows[:groups]), prior
