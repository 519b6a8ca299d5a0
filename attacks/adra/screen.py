"""Starting points from the attacker's auxiliary pool (a learned prior), cheap to compute.

For every aux image (with its own label) the attacker computes the architecture gradient
it would produce at α_t1 and the update the client's optimizer would make of it: a table
of first-order quantities, one batched pass, no double backward. Then:

- one sample per capture (B = 1, one local step): rank the aux images by the cosine
  between their predicted Δα and the observed one. The labels of the best matches infer
  the label; the best images of the best labels are the restarts' starting points, and
  the last start of each label is the learned inverse's image (:func:`ridge_inverse`: a
  ridge regression from the aux images' unit updates to their pixels, evaluated at the
  observed Δα);
- several samples (B > 1 or several steps): a greedy matching pursuit picks, slot after
  slot, the aux image that with the chosen ones best explains Δα, the client's procedure
  replayed step by step on their gradients (a step's gradient is its batch's mean; Adam
  normalises each step on its own, so its steps are not one step on the sum),
  randomised among the top three for restarts after the first. With B = 1 (several
  steps) the last restart is a learned inverse over whole captures
  (:func:`sequence_inverse`: random aux sequences replayed the same way, regressed on
  their pixels and labels).

The refinement (``solver.solve_strong``) then moves these images, exactly modelled, to
the observed Δα; a starting point comes from the aux pool alone, never from a client's data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attacks.adra.client_model import AlphaProcedure, replay

MAX_AUX_PIXELS = 128 * 784  # aux images screened: this many pixels' worth (a seeded subset of a larger pool)
CHUNK = 64  # most aux images per batched gradient call (fewer where images and supernet are large)


@dataclass
class Starts:
    """Initial hypotheses: images (H, K, B, C, h, w) and labels (H, K, B)."""

    images: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor  # screening cosine per hypothesis (higher is better)


def _one_step(proc: AlphaProcedure, g: torch.Tensor, temperature: float) -> torch.Tensor:
    """The optimizer's first step on gradient rows g (N, n_alpha): a predicted Δα per row."""
    one = AlphaProcedure(proc.optimizer, proc.lr, 0.0, proc.beta1, 1, proc.batch_size, proc.eps)
    return replay(one, torch.zeros_like(g), lambda k, a: g, temperature)


@torch.no_grad()
def gradient_table(victim, aux_x: torch.Tensor, aux_y: torch.Tensor, classes: int, chunk: int = CHUNK) -> torch.Tensor:
    """Per aux image (alone, its own label), ∇_α L at α_t1 averaged over the θ draws: (N, n_alpha),
    ``chunk`` images per batched call."""
    rows = []
    for start in range(0, len(aux_x), chunk):
        x = aux_x[start : start + chunk].unsqueeze(1)  # (n, B=1, C, H, W)
        y = F.one_hot(aux_y[start : start + chunk], classes).float().unsqueeze(1)
        per_draw = [victim.grads(x, y, draw=torch.full((len(x),), d, dtype=torch.long, device=x.device))
                    for d in range(victim.draws)]
        rows.append(torch.stack(per_draw).mean(0))
    return torch.cat(rows)


