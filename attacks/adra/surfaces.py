"""What ADRA attacks in each NAS paradigm: the replica, the wire's architecture arrays, the procedure.

ADRA matches the observed update of the architecture arrays with the update a replica
of the client would make on dummy data. The replica and the update rule depend on the
paradigm (``paradigm`` in the run's public config):

- ``darts``: the space's supernet, Δα from the client's α optimizer (unchanged);
- ``pdarts``: the stage's search network, rebuilt from the server state the capture
  recorded as sent (stage, kept ops); α has the stage's shape. The skip-connect dropout
  is random on the client and cannot be replayed: the replica runs without it;
- ``enas``: the controller's REINFORCE update (:class:`ControllerVictim`);
- ``smash``: no architecture gradient reaches the wire (its ``alpha_scores`` are
  accuracies of fixed candidates): there is nothing for gradient matching to attack,
  and every capture fails with that reason.

Another app's model (``Knowledge.target``, the eavesdropper plugin) is a gradient surface
on the replica the knowledge builds, split into α and θ by its ``alpha-pattern``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from attacks.adra.client_model import AlphaProcedure, local_alpha_steps
from attacks.adra.victim import Victim
from fednas.paradigms import STATE_PREFIX, get_paradigm
from fednas.paradigms.controller import ADAM_BETAS, ADAM_EPS
from fednas.paradigms.enas import build_enas
from fednas.registry import Registry
from fednas.spaces import InputSpec, Supernet, build_supernet


class NoArchitectureGradient(ValueError):
    """The paradigm puts no architecture gradient on the wire (the reason is the message)."""


def _own_split(model: Any) -> tuple[list, list]:
    return model.named_arch_parameters(), model.named_weight_parameters()


@dataclass
class Surface:
    """One capture's attack surface: the replica and how the client turns data into the update."""

    model: Supernet
    theta_t1: dict[str, np.ndarray]  # θ the server sent, without its paradigm state
    victim: Callable[[dict, list, float, Any], Victim]  # (α_t1, θ draws, alpha-l2, device) -> victim
    procedure: Callable[[Any, int], AlphaProcedure]  # (search settings, steps) -> procedure
    steps: Callable[[Any, dict], int]  # (search settings, reply metrics) -> architecture steps
    split: Callable[[Any], tuple[list, list]] = _own_split  # model -> (α, θ) named parameters


def _theta(capture: Any) -> dict[str, np.ndarray]:
    return {k: v for k, v in capture.theta_t1.items() if not k.startswith(STATE_PREFIX)}


def _alpha_steps(search: Any, metrics: dict) -> int:
    return local_alpha_steps(search, metrics)


def _gradient_surface(cfg: Any, spec: InputSpec, model: Any, capture: Any,
                      split: Callable[[Any], tuple[list, list]] = _own_split) -> Surface:
    def victim(alpha: dict, thetas: list, l2: float, device: Any = "cpu") -> Victim:
        return Victim(cfg.space, spec, alpha, thetas, alpha_l2=l2, device=device, model=model, split=split)

    return Surface(model, _theta(capture), victim, AlphaProcedure.from_settings, _alpha_steps, split)


def darts_surface(cfg: Any, spec: InputSpec, capture: Any) -> Surface:
    return _gradient_surface(cfg, spec, build_supernet(cfg.space, spec, 0), capture)


def pdarts_surface(cfg: Any, spec: InputSpec, capture: Any) -> Surface:
    state = {k: v for k, v in capture.theta_t1.items() if k.startswith(STATE_PREFIX)}
    if not state:
        raise ValueError("the capture holds no P-DARTS server state (paradigm.*) among the arrays sent")
    model = get_paradigm("pdarts").network(cfg, spec, state)
    model.set_skip_dropout(0.0)  # the client's dropout masks are random: not replayable
    return _gradient_surface(cfg, spec, model, capture)


def enas_surface(cfg: Any, spec: InputSpec, capture: Any) -> Surface:
    model = build_enas(cfg, spec)
    p = cfg.paradigm

    def victim(alpha: dict, thetas: list, l2: float, device: Any = "cpu") -> Victim:
        return ControllerVictim(cfg, spec, alpha, thetas, model, device)

    def procedure(search: Any, steps: int) -> AlphaProcedure:
        return AlphaProcedure("adam", p.enas_controller_lr, 0.0, ADAM_BETAS[0], steps,
                              p.enas_num_aggregate * search.alpha_batch_size, ADAM_EPS)

    def steps(search: Any, metrics: dict) -> int:
        return int(metrics.get("controller-steps", p.enas_controller_steps))

    return Surface(model, _theta(capture), victim, procedure, steps)


