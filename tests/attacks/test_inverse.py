"""The learned inverse: pairs made as the client makes its update, the cache's key, and the network."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attacks import metrics as M
from attacks.adra.attack import ADRA
from attacks.adra.inverse import InverseCache, InverseSettings, invert, label_agreement, set_loss
from attacks.adra.pairs import Augment, features, make_pairs, predicted_updates, theta_spread
from attacks.base import Knowledge
from fednas.config import parse_config
from fednas.data import ClientSplit, ImageSet
from fednas.spaces import build_supernet
from fednas.spaces.base import stop_tracking_running_stats
from tests.attacks.test_adra import SPEC, _blobs, make_capture

FLAT = {"dag-nodes": 4, "channels": 4, "head": "flatten", "alpha-optimizer": "sgd", "alpha-lr": 0.01, "local-steps": 1,
        "alpha-batch-size": 1, "adra-method": "inverse", "adra-inverse-pairs": 256, "adra-inverse-epochs": 20,
        "adra-inverse-hidden": 128}


def _setup(**over):
    cfg = parse_config({**FLAT, **over})
    gen = torch.Generator().manual_seed(0)
    x = _blobs(120, gen)
    data = ImageSet("blobs", x, torch.randint(0, 4, (120,), generator=gen), 4)
    split = ClientSplit(0, np.arange(0, 20), np.arange(20, 40), np.arange(0))
    aux = np.arange(40, 120)
    return cfg, data, split, Knowledge(cfg, SPEC, data.x[aux].numpy(), data.y[aux].numpy())


def _problem(cfg, data, split, knowledge):
    cap, used = make_capture(cfg, data, split)
    problem, _ = ADRA(cfg.attack).problem(cap, knowledge)
    return problem, cap, used


def _loop_update(cfg, problem, x, y):
    """Reference: Δα of one client holding batches x (K, B, C, H, W), y (K, B), by plain autograd
    on the per-edge (unfused) supernet and torch's own optimizer, one batch at a time."""
    model = build_supernet(cfg.space, SPEC, 0, fused=False)
    v = problem.victim
    theta = {n: t[0] for n, t in v.thetas.items()}
    model.load_state_dict({**model.state_dict(), **theta, **v.alpha}, strict=True)
    model.train()
    stop_tracking_running_stats(model)
    arch = [p for _, p in model.named_arch_parameters()]
    start = [p.detach().clone() for p in arch]
    s = cfg.search
    opt = (torch.optim.SGD(arch, lr=s.alpha_lr, weight_decay=s.alpha_weight_decay) if s.alpha_optimizer == "sgd" else
           torch.optim.Adam(arch, lr=s.alpha_lr, betas=(s.alpha_beta1, 0.999), weight_decay=s.alpha_weight_decay))
    for k in range(x.shape[0]):
        opt.zero_grad()
        F.cross_entropy(model(x[k]), y[k]).backward()
        opt.step()
    return torch.cat([(p.detach() - a).reshape(-1) for p, a in zip(arch, start)])


@pytest.mark.parametrize("over", [{}, {"alpha-batch-size": 2}, {"alpha-optimizer": "adam", "alpha-lr": 0.003}])
def test_batched_pairs_match_a_per_client_loop(over):
    cfg, data, split, knowledge = _setup(**over)
    problem, _, _ = _problem(cfg, data, split, knowledge)
    b = problem.batch
    gen = torch.Generator().manual_seed(1)
    x = data.x[40:40 + 6 * b].view(6, 1, b, *data.x.shape[1:])
    y = data.y[40:40 + 6 * b].view(6, 1, b)
    batched = predicted_updates(problem, x, y, torch.zeros(6, dtype=torch.long))
    for i in range(6):
        ref = _loop_update(cfg, problem, x[i], y[i])
        assert torch.allclose(batched[i], ref, rtol=1e-4, atol=1e-9 + 1e-4 * float(ref.abs().max())), i


def test_pairs_of_several_samples_are_the_same_made_in_parts():
    # B > 1 splits a chunk's gradient call to bound memory; the pairs must not change
    cfg, data, split, knowledge = _setup(**{"alpha-batch-size": 2})
    problem, _, _ = _problem(cfg, data, split, knowledge)
    ax, ay = torch.as_tensor(knowledge.aux_images), torch.as_tensor(knowledge.aux_labels)
    whole = make_pairs(problem, ax, ay, 24, torch.Generator().manual_seed(3), chunk=2 * 24)
    parts = make_pairs(problem, ax, ay, 24, torch.Generator().manual_seed(3), chunk=24)
    assert torch.equal(whole.images[:24], parts.images[:24])
    assert torch.allclose(whole.features, parts.features, atol=1e-5)