def screen(victim, proc: AlphaProcedure, observed: torch.Tensor, aux_x: torch.Tensor, aux_y: torch.Tensor,
           classes: int, steps: int, batch: int, restarts: int, labels_kept: int, generator: torch.Generator,
           temperature: float = 0.05, chunk: int = CHUNK) -> Starts:
    """Starting hypotheses for a capture of ``steps`` × ``batch`` samples (module docstring);
    ``chunk``: aux images per batched gradient call (it bounds the screen's memory)."""
    most = max(16, MAX_AUX_PIXELS // aux_x[0].numel())
    if len(aux_x) > most:
        keep = torch.randperm(len(aux_x), generator=generator)[:most]
        aux_x, aux_y = aux_x[keep], aux_y[keep]
    aux_x, aux_y = aux_x.to(victim.device), aux_y.to(victim.device)
    table = gradient_table(victim, aux_x, aux_y, classes, chunk)
    temp = temperature if proc.optimizer == "adam" else 0.0
    if steps * batch == 1:
        updates = _one_step(proc, table, temp)
        score = F.cosine_similarity(updates, observed[None], dim=-1)
        best_label = {int(c): float(score[aux_y == c].max()) for c in aux_y.unique()}
        chosen: list[int] = []
        for c in sorted(best_label, key=best_label.get, reverse=True)[:labels_kept]:
            rows = torch.nonzero(aux_y == c).flatten()
            chosen += rows[torch.argsort(score[rows], descending=True)[:restarts]].tolist()
        idx = torch.tensor(chosen, device=aux_x.device)
        images = aux_x[idx].view(len(idx), 1, 1, *aux_x.shape[1:]).clone()
        learned = ridge_inverse(updates, aux_x, observed) if restarts > 1 else None  # one start: the best aux image
        if learned is not None:
            # the learned inverse takes the last start of every label hypothesis
            images[restarts - 1 :: restarts] = learned.view(1, 1, 1, *aux_x.shape[1:])
        return Starts(images, aux_y[idx].view(-1, 1, 1), score[idx])
    starts = _pursuit(proc, table, observed, aux_x, aux_y, steps, batch, restarts, generator, temp)
    # B > 1: a step's images are exchangeable, so a regression could only give their mean
    learned = (sequence_inverse(proc, table, observed, aux_x, aux_y, steps, batch, temp, classes)
               if restarts > 1 and batch == 1 else None)
    if learned is not None:  # the learned inverse takes the last restart
        starts.images[-1], starts.labels[-1] = learned
    return starts


def _pursuit(proc, table, observed, aux_x, aux_y, steps, batch, restarts, generator, temp) -> Starts:
    n = steps * batch
    images, labels, scores = [], [], []
    for r in range(restarts):
        chosen: list[int] = []
        score = torch.tensor(0.0, device=table.device)
        for slot in range(n):
            updates = _slot_updates(proc, table, chosen, slot, steps, batch, temp)
            s = F.cosine_similarity(updates, observed[None], dim=-1)
            if chosen:
                s[torch.tensor(chosen, device=s.device)] = -2.0  # each aux image once
            top = torch.argsort(s, descending=True)[:3]
            pick = int(top[0]) if r == 0 else int(top[torch.randint(len(top), (1,), generator=generator)])
            chosen.append(pick)
            score = s[pick]
        idx = torch.tensor(chosen, device=aux_x.device)
        images.append(aux_x[idx].view(steps, batch, *aux_x.shape[1:]))
        labels.append(aux_y[idx].view(steps, batch))
        scores.append(score)
    return Starts(torch.stack(images), torch.stack(labels), torch.stack(scores))


def _slot_updates(proc: AlphaProcedure, table: torch.Tensor, chosen: list[int], slot: int, steps: int, batch: int,
                  temp: float) -> torch.Tensor:
    """Predicted Δα (N, n_alpha) with every aux image as the candidate for ``slot``.

    The client's procedure is replayed step by step (two Adam steps are not one step on
    the summed gradient): a step's gradient is the mean over its chosen images and the
    candidate; the steps after the candidate's have none yet (zero: for SGD this is the
    matching pursuit on the summed gradient). The table is at α_t1 (α's drift is left out).
    """
    here = slot // batch
    grads = []
    for k in range(steps):
        rows = chosen[k * batch : (k + 1) * batch]
        if k < here:
            grads.append(table[rows].mean(0).expand_as(table))
        elif k == here:
            grads.append((table[rows].sum(0) + table) / (len(rows) + 1) if rows else table)
        else:
            grads.append(torch.zeros_like(table))
    many = AlphaProcedure(proc.optimizer, proc.lr, 0.0, proc.beta1, steps, proc.batch_size, proc.eps)
    return replay(many, torch.zeros_like(table), lambda k, a: grads[k], temp)


RIDGE_LAMBDAS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)  # times the mean squared singular value of the features


@dataclass
class Ridge:
    """Ridge regression of centred targets on centred features, held as an SVD (all λ at once)."""

    mu_f: torch.Tensor
    mu_y: torch.Tensor
    u: torch.Tensor  # (N, r)
    sv: torch.Tensor  # (r,)
    vt: torch.Tensor  # (r, F)
    uty: torch.Tensor  # (r, D): Uᵀ(Y − mean)

    @classmethod
    def fit(cls, feats: torch.Tensor, targets: torch.Tensor) -> Ridge:
        mu_f, mu_y = feats.mean(0), targets.mean(0)
        u, sv, vt = torch.linalg.svd(feats - mu_f, full_matrices=False)
        return cls(mu_f, mu_y, u, sv, vt, u.T @ (targets - mu_y))

    def penalty(self, rel: float) -> float:
        return rel * float((self.sv**2).mean())

    def loo_error(self, lam: float, targets: torch.Tensor) -> float:
        """Mean squared leave-one-out error, in closed form: residual / (1 − hat diagonal)."""
        shrink = self.sv**2 / (self.sv**2 + lam)
        fit = self.u @ (shrink[:, None] * self.uty)
        hat = 1.0 / len(self.u) + (self.u**2 * shrink).sum(1)  # the intercept's share, then the features
        return float((((targets - self.mu_y - fit) / (1 - hat).clamp_min(1e-9)[:, None]) ** 2).mean())

    def predict(self, lam: float, feats: torch.Tensor) -> torch.Tensor:
        coef = (feats - self.mu_f) @ self.vt.T
        return self.mu_y + (coef * self.sv / (self.sv**2 + lam)) @ self.uty


