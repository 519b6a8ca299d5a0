"""ENAS, federated: shared child weights and a REINFORCE-trained controller, averaged by the server.

The child network is the dag supernet's edges without α: every (edge, op) keeps its own
weights, shared by all the architectures that use it (ENAS's weight sharing); an
architecture runs only its chosen ops. A client's round, after the reference's
alternation of child and controller phases:

1. ``local-steps`` child steps on D^θ, each with an architecture freshly sampled from
   the controller (SGD with the θ settings);
2. ``enas-controller-steps`` controller steps, each averaging the policy gradients of
   ``enas-num-aggregate`` sampled architectures, each rewarded by its accuracy on its own
   D^α batch of ``alpha-batch-size`` (:mod:`fednas.paradigms.controller`);
3. the server's candidates (architectures it sampled from the controller it sent) scored
   on the whole D^α (:mod:`fednas.paradigms.ranking`).

It replies the controller (``alpha_controller.*``), its reward baseline
(``alpha_baseline``), the scores (``alpha_scores``) and, when shared, the child weights.
With the DP-SGD mod on, step 2 is private (:func:`private_step`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from fednas.data import ClientSplit, ImageSet, batches
from fednas.ops import MixedOp
from fednas.paradigms.arch import Arch, arch_genotype, edge_index
from fednas.paradigms.base import Arrays, ClientRound, as_numpy, as_tensors, refuse_proximal, spec_of, split_state
from fednas.paradigms.controller import Controller, Reinforce, controller_optimizer, policy_gradient
from fednas.paradigms.oneshot import OneShot, train_shared
from fednas.paradigms.ranking import SCORES, candidates_state
from fednas.search import frozen_running_statistics, num_local_steps
from fednas.spaces import Genotype, InputSpec, Supernet, init_weights
from fednas.spaces.dag import Head, dag_edges

BASELINE = "alpha_baseline"
SAMPLE_TAG = 0xE7A5  # separates the server's candidate draws from everything else


class EnasDag(Supernet):
    """The shared child network of the dag space, with the controller as its "α".

    ``alpha_controller.*`` are the architecture parameters (what DARTS's α is to the
    pipeline), the stem, edges and head are θ. ``forward(x, arch)`` runs one
    architecture; without ``arch`` the one set in ``self.arch`` (the served one).
    """

    def __init__(self, spec: InputSpec, nodes: int, channels: int, activation: str, head: str,
                 controller: Controller) -> None:
        super().__init__()
        self.nodes = nodes
        self.stem = nn.Sequential(nn.Conv2d(spec.channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels, affine=False))
        self.edges = nn.ModuleList(MixedOp(channels, 1, activation) for _ in dag_edges(nodes))
        self.head = Head(head, channels, spec.image_size, spec.num_classes)
        self.alpha_controller = controller
        self.register_buffer("alpha_baseline", torch.zeros(1))
        self.arch: Arch | None = None

    def forward(self, x: torch.Tensor, arch: Arch | None = None) -> torch.Tensor:
        arch = self.arch if arch is None else arch
        if arch is None:
            raise ValueError("EnasDag needs an architecture: pass one or set model.arch")
        states = [self.stem(x)]
        for j, node in enumerate(arch, start=1):
            states.append(sum(self.edges[edge_index(i, j)].ops[op](states[i]) for i, op in node))
        return self.head(states[-1])

    def genotype(self, k: int = 2) -> Genotype:
        if self.arch is None:
            raise ValueError("no architecture set (model.arch)")
        return arch_genotype(self.arch)


def build_enas(cfg: Any, spec: InputSpec) -> EnasDag:
    """The seeded child network and controller of a run."""
    s, p = cfg.space, cfg.paradigm
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)
        controller = Controller(s.dag_nodes, cfg.space.genotype_k, p.enas_lstm_size, p.enas_tanh_constant,
                                p.enas_op_tanh_reduce)
        model = EnasDag(spec, s.dag_nodes, s.channels, s.activation, s.head, controller)
    init_weights(model, s.theta_init, s.theta_init_bound, 0.0, torch.Generator().manual_seed(cfg.run.seed + 1))
    controller.reset_parameters(torch.Generator().manual_seed(cfg.run.seed + 2))
    return model


def sample_candidates(cfg: Any, model: EnasDag, server_round: int) -> list[Arch]:
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([cfg.run.seed, server_round, SAMPLE_TAG])
                                            .generate_state(1)[0]))
    with torch.no_grad():
        return [model.alpha_controller.sample(gen)[0] for _ in range(cfg.paradigm.enas_derive_samples)]


def _generator(seed: Any, tag: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([*np.atleast_1d(seed).tolist(), tag])
                                             .generate_state(1)[0]))


def child_steps(model: EnasDag, dataset: ImageSet, split: ClientSplit, settings: Any, steps: int,
                rng: np.random.Generator, gen: torch.Generator, device: Any, input_noise: Any) -> dict[str, float]:
    """ENAS's child phase: SGD on D^θ, a fresh architecture from the controller every step."""
    weights = model.weight_parameters()
    opt = torch.optim.SGD(weights, lr=settings.theta_lr, momentum=settings.theta_momentum,
                          weight_decay=settings.theta_weight_decay)

    def draw() -> Arch:
        with torch.no_grad():
            return model.alpha_controller.sample(gen)[0]

    return train_shared(model, dataset, split, settings, steps, rng, device, input_noise, opt, draw, weights)