def test_the_update_at_the_clients_own_sample_is_the_capture():
    # pairs are made as the capture was: at the client's true sample the prediction is its Δα
    cfg, data, split, knowledge = _setup()
    problem, cap, used = _problem(cfg, data, split, knowledge)
    pred = predicted_updates(problem, data.x[used].view(1, 1, 1, *data.x.shape[1:]), data.y[used].view(1, 1, 1),
                             torch.zeros(1, dtype=torch.long))[0]
    assert float((pred.double() - problem.observed.double()).norm() / problem.observed.double().norm()) < 1e-4


def test_features_are_the_unit_data_part_and_its_log_norm():
    delta = torch.tensor([[3.0, 4.0 + 1.0]])
    free = torch.tensor([0.0, 1.0])
    f = features(delta, free)
    assert torch.allclose(f, torch.tensor([[0.6, 0.8, float(np.log10(5.0))]]), atol=1e-6)


def test_augment_keeps_images_in_the_box_and_moves_them():
    x = _blobs(8, torch.Generator().manual_seed(0))
    moved = Augment().apply(x, torch.Generator().manual_seed(0))
    assert moved.shape == x.shape and float(moved.min()) >= 0 and float(moved.max()) <= 1
    assert float((moved - x).abs().max()) > 0.05
    assert torch.equal(Augment(0, 0, 0).apply(x, torch.Generator()), x)


@pytest.mark.parametrize("side", [8, 28])
def test_augment_shift_is_a_fraction_of_the_side(side):
    # a wide smooth blob in the middle: its centroid moves as the image does
    r = torch.arange(side, dtype=torch.float32) - (side - 1) / 2
    blob = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * (side / 8) ** 2))
    x = blob.expand(256, 1, side, side).clone()
    moved = Augment(shift=0.1, rotate=0, scale=0).apply(x, torch.Generator().manual_seed(0))

    def centroid(im):
        w = im[:, 0]
        return torch.stack([(w.sum(2) * r).sum(1), (w.sum(1) * r).sum(1)], 1) / w.sum((1, 2))[:, None]

    move = (centroid(moved) - centroid(x)).abs()
    assert float(move.max()) <= 0.1 * side + 0.05  # at most a tenth of the side, at any size
    assert float(move.max()) >= 0.08 * side  # and the draws reach near it


def test_the_set_loss_takes_the_best_assignment_within_a_step():
    x = torch.rand(1, 1, 2, 1, 4, 4)
    y = torch.tensor([[[0, 1]]])
    logits = 10 * F.one_hot(y, 3).float()
    swapped_x, swapped_logits = x[:, :, [1, 0]], logits[:, :, [1, 0]]
    assert torch.allclose(set_loss(swapped_x, swapped_logits, x, y, 1.0), set_loss(x, logits, x, y, 1.0))
    assert float(set_loss(x, logits, x, y, 0.0)) == 0.0


def test_label_agreement_is_accuracy_at_one_sample_and_order_free_within_a_step():
    gen = torch.Generator().manual_seed(0)
    y1 = torch.randint(0, 5, (50, 3, 1), generator=gen)
    logits1 = torch.randn(50, 3, 1, 5, generator=gen)
    assert torch.allclose(label_agreement(logits1, y1), (logits1.argmax(-1) == y1).float().mean((1, 2)))
    y = torch.tensor([[[0, 1, 1, 2]]])
    logits = 10 * F.one_hot(y[..., [2, 0, 3, 1]], 4).float()  # the same labels in another order
    assert float(label_agreement(logits, y)) == 1.0
    wrong = 10 * F.one_hot(torch.tensor([[[1, 1, 1, 3]]]), 4).float()  # only two of the 1s right
    assert float(label_agreement(wrong, y)) == 0.5