def smash_surface(cfg: Any, spec: InputSpec, capture: Any) -> Surface:
    raise NoArchitectureGradient(
        "paradigm smash sends no architecture gradient: its architecture-level state is alpha_scores, the "
        "accuracies of fixed candidate architectures on the client's whole D^alpha (piecewise constant in every "
        "input); nothing for gradient matching to invert (docs/paradigms.md)")


# ADRA's own extension point: what it attacks in each paradigm (fednas.registry.PARADIGMS), as
# f(config, InputSpec, capture) -> Surface. A paradigm added without one is refused by name.
SURFACES = Registry("ADRA surface (paradigm)")
SURFACES.register("darts", darts_surface, "alpha by gradient: the supernet's alpha gradient")
SURFACES.register("pdarts", pdarts_surface, "the stage's pruned network, as the server state says")
SURFACES.register("enas", enas_surface, "the controller's REINFORCE update")
SURFACES.register("smash", smash_surface, "none: SMASH sends no architecture gradient")


def attack_surface(knowledge: Any, capture: Any) -> Surface:
    """The surface of one capture: another app's model (``knowledge.target``), else the
    run's paradigm (a clear error on an unknown one)."""
    cfg, spec = knowledge.config, knowledge.spec
    if knowledge.target is not None:
        return _gradient_surface(cfg, spec, knowledge.build_model(0), capture, knowledge.split_parameters)
    return SURFACES.get(cfg.paradigm.paradigm)(cfg, spec, capture)  # unknown: an error naming the known ones


class ControllerVictim(Victim):
    """ENAS's controller update as a function of one dummy batch (the :class:`Victim` interface).

    The client samples an architecture per reward and the wire does not say which; the
    replica takes the controller's most probable one at α_t1 for every sample (the best
    single guess). For a batch (x, y): R = accuracy of that child on x (y may be soft)
    + entropy_weight · its entropy; b' = b − (1 − decay)(b − R) from the baseline sent;
    the predicted gradient is (R − b')·∇(−log π(a)). The accuracy depends on x only
    through an argmax: its derivative is zero, which the replica makes exact by reading
    x detached (so that identifiability's Jacobian costs one forward, not one per pixel).
    """

    def __init__(self, cfg: Any, spec: InputSpec, alpha: dict, thetas: list, model: Any, device: str = "cpu") -> None:
        p = cfg.paradigm
        self.entropy_weight, self.decay = p.enas_entropy_weight, p.enas_baseline_decay
        self.baseline = float(np.asarray(alpha.get("alpha_baseline", [0.0])).reshape(-1)[0])
        self.classes = spec.num_classes
        ctrl = model.alpha_controller
        with torch.no_grad():
            ctrl.load_state_dict({k[len("alpha_controller."):]: torch.as_tensor(np.asarray(v))
                                  for k, v in alpha.items() if k.startswith("alpha_controller.")}, strict=False)
            self.arch, _, entropy = ctrl.greedy()
        self.entropy = float(entropy)
        super().__init__(cfg.space, spec, alpha, thetas, model=model, device=device)

    def _build(self):
        model, names, shapes = self.model, self.alpha_names, self.alpha_shapes
        ctrl_names = [n[len("alpha_controller."):] for n in names]
        arch, classes = self.arch, self.classes

        def neg_log_prob(a_flat: torch.Tensor) -> torch.Tensor:
            params, i = {}, 0
            for n, s in zip(ctrl_names, shapes):
                k = int(np.prod(s))
                params[n] = a_flat[i : i + k].reshape(s)
                i += k
            return functional_call(model.alpha_controller, params, (arch,))

        buffers = self.buffers

        def one(theta, alpha_flat, x, y):
            logits = functional_call(model, {**theta, **buffers}, (x.detach(),), {"arch": arch})
            hits = F.one_hot(logits.argmax(-1), classes).to(y.dtype)
            reward = (hits * y).sum(-1).mean() + self.entropy_weight * self.entropy
            baseline = self.baseline - (1.0 - self.decay) * (self.baseline - reward)
            return (reward - baseline) * grad(neg_log_prob)(alpha_flat)

        return one


__all__ = ["SURFACES", "Surface", "attack_surface", "ControllerVictim", "NoArchitectureGradient"]