def controller_steps(model: EnasDag, dataset: ImageSet, split: ClientSplit, settings: Any, p: Any,
                     rng: np.random.Generator, gen: torch.Generator, device: Any, input_noise: Any,
                     private: Any = None) -> tuple[dict[str, float], list[list[int]]]:
    """ENAS's controller phase (module docstring); returns metrics and the D^α indices per step.

    Plain: every sampled architecture draws its own D^α batch of B. Private (the DP-SGD
    mod's rule): one Poisson batch per step at rate min(1, M·B/|D^α|), split among the M
    architectures, so that each example enters a step's gradient once (sensitivity C).
    """
    ctrl = model.alpha_controller
    opt = controller_optimizer(list(ctrl.parameters()), p.enas_controller_lr)
    rl = Reinforce(p.enas_entropy_weight, p.enas_baseline_decay, float(model.alpha_baseline))
    m, b = p.enas_num_aggregate, settings.alpha_batch_size
    if private is None:
        it = batches(split.alpha, b, rng)
        draw = lambda: [next(it) for _ in range(m)]  # noqa: E731
    else:
        it = private.sampler(split.alpha, m * b, rng)
        draw = lambda: np.array_split(next(it), m)  # noqa: E731
    used, rewards, losses = [], [], []
    for _ in range(p.enas_controller_steps):
        archs, advantages, corrects = [], [], []
        chunks = draw()
        for idx in chunks:
            with torch.no_grad():
                arch, _, ent = ctrl.sample(gen)
            correct = _correct(model, dataset, idx, arch, device, input_noise, rng)
            acc = float(correct.mean()) if len(correct) else 0.0
            archs.append(arch)
            corrects.append((correct, float(ent)))
            if private is None:
                advantages.append(rl.advantage(rl.reward(acc, ent)))
            rewards.append(acc)
        if private is None:
            grads = policy_gradient(ctrl, archs, advantages)
            losses.append(float(np.mean(advantages)))
        else:
            grads = private_step(private, ctrl, archs, corrects, rl)
        opt.zero_grad(set_to_none=True)
        for param, g in zip(ctrl.parameters(), grads):
            param.grad = g.detach()
        opt.step()
        used.append([int(i) for idx in chunks for i in idx])
    model.alpha_baseline.fill_(rl.baseline)
    metrics = {"alpha-acc": float(np.mean(rewards)) if rewards else float("nan"),
               "alpha-loss": float(np.mean(losses)) if losses else float("nan"), "controller-baseline": rl.baseline}
    return metrics, used


@torch.no_grad()
def _correct(model: EnasDag, dataset: ImageSet, idx: np.ndarray, arch: Arch, device: Any, input_noise: Any,
             rng: np.random.Generator) -> np.ndarray:
    """Per-example correctness of ``arch`` on a D^α batch (train-mode BatchNorm, frozen statistics)."""
    if len(idx) == 0:  # an empty (Poisson) batch rewards nothing
        return np.zeros(0)
    x = dataset.x[idx]
    if input_noise is not None:
        x = input_noise(x, idx, rng)
    with frozen_running_statistics(model):
        logits = model(x.to(device), arch)
    return (logits.argmax(1).cpu() == dataset.y[idx]).numpy().astype(np.float64)