def test_the_cache_key_changes_with_everything_that_makes_the_pairs(tmp_path):
    cfg, data, split, knowledge = _setup()
    problem, cap, _ = _problem(cfg, data, split, knowledge)
    ax, ay = torch.as_tensor(knowledge.aux_images), torch.as_tensor(knowledge.aux_labels)
    base = InverseSettings(pairs=64)
    key = InverseCache.pairs_key(problem, ax, ay, base)
    assert InverseCache.pairs_key(problem, ax.clone(), ay.clone(), base) == key  # same inputs, same key
    changed = [InverseCache.pairs_key(problem, ax, ay, dataclasses.replace(base, pairs=65)),
               InverseCache.pairs_key(problem, ax, ay, dataclasses.replace(base, augment=False)),
               InverseCache.pairs_key(problem, ax, ay, dataclasses.replace(base, seed=1)),
               InverseCache.pairs_key(problem, ax[1:], ay[1:], base)]
    for what in ("alpha_lr", "alpha_weight_decay"):  # the client's procedure
        other = cfg.replace(**{what: getattr(cfg.search, what) * 2})
        changed.append(InverseCache.pairs_key(_problem(other, data, split, knowledge)[0], ax, ay, base))
    moved = dataclasses.replace(cap, alpha_t1={k: v + 1e-3 for k, v in cap.alpha_t1.items()})  # another α_t1
    changed.append(InverseCache.pairs_key(ADRA(cfg.attack).problem(moved, knowledge)[0], ax, ay, base))
    relu = cfg.replace(activation="relu")  # the same arrays, another network
    replica = dataclasses.replace(knowledge, config=relu)  # the attacker builds its replica from its config
    changed.append(InverseCache.pairs_key(_problem(relu, data, split, replica)[0], ax, ay, base))
    assert len({key, *changed}) == len(changed) + 1
    assert InverseCache.net_key(key, base) != InverseCache.net_key(key, dataclasses.replace(base, hidden=7))


def test_the_inverse_is_trained_once_then_read_from_the_cache(tmp_path):
    cfg, data, split, knowledge = _setup()
    problem, _, _ = _problem(cfg, data, split, knowledge)
    ax, ay = torch.as_tensor(knowledge.aux_images), torch.as_tensor(knowledge.aux_labels)
    settings = InverseSettings(pairs=64, epochs=2, hidden=32)
    net, fig = InverseCache(tmp_path).inverse(problem, ax, ay, settings)
    assert fig["cached"] == 0.0 and len(list(tmp_path.glob("pairs-*.pt"))) == 1
    again, fig2 = InverseCache(tmp_path).inverse(problem, ax, ay, settings)
    assert fig2["cached"] == 1.0
    f = torch.randn(3, net.mean.numel())
    assert all(torch.equal(a, b) for a, b in zip(net(f), again(f)))


def test_clients_of_one_round_share_the_attackers_theta_draws_and_so_one_inverse(tmp_path):
    """θ unknown: the surrogate draws are the attacker's, made once per round, so every client
    of a round is read by the same inverse (one pairs file); another round draws afresh."""
    cfg, data, split, knowledge = _setup(**{"knows-weights": False, "surrogate-draws": 3})
    attack = ADRA(cfg.attack)
    a, _ = make_capture(cfg, data, split, seed=0, theta=False)
    b, _ = make_capture(cfg, data, split, seed=0, theta=False)
    b = dataclasses.replace(b, id="r001-n7", node_id=7)
    c = dataclasses.replace(a, id="r002-n0", round=2)
    pa, pb, pc = (attack.problem(cap, knowledge)[0] for cap in (a, b, c))
    for name in pa.victim.thetas:
        assert torch.equal(pa.victim.thetas[name], pb.victim.thetas[name])
    assert any(not torch.equal(pa.victim.thetas[n], pc.victim.thetas[n]) for n in pa.victim.thetas)
    ax, ay = torch.as_tensor(knowledge.aux_images), torch.as_tensor(knowledge.aux_labels)
    settings = InverseSettings(pairs=32, epochs=1, hidden=16)
    InverseCache(tmp_path).inverse(pa, ax, ay, settings)
    assert InverseCache(tmp_path).inverse(pb, ax, ay, settings)[1]["cached"] == 1.0
    assert len(list(tmp_path.glob("pairs-*.pt"))) == 1


def test_the_inverse_reads_unseen_samples_better_than_the_nulls(tmp_path):
    # Trained on pairs from the aux pool only, it rebuilds the client's samples (which it
    # never saw) nearer than a random aux image of the right class, and names their labels.
    cfg, data, split, knowledge = _setup(**{"adra-inverse-pairs": 1024, "adra-inverse-epochs": 40,
                                            "adra-cache-dir": str(tmp_path), "adra-inverse-hidden": 256})
    attack = ADRA(cfg.attack)
    mse, null, labels = [], [], []
    gen = torch.Generator().manual_seed(0)
    for seed in range(6):
        cap, used = make_capture(cfg, data, split, seed=seed)
        rec = attack.reconstruct([cap], knowledge)[0]
        assert rec.status == "ok", rec.reason
        truth = data.x[used[0]].numpy()
        mse.append(M.mse(rec.images[0], truth))
        same = np.flatnonzero(knowledge.aux_labels == int(data.y[used[0]]))
        null.append(M.mse(knowledge.aux_images[same[torch.randint(len(same), (1,), generator=gen)]][0], truth))
        labels.append(int(rec.labels[0]) == int(data.y[used[0]]))
    assert np.mean(mse) < 0.5 * np.mean(null), (mse, null)
    assert sum(labels) >= 4


