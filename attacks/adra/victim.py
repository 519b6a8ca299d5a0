"""The attacker's replica of a client's model, and batched architecture gradients.

ADRA compares the observed Δα with the architecture gradient of dummy inputs. This module
rebuilds the supernet the client trained (``build_supernet`` from the public config, so a
fused supernet speeds the attack up for free), loads the round's α_t1 and a θ (the server's
θ_t1, or surrogate draws), and computes ∇_α L for many independent dummy batches at once
with ``torch.func.vmap``: restarts, label hypotheses and θ draws are one batched call, each
element a separate batch of B images with its own BatchNorm statistics, exactly as the
client's train-mode forward pass sees its own batch.
"""

from __future__ import annotations

import math

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from fednas.spaces import InputSpec, build_supernet
from fednas.spaces.base import stop_tracking_running_stats


def _batchnorm_as_in_the_alpha_step(model: torch.nn.Module) -> None:
    """The one place that decides how the replica's BatchNorm behaves.

    The client's α step runs in train mode (BatchNorm normalises by the batch's own
    statistics) and leaves the running statistics as they were (``fednas.search``), so the
    replica runs in train mode and never updates them: the updates change no gradient.
    """
    model.train()
    stop_tracking_running_stats(model)  # any module: another app's network too


def _transformed(t: torch.Tensor) -> bool:
    """Whether ``t`` is wrapped by a torch.func transform (jacfwd, vmap): plain autograd cannot run there."""
    return torch._C._functorch.is_functorch_wrapped_tensor(t)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against soft (or one-hot) targets of shape (B, classes)."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(-1).mean()


