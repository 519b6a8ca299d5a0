"""ENAS's controller: an LSTM that samples a cell, decision by decision, and its REINFORCE step.

Written after ENAS's ``micro_controller.py`` (Pham et al. 2018, melodyguan/enas) for the
``dag`` space: node 0 is the one "anchor" a cell starts from (ENAS's cells start from
two); for every later node j the LSTM picks k inputs among the j earlier nodes (attention
over their anchors) and k ops among the non-``none`` candidates, feeding each choice
back as its next input; after a node, its hidden state becomes that node's anchor.
Logits are ``tanh_constant · tanh(·)`` (ops: divided by ``op_tanh_reduce``), the op
logits start biased towards the separable convolutions (the reference's ``b_soft``
of 10 on its two conv ops, and a fixed ±0.25), every weight U(−0.1, 0.1).

REINFORCE as the reference's ``build_trainer``: reward R = accuracy of the sampled child
on a D^α batch + entropy_weight · (the sample's entropy, a constant); baseline
b ← b − (1 − decay)(b − R) *before* the loss; loss = −log π(a) · (R − b). The gradients of
``num_aggregate`` samples are averaged (the reference's SyncReplicas) and applied with
Adam(lr, β1 = 0, ε = 1e-3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fednas.ops import PRIMITIVES
from fednas.paradigms.arch import OP_CHOICES, Arch

ADAM_BETAS = (0.0, 0.999)
ADAM_EPS = 1e-3
_BIASED_OPS = ("sep_conv_3x3", "sep_conv_5x5")  # the reference's first two ops


class Controller(nn.Module):
    """ENAS's micro controller for a P-node dag with k inputs per node (one LSTM layer)."""

    def __init__(self, nodes: int, k: int = 2, lstm_size: int = 64, tanh_constant: float = 1.1,
                 op_tanh_reduce: float = 2.5, temperature: float | None = None) -> None:
        super().__init__()
        self.nodes, self.k, self.size = nodes, k, lstm_size
        self.tanh_constant, self.op_tanh_reduce, self.temperature = tanh_constant, op_tanh_reduce, temperature
        n_ops, h = len(OP_CHOICES), lstm_size
        self.w_lstm = nn.Parameter(torch.empty(2 * h, 4 * h))
        self.g_emb = nn.Parameter(torch.empty(1, h))
        self.w_emb = nn.Parameter(torch.empty(n_ops, h))
        self.w_soft = nn.Parameter(torch.empty(h, n_ops))
        self.b_soft = nn.Parameter(torch.empty(1, n_ops))
        self.w_attn_1 = nn.Parameter(torch.empty(h, h))
        self.w_attn_2 = nn.Parameter(torch.empty(h, h))
        self.v_attn = nn.Parameter(torch.empty(h, 1))
        biased = torch.tensor([PRIMITIVES[o] in _BIASED_OPS for o in OP_CHOICES])
        self.register_buffer("b_soft_no_learn", torch.where(biased, 0.25, -0.25).view(1, n_ops))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-0.1, 0.1, generator=generator)
            biased = self.b_soft_no_learn.view(-1) > 0
            self.b_soft.copy_(torch.where(biased, 10.0, 0.0).view_as(self.b_soft))

    def _lstm(self, x: torch.Tensor, c: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i, f, o, g = (torch.cat([x, h], dim=1) @ self.w_lstm).chunk(4, dim=1)
        c = torch.sigmoid(i) * torch.tanh(g) + torch.sigmoid(f) * c
        return c, torch.sigmoid(o) * torch.tanh(c)

    def _shape(self, logits: torch.Tensor, constant: float | None) -> torch.Tensor:
        if self.temperature is not None:
            logits = logits / self.temperature
        if constant:
            logits = constant * torch.tanh(logits)
        return logits

    def walk(self, choose: Callable[[torch.Tensor, int, int, str], int]) -> tuple[Arch, torch.Tensor, torch.Tensor]:
        """Run the decisions; ``choose(logits, node, slot, kind)`` returns each one.

        Returns the architecture, −log π(a) (the reference's summed cross-entropies,
        differentiable) and the sample's entropy (detached, as the reference's).
        """
        zeros = self.g_emb.new_zeros(1, self.size)
        c, h = zeros, zeros
        c, h = self._lstm(self.g_emb, c, h)
        anchors, anchors_w = [zeros], [h @ self.w_attn_1]
        neg_log_prob = self.g_emb.new_zeros(())
        entropy = self.g_emb.new_zeros(())
        arch = []
        op_constant = self.tanh_constant / self.op_tanh_reduce if self.tanh_constant else None
        for j in range(1, self.nodes):
            inputs, picks = self.g_emb, []
            for slot in range(self.k):
                c, h = self._lstm(inputs, c, h)
                query = torch.tanh(torch.cat(anchors_w, dim=0) + h @ self.w_attn_2) @ self.v_attn
                logits = self._shape(query.view(1, j), self.tanh_constant)
                index = choose(logits, j, slot, "input")
                neg_log_prob, entropy = self._account(logits, index, neg_log_prob, entropy)
                picks.append(index)
                inputs = anchors[index]
            ops = []
            for slot in range(self.k):
                c, h = self._lstm(inputs, c, h)
                logits = self._shape(h @ self.w_soft + self.b_soft, op_constant) + self.b_soft_no_learn
                op = choose(logits, j, slot, "op")
                neg_log_prob, entropy = self._account(logits, op, neg_log_prob, entropy)
                ops.append(op)
                inputs = self.w_emb[op : op + 1]
            c, h = self._lstm(inputs, c, h)
            anchors.append(h)
            anchors_w.append(h @ self.w_attn_1)
            arch.append(tuple((i, OP_CHOICES[o]) for i, o in zip(picks, ops)))
        return tuple(arch), neg_log_prob, entropy

    @staticmethod
    def _account(logits: torch.Tensor, index: int, nlp: torch.Tensor, ent: torch.Tensor):
        log_p = F.log_softmax(logits.view(-1), dim=0)
        return nlp - log_p[index], ent + (-(log_p.exp() * log_p).sum()).detach()

    def sample(self, generator: torch.Generator | None = None) -> tuple[Arch, torch.Tensor, torch.Tensor]:
        """Draw an architecture (multinomial at every decision)."""
        def draw(logits: torch.Tensor, j: int, slot: int, kind: str) -> int:
            return int(torch.multinomial(torch.softmax(logits.view(-1).detach(), 0), 1, generator=generator))

        return self.walk(draw)

    def greedy(self) -> tuple[Arch, torch.Tensor, torch.Tensor]:
        """The most probable decision at every step (what an observer of the controller alone would guess)."""
        return self.walk(lambda logits, j, slot, kind: int(torch.argmax(logits.view(-1))))

    def forward(self, arch: Arch) -> torch.Tensor:
        """−log π(arch), for ``torch.func.functional_call``."""
        return self.score(arch)[0]

    def score(self, arch: Arch) -> tuple[torch.Tensor, torch.Tensor]:
        """(−log π(arch), entropy) with the decisions of ``arch`` (teacher forcing)."""
        op_index = {op: n for n, op in enumerate(OP_CHOICES)}

        def given(logits: torch.Tensor, j: int, slot: int, kind: str) -> int:
            i, op = arch[j - 1][slot]
            return i if kind == "input" else op_index[op]

        _, nlp, ent = self.walk(given)
        return nlp, ent


@dataclass
class Reinforce:
    """The controller's REINFORCE estimate with a moving-average baseline (module docstring)."""

    entropy_weight: float
    decay: float
    baseline: float = 0.0

    def reward(self, accuracy: float, entropy: float) -> float:
        return float(accuracy) + self.entropy_weight * float(entropy)

    def advantage(self, reward: float) -> float:
        """Update the baseline with ``reward`` (first, as the reference) and return R − b."""
        self.baseline -= (1.0 - self.decay) * (self.baseline - reward)
        return reward - self.baseline


def policy_gradient(controller: Controller, archs: Sequence[Arch], advantages: Sequence[float]) -> list[torch.Tensor]:
    """Mean over samples of (R − b)·∇(−log π(a)): the gradient the controller's Adam applies."""
    params = list(controller.parameters())
    total = [torch.zeros_like(p) for p in params]
    for arch, adv in zip(archs, advantages):
        nlp, _ = controller.score(arch)
        for t, g in zip(total, torch.autograd.grad(nlp * adv, params, allow_unused=True)):
            if g is not None:  # the last node's anchor feeds no decision
                t.add_(g)
    return [t / max(len(archs), 1) for t in total]


def controller_optimizer(params: Sequence[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """The reference's Adam for the controller (β1 = 0, ε = 1e-3)."""
    return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS)