def test_theta_spread_is_zero_across_identical_draws_and_grows_when_they_differ():
    cfg, data, split, knowledge = _setup(**{"knows-weights": False, "surrogate-draws": 3})
    cap, _ = make_capture(cfg, data, split, seed=0, theta=False)
    problem, _ = ADRA(cfg.attack).problem(cap, knowledge)
    x, y = torch.as_tensor(knowledge.aux_images[:12]).float(), torch.as_tensor(knowledge.aux_labels[:12]).long()
    x, y = x[:, None, None], y[:, None, None]  # sets of one step, one image
    differ = theta_spread(problem, x, y)
    assert differ["draws"] == 3 and differ["across-theta"] > 0 and differ["chance"] == 1 / 12
    for t in problem.victim.thetas.values():  # every draw made the first: θ no longer matters
        t[1:] = t[0]
    same = theta_spread(problem, x, y)
    assert same["across-theta"] < 1e-10 and same["ratio"] < 1e-8
    assert same["retrieval"] == 1.0 and differ["retrieval"] < 1.0
    # the retrieval curve: among 2, 4, 8 random candidates and all 12 (the last is the retrieval itself)
    assert list(differ["retrieval-among"]) == ["2", "4", "8", "12"] and differ["retrieval-among"]["12"] == differ["retrieval"]
    assert set(same["retrieval-among"].values()) == {1.0} and differ["retrieval-among"]["2"] >= 0.5
    assert set(same["retrieval-mean-among"].values()) == {1.0} and list(differ["retrieval-mean-among"]) == ["2", "4", "8", "12"]


def test_auto_reads_by_the_inverse_where_it_can_and_searches_elsewhere(tmp_path):
    cfg, data, split, knowledge = _setup(**{"adra-method": "auto", "adra-inverse-polish": 0, "adra-iterations": 2,
                                            "adra-restarts": 1, "adra-cache-dir": str(tmp_path)})
    cap, _ = make_capture(cfg, data, split)
    read = ADRA(cfg.attack).reconstruct([cap], knowledge)[0]
    assert read.status == "ok" and read.details["solver"] == "inverse"
    blind = Knowledge(cfg, knowledge.spec, None, None)  # no aux pool: nothing to train an inverse on
    searched = ADRA(cfg.attack).reconstruct([cap], blind)[0]  # the search, which wants one for its starts
    assert searched.status == "failed" and "adra-init" in searched.reason
    wide = cfg.replace(alpha_batch_size=8)  # B = 8: 8! assignments per step, beyond the inverse
    cap8, _ = make_capture(wide, data, split)
    assert ADRA(wide.attack).reconstruct([cap8], knowledge)[0].details["solver"] == "lm"
    with pytest.raises(Exception, match="B <= 4"):  # asked for by name, the inverse refuses instead
        strict = ADRA(wide.replace(adra_method="inverse").attack).reconstruct([cap8], knowledge)[0]
        raise RuntimeError(strict.reason)


def test_concurrent_readers_of_one_round_train_its_inverse_once(tmp_path, monkeypatch):
    """Two attack workers meeting the same round at once: one trains, the other waits and reads
    the cache (the lock is per open file, so two threads stand in for two processes)."""
    import threading

    import attacks.adra.inverse as inv

    cfg, data, split, knowledge = _setup()
    problem, _, _ = _problem(cfg, data, split, knowledge)
    ax, ay = torch.as_tensor(knowledge.aux_images), torch.as_tensor(knowledge.aux_labels)
    calls, real = [], inv.train_inverse
    monkeypatch.setattr(inv, "train_inverse", lambda *a, **k: calls.append(1) or real(*a, **k))
    settings = InverseSettings(pairs=64, epochs=2, hidden=32)
    got = []
    threads = [threading.Thread(target=lambda: got.append(InverseCache(tmp_path).inverse(problem, ax, ay, settings)[1]))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(f["cached"] for f in got) == [0.0, 1.0]