def ridge_inverse(updates: torch.Tensor, aux_x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor | None:
    """An image for ``observed`` from a learned inverse: ridge regression from the aux images'
    unit predicted updates (N, n_alpha) to their pixels, λ chosen by leave-one-out error.

    Where the aux pool is sparse its best-matching image is far from the client's; the
    regression interpolates between aux images and often starts closer (a linear, per-capture
    "learning to invert" attack of the gradient-inversion literature). None: fewer than
    ``RIDGE_MIN`` aux images with a non-zero update.
    """
    norms = updates.norm(dim=1)
    ok = norms > 0  # a saturated aux image has no gradient at all
    if int(ok.sum()) < RIDGE_MIN:
        return None
    feats = (updates[ok] / norms[ok, None]).double()
    pixels = aux_x[ok].reshape(int(ok.sum()), -1).double()
    ridge = Ridge.fit(feats, pixels)
    lam = min((ridge.penalty(rel) for rel in RIDGE_LAMBDAS), key=lambda lam: ridge.loo_error(lam, pixels))
    target = observed.double() / observed.norm().clamp_min(1e-30)
    return ridge.predict(lam, target[None])[0].clamp(0.0, 1.0).to(aux_x.dtype)


RIDGE_MIN = 8


def sequence_inverse(proc: AlphaProcedure, table: torch.Tensor, observed: torch.Tensor, aux_x: torch.Tensor,
                     aux_y: torch.Tensor, steps: int, batch: int, temp: float,
                     classes: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Images (steps, B, C, H, W) and labels (steps, B) for ``observed`` from a learned inverse
    over whole captures: ``SETS`` random sequences of aux images, each replayed through the
    client's procedure on the gradient table (as the pursuit does), their unit updates
    regressed on their pixels and one-hot labels (ridge, λ by leave-one-out).

    The replay tells Adam's steps apart, so the regression can place images in their steps
    (the screen uses it with B = 1: within a step the order is free, and images would blur
    towards their batch's mean). None: fewer than ``RIDGE_MIN`` aux images with a non-zero gradient.
    """
    rows = torch.nonzero(table.norm(dim=1) > 0).flatten()
    if len(rows) < RIDGE_MIN:
        return None
    n = steps * batch
    pick = rows[torch.randint(len(rows), (SETS, n), generator=torch.Generator().manual_seed(0)).to(rows.device)]
    grads = [table[pick[:, k * batch : (k + 1) * batch]].mean(1) for k in range(steps)]
    many = AlphaProcedure(proc.optimizer, proc.lr, 0.0, proc.beta1, steps, proc.batch_size, proc.eps)
    updates = replay(many, torch.zeros_like(grads[0]), lambda k, a: grads[k], temp)
    norms = updates.norm(dim=1, keepdim=True)
    keep = norms[:, 0] > 0
    feats = (updates[keep] / norms[keep]).double()
    pixels = aux_x[pick[keep]].reshape(int(keep.sum()), -1).double()
    onehot = F.one_hot(aux_y[pick[keep]], classes).reshape(int(keep.sum()), -1).double()
    ridge = Ridge.fit(feats, torch.cat([pixels, onehot], 1))
    lam = min((ridge.penalty(rel) for rel in RIDGE_LAMBDAS),
              key=lambda lam: ridge.loo_error(lam, torch.cat([pixels, onehot], 1)))
    target = observed.double() / observed.norm().clamp_min(1e-30)
    pred = ridge.predict(lam, target[None])[0]
    size = pixels.shape[1]
    images = pred[:size].clamp(0.0, 1.0).to(aux_x.dtype).view(steps, batch, *aux_x.shape[1:])
    labels = pred[size:].view(steps, batch, classes).argmax(-1)
    return images, labels


SETS = 2048  # random aux sequences the capture-level learned inverse is fitted on