class Victim:
    """A client's model as the attacker rebuilds it at the start of a round.

    Parameters
    ----------
    space : SpaceConfig
        The public ``space`` section of the run's config.
    spec : InputSpec
        Input shape and classes (public: the dataset's).
    alpha : mapping
        α_t1 by parameter name (what the server sent).
    thetas : sequence of mappings
        One or more θ (by name): the server's θ_t1, or surrogate draws. Gradients are
        computed under each; the attack averages its loss over them.
    alpha_l2 : float
        The ``alpha-l2`` penalty the server's train config asks the client to add.
    model : torch.nn.Module, optional
        The replica to use (another app's network, ``Knowledge.build_model``); default: the
        supernet ``space`` describes, built from ``seed``.
    split : callable, optional
        ``model -> (α, θ)`` as named parameters (``Knowledge.split_parameters``); default:
        the supernet's own ``named_arch_parameters``/``named_weight_parameters``.
    """

    def __init__(self, space: Any, spec: InputSpec, alpha: Mapping[str, torch.Tensor],
                 thetas: Sequence[Mapping[str, torch.Tensor]] | None, alpha_l2: float = 0.0,
                 seed: int = 0, device: torch.device | str = "cpu", model: torch.nn.Module | None = None,
                 split: Callable[[Any], tuple[list, list]] | None = None) -> None:
        model = (build_supernet(space, spec, seed) if model is None else model).to(device)
        _batchnorm_as_in_the_alpha_step(model)
        for p in model.parameters():
            p.requires_grad_(False)
        arch, weights = split(model) if split is not None else (model.named_arch_parameters(),
                                                               model.named_weight_parameters())
        self.model, self.spec, self.device, self.alpha_l2 = model, spec, torch.device(device), alpha_l2
        self.alpha_names = [n for n, _ in arch]
        self.alpha_shapes = [tuple(p.shape) for _, p in arch]
        missing = [n for n in self.alpha_names if n not in alpha]
        if missing:
            raise KeyError(f"α_t1 lacks {missing}")
        self.alpha = {n: torch.as_tensor(alpha[n], dtype=torch.float32).to(device) for n in self.alpha_names}
        for n, shape in zip(self.alpha_names, self.alpha_shapes):
            if tuple(self.alpha[n].shape) != shape:
                raise ValueError(f"α_t1 {n!r} has shape {tuple(self.alpha[n].shape)}, the supernet expects {shape}")
        own = dict(weights)
        if not thetas:
            thetas = [{n: p.detach() for n, p in own.items()}]
        stacked = {}
        for n, p in own.items():
            vals = []
            for t in thetas:
                if n not in t:
                    raise KeyError(f"θ lacks {n!r}")
                v = torch.as_tensor(t[n], dtype=p.dtype).to(device)
                if v.shape != p.shape:
                    raise ValueError(f"θ {n!r} has shape {tuple(v.shape)}, the supernet expects {tuple(p.shape)}")
                vals.append(v)
            stacked[n] = torch.stack(vals)
        self.thetas = stacked  # name -> (draws × steps, *shape)
        self.steps = 1  # θ per draw: one per local α step where the replay moves θ (:meth:`per_step`)
        self.draws = len(thetas)
        self.buffers = {n: b.detach() for n, b in model.named_buffers()}
        self.n_alpha = sum(math.prod(s) for s in self.alpha_shapes)
        self.sets = bool(getattr(model, "supports_sets", False))  # many hypotheses in one pass
        self._token, self._slots = object(), None  # which θ the model holds (:meth:`_hold`)
        self.batch_gradient = self._build()  # (theta, alpha_flat, x, y) -> ∇_α L of one batch

    def per_step(self, steps: int) -> None:
        """Read the θ list as ``draws`` × ``steps``: draw d's θ at local step k is entry d·steps + k."""
        total = self.draws * self.steps
        if steps < 1 or total % steps:
            raise ValueError(f"{total} θ cannot be read as draws of {steps} steps each")
        self.steps, self.draws = steps, total // steps

    @property
    def alpha_flat(self) -> torch.Tensor:
        return torch.cat([self.alpha[n].reshape(-1) for n in self.alpha_names])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """α by name from flat vectors: [n_alpha] -> shapes, [N, n_alpha] -> [N, *shape]."""
        lead, out, i = flat.shape[:-1], {}, 0
        for n, s in zip(self.alpha_names, self.alpha_shapes):
            k = math.prod(s)
            out[n] = flat[..., i : i + k].reshape(*lead, *s)
            i += k
        return out

    def _build(self):
        model, l2 = self.model, self.alpha_l2

        def one(theta, alpha_flat, x, y):
            def loss(a_flat):
                alphas = self.unflatten(a_flat)
                logits = functional_call(model, {**theta, **self.buffers, **alphas}, (x,))
                value = soft_cross_entropy(logits, y)
                if l2 > 0:
                    value = value + l2 * (a_flat**2).sum()
                return value

            return grad(loss)(alpha_flat)

        return one

    def _hold(self, index: int) -> torch.nn.Module:
        """The model with θ entry ``index`` as its weights (swapped in when another is there).

        ``functional_call`` with the whole θ swaps thousands of tensors in and out on every
        call (a third of a capture's time at P = 32); held between calls, only α is swapped
        per call. The tensors are swapped, never written into, so a graph built under one
        θ stays valid after another is held. The model is the victim's from then on.
        """
        model = self.model
        held = getattr(model, "_adra_held", None)
        if held is None or held[0] is not self._token or held[1] != index:
            if self._slots is None:
                self._slots = [(model.get_submodule(n.rpartition(".")[0]), n.rpartition(".")[2], n)
                               for n in self.thetas]
            for module, leaf, name in self._slots:
                module._parameters[leaf] = self.thetas[name][index]
            model._adra_held = (self._token, index)
        return model

    def _set_gradients(self, index: int, alpha: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """∇_α L of N batches in one pass of the supernet, one set of samples per batch, under
        θ entry ``index``."""
        n, b = x.shape[:2]
        create = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad or alpha.requires_grad)
        with torch.enable_grad():
            a = alpha if alpha.requires_grad else alpha.detach().requires_grad_(True)
            alphas = self.unflatten(a)
            # a supernet has no tied weights, and α's few tensors are all that is swapped
            logits = functional_call(self._hold(index), alphas, (x.reshape(n * b, *x.shape[2:]),), {"sets": n},
                                     tie_weights=False)
            per_sample = -(y.reshape(n * b, -1) * F.log_softmax(logits, dim=-1)).sum(-1)
            loss = per_sample.view(n, b).mean(1).sum()  # the sets' losses, summed: each α gets its own gradient
            if self.alpha_l2 > 0:
                loss = loss + self.alpha_l2 * (a**2).sum()
            (g,) = torch.autograd.grad(loss, a, create_graph=create)
        return g

    def grads(self, x: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor | None = None,
              draw: torch.Tensor | None = None, step: int = 0) -> torch.Tensor:
        """∇_α L for N independent batches.

        Parameters
        ----------
        x : tensor (N, B, C, H, W)
            N dummy batches of B images.
        y : tensor (N, B, classes)
            Their (soft) labels.
        alpha : tensor (N, n_alpha), optional
            α at which to take each gradient (default α_t1 for all): unrolled steps move it.
        draw : long tensor (N,), optional
            Which θ draw each batch uses (default 0).
        step : int
            The client's local α step (its θ where the replay moves θ between steps; the last
            one beyond them).

        Returns
        -------
        tensor (N, n_alpha), differentiable with respect to ``x``, ``y`` and ``alpha`` when
        they require gradients (and grad mode is on).

        A supernet that evaluates independent sets of samples in one pass
        (``supports_sets``: the fused ``dag``) computes all N gradients with one forward and
        one backward, each batch its own set (own BatchNorm statistics, own α); others go
        through ``torch.func.vmap``.
        """
        n = x.shape[0]
        if alpha is None:
            alpha = self.alpha_flat.expand(n, -1)
        if draw is None:
            draw = torch.zeros(n, dtype=torch.long, device=x.device)
        which = draw.to(x.device) * self.steps + min(step, self.steps - 1)
        out = torch.empty(n, self.n_alpha, dtype=x.dtype, device=x.device)
        parts = []
        for d in range(self.draws * self.steps):
            rows = (which == d).nonzero().flatten()
            if len(rows) == 0:
                continue
            if self.sets and not _transformed(x):
                parts.append((rows, self._set_gradients(d, alpha[rows], x[rows], y[rows])))
                continue
            theta = {k: v[d] for k, v in self.thetas.items()}
            # θ enters unbatched (in_dims None): a batched weight would turn every convolution
            # into a grouped one whose double backward loops over the groups
            fn = vmap(self.batch_gradient, in_dims=(None, 0, 0, 0))
            parts.append((rows, fn(theta, alpha[rows], x[rows], y[rows])))
        if len(parts) == 1 and len(parts[0][0]) == n:
            return parts[0][1]
        return out.index_put((torch.cat([r for r, _ in parts]),), torch.cat([g for _, g in parts]))