def private_step(private: Any, ctrl: Controller, archs: list[Arch], corrects: list[tuple[np.ndarray, float]],
                 rl: Reinforce) -> list[torch.Tensor]:
    """DP-SGD on the controller: one example's gradient is (r_i + λH − b)·∇(−log π(a)).

    Each is clipped to the mod's C, the sum gets N(0, (zC)²), the mean divides by the
    expected number of examples (a constant). The baseline then moves by the noisy mean
    advantage read back from the privatised gradient (post-processing): nothing after
    the noise touches the data again.
    """
    from fednas.privacy import dp_sgd_gradient

    params = list(ctrl.parameters())
    per_example: dict[str, list[torch.Tensor]] = {str(n): [] for n in range(len(params))}
    directions = []
    for arch, (correct, ent) in zip(archs, corrects):
        nlp, _ = ctrl.score(arch)
        v = [torch.zeros_like(p) if g is None else g.detach()
             for p, g in zip(params, torch.autograd.grad(nlp, params, allow_unused=True))]
        directions.append(v)
        adv = torch.as_tensor(correct + rl.entropy_weight * ent - rl.baseline, dtype=v[0].dtype)
        for n, g in enumerate(v):
            per_example[str(n)].append(adv.view(-1, *([1] * g.dim())) * g.unsqueeze(0))
    stacked = {n: torch.cat(gs) for n, gs in per_example.items()}
    gen = private._generator(params[0].device)
    expected = max(private.sampler.expected_batch_size, 1.0)  # a constant: q·|D^α|
    noisy = dp_sgd_gradient(stacked, private.clip, private.noise_multiplier, expected, gen)
    private.steps += 1
    grads = [noisy[str(n)] for n in range(len(params))]
    # the noisy mean advantage: project the privatised gradient on the mean direction
    mean_dir = [sum(d[n] for d in directions) / len(directions) for n in range(len(params))]
    norm2 = float(sum((m**2).sum() for m in mean_dir))
    if norm2 > 0:
        mean_adv = float(sum((g * m).sum() for g, m in zip(grads, mean_dir))) / norm2
        rl.advantage(rl.baseline + mean_adv)  # b moves towards the noisy mean reward
    return grads


class Enas(OneShot):
    """ENAS in the dag space (module docstring)."""

    name = "enas"

    def build(self, cfg: Any, spec: InputSpec) -> EnasDag:
        return build_enas(cfg, spec)

    def initial_arrays(self, cfg: Any, spec: InputSpec) -> dict[str, Any]:
        model = build_enas(cfg, spec)
        arrays = {**model.arch_state(), BASELINE: model.alpha_baseline.clone(),
                  SCORES: torch.zeros(cfg.paradigm.enas_derive_samples)}
        if cfg.search.share_weights:
            arrays.update(model.weight_state())
        return {**arrays, **candidates_state(sample_candidates(cfg, model, 0), cfg.space.genotype_k)}

    def server_configure(self, cfg: Any, server_round: int, arrays: Arrays) -> tuple[dict[str, Any], dict[str, Any]]:
        """Sample this round's candidates from the controller the server is about to send."""
        model_arrays, state = split_state(as_numpy(arrays))
        model = build_enas(cfg, spec_of(cfg))
        model.load_arrays(as_tensors({k: v for k, v in model_arrays.items() if k.startswith("alpha_controller.")}))
        return model_arrays, candidates_state(sample_candidates(cfg, model, server_round), cfg.space.genotype_k)

    def client_round(self, cfg: Any, settings: Any, arrays: Arrays, dataset: ImageSet, split: ClientSplit, *,
                     seed: Any, device: torch.device | str = "cpu", local_theta: Arrays | None = None,
                     alpha_gradient: Any = None, input_noise: Any = None, partition_id: int = 0,
                     server_round: int = 0, proximal_mu: float | None = None) -> ClientRound:
        refuse_proximal(self, proximal_mu)
        t0 = time.perf_counter()
        model, _ = self.load(cfg, dataset.spec, arrays, local_theta)
        model = model.to(device).train()
        rng = np.random.default_rng(seed)
        gen = _generator(seed, 0xC0)
        steps = num_local_steps(settings, len(split.theta))
        metrics = child_steps(model, dataset, split, settings, steps, rng, gen, device, input_noise)
        ctrl_metrics, used = controller_steps(model, dataset, split, settings, cfg.paradigm, rng, gen, device,
                                              input_noise, alpha_gradient)
        audit = {"partition-id": partition_id, "server-round": server_round,
                 "alpha-batch-size": int(settings.alpha_batch_size), "alpha-steps": len(used),
                 "alpha-indices": [i for step in used for i in step], "alpha-batch-sizes": [len(s) for s in used]}
        return self.ranked_reply(cfg, model, arrays, dataset, split, device,
                                 {**metrics, **ctrl_metrics, "local-steps": steps,
                                  "controller-steps": cfg.paradigm.enas_controller_steps}, audit, t0,
                                 {BASELINE: model.alpha_baseline.detach().cpu().clone()})
