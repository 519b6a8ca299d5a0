"""The strong reconstruction recipe, and what both recipes share (the paper's: ``paper``).

Both search dummy images (and labels) whose architecture gradient explains the observed
Δα. Strong: the client's known α procedure replayed step after step (optimizer model),
a cosine (or normalised L2) distance, every label tried (or soft labels optimised),
TV and box priors or a PCA prior, several restarts per label with the weak labels
dropped early, and the best match kept. All hypotheses of a capture are one batched
computation (see ``victim.Victim.grads``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from attacks.adra.client_model import AlphaProcedure, replay
from attacks.adra.lm import forward_difference_jacobian, levenberg_marquardt
from attacks.adra.priors import PCA, Pixels, total_variation
from attacks.adra.screen import CHUNK, screen
from attacks.adra.victim import Victim

log = logging.getLogger(__name__)

Report = Callable[[str, int, int, "float | None"], None]  # (stage, iteration, iterations, best match)


@dataclass
class Problem:
    """One capture, as the solvers see it."""

    victim: Victim
    proc: AlphaProcedure
    observed: torch.Tensor  # Δα, flat (n_alpha,)
    steps: int  # local α steps modelled (1 when not unrolled)
    batch: int  # B
    local_steps: int  # α steps the client took
    classes: int
    image_shape: tuple[int, int, int]
    distance: str = "cosine"  # resolved adra-distance (auto: l2 where the replay is exact, else cosine)


@dataclass
class Solution:
    images: torch.Tensor  # (steps, B, C, H, W) in [0, 1]
    labels: torch.Tensor  # (steps, B)
    match: float
    hypotheses: int
    iterations: int


def _distance(kind: str, pred: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(pred, obs.expand_as(pred), dim=-1, eps=1e-30)
    if kind == "l2":
        return ((pred - obs) ** 2).sum(-1) / (obs**2).sum().clamp_min(1e-30)
    raise ValueError(f"unknown adra-distance {kind!r}; choose cosine or l2")


# --------------------------------------------------------------------------- strong


def _temperature(it: int, total: int, start: float = 1.0, end: float = 0.02) -> float:
    """Adam's smoothed sign: geometric from ``start`` to ``end`` over the run."""
    return start * (end / start) ** (it / max(total - 1, 1))


def _predict(problem: Problem, x: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """Predicted Δα per (hypothesis, θ draw): x (H, K, B, C, h, w), y (H, K, B, classes) -> (H·draws, n_alpha)."""
    v = problem.victim
    h, draws = x.shape[0], v.draws
    xe = x.repeat_interleave(draws, 0)
    ye = y.repeat_interleave(draws, 0)
    draw = torch.arange(draws, device=x.device).repeat(h)
    alpha0 = v.alpha_flat.expand(h * draws, -1)
    return replay(problem.proc, alpha0, lambda k, a: v.grads(xe[:, k], ye[:, k], a, draw, step=k), temperature)


def _match(problem: Problem, x: torch.Tensor, y: torch.Tensor, distance: str, temperature: float) -> torch.Tensor:
    """Distance per hypothesis, averaged over θ draws. x (H, K, B, C, h, w), y (H, K, B, classes)."""
    pred = _predict(problem, x, y, temperature)
    return _distance(distance, pred, problem.observed).view(x.shape[0], problem.victim.draws).mean(1)


def _starts(problem: Problem, s: Any, generator: torch.Generator, aux_images,
            aux_labels) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Initial images (H, K, B, C, h, w), and fixed labels (H, K, B) or label logits (H, K, B, classes)."""
    k, b, c = problem.steps, problem.batch, problem.classes
    labels_mode = s.adra_labels
    if labels_mode == "auto":
        labels_mode = "try-all" if k * b == 1 else "joint"
    if labels_mode == "try-all" and k * b != 1:
        raise ValueError(f"adra-labels = 'try-all' needs one sample per capture, this one has {k} steps x B={b}; "
                         "use joint or auto")
    if s.adra_init == "aux":
        if aux_images is None:
            raise ValueError("adra-init = 'aux' needs the attacker's aux pool (Knowledge.aux_images)")
        starts = screen(problem.victim, problem.proc, problem.observed, torch.as_tensor(aux_images),
                        torch.as_tensor(aux_labels), c, k, b, s.adra_restarts,
                        LABELS_KEPT * LABEL_GROUPS if labels_mode == "try-all" else 1, generator,
                        chunk=screen_chunk(problem))
        if labels_mode == "try-all":
            return starts.images, starts.labels, None
        return starts.images, None, LABEL_CONFIDENCE * F.one_hot(starts.labels, c).float()
    shape = (k, b, *problem.image_shape)
    dev = problem.victim.device
    if labels_mode == "try-all":
        n = c * s.adra_restarts
        fixed = torch.arange(c).repeat_interleave(s.adra_restarts).view(-1, 1, 1)
        return torch.rand((n, *shape), generator=generator).to(dev), fixed.to(dev), None
    n = s.adra_restarts
    return (torch.rand((n, *shape), generator=generator).to(dev), None,
            0.1 * torch.randn((n, k, b, c), generator=generator).to(dev))


LABELS_KEPT = 3  # aux screening, one sample per capture: labels whose best aux images start hypotheses
LABEL_GROUPS = 2  # groups of LABELS_KEPT labels refined at most (the next only while the match stays high)
ESCALATE_MATCH = 0.1  # a best match above this (relative l2 or 1 − cos) refines the next group of labels
LABEL_CONFIDENCE = 4.0  # joint labels start as softmax(4 * one-hot): 0.86 on the screened label


def match_at(problem: Problem, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The distance strong mode minimises, at given images (K, B, C, H, W) and labels (K, B).

    At the client's true samples (a benchmark knows them) it tells a solver's failure
    (the truth matches far better than the reconstruction) from missing information.
    """
    temp = ADAM_TEMPERATURE_LM if problem.proc.optimizer == "adam" else 0.0
    dev = problem.victim.device
    y = F.one_hot(labels.long(), problem.classes).float()
    with torch.no_grad():
        return float(_match(problem, images[None].float().to(dev), y[None].to(dev), problem.distance, temp)[0])


def strong_optimizer(s: Any) -> str:
    """The refinement optimizer of strong mode: ``lm`` (the default, ``auto``) or ``adam``."""
    name = "lm" if s.adra_optimizer == "auto" else s.adra_optimizer
    if name not in STRONG_OPTIMIZERS:
        raise ValueError(f"adra-optimizer = {s.adra_optimizer!r} is not available in strong mode; choose one of: "
                         f"auto, {', '.join(STRONG_OPTIMIZERS)}")
    return name


def iterations(s: Any, optimizer: str) -> int:
    """``adra-iterations``, or the optimizer's own budget when it is 0 (auto)."""
    return s.adra_iterations if s.adra_iterations > 0 else DEFAULT_ITERATIONS[optimizer]


STRONG_OPTIMIZERS = ("lm", "adam")
DEFAULT_ITERATIONS = {"lm": 40, "adam": 300, "lbfgs": 300}
ADAM_TEMPERATURE_LM = 0.05  # the smoothed sign of an Adam client's first step, in Gauss-Newton's residual


def make_param(problem: Problem, s: Any, aux_images) -> Pixels | PCA:
    """The dummy's parametrisation: pixels, or the aux pool's principal components (``adra-prior``)."""
    k, b = problem.steps, problem.batch
    shape = (k, b, *problem.image_shape)
    prior = s.adra_prior
    if prior == "auto":
        prior = "none" if k * b * math.prod(problem.image_shape) <= PIXELS_MAX else "pca"
    if prior == "pca":
        if aux_images is None:
            raise ValueError("adra-prior = 'pca' needs the attacker's aux pool (Knowledge.aux_images)")
        return PCA(shape, aux_images, s.adra_prior_components, device=problem.victim.device)
    return Pixels(shape)


PIXELS_MAX = 256  # adra-prior = auto: free pixels up to this many unknowns per hypothesis, else pca


def solve_strong(problem: Problem, s: Any, generator: torch.Generator, aux_images=None, aux_labels=None,
                 progress: Report | None = None) -> Solution:
    """Strong mode (see the module docstring). ``s`` is the ``attack`` config section."""
    optimizer = strong_optimizer(s)
    report = progress or (lambda *a: None)
    report("screen", 0, 1, None)
    x0, fixed, logits0 = _starts(problem, s, generator, aux_images, aux_labels)
    param = make_param(problem, s, aux_images)

    def refine(rows: torch.Tensor) -> Solution:
        f, lg = (None if t is None else t[rows] for t in (fixed, logits0))
        if optimizer == "lm":
            return _refine_lm(problem, s, param, x0[rows], f, lg, report, aux_images)
        return _refine_adam(problem, s, param, x0[rows], f, lg, report)

    if fixed is None or s.adra_init != "aux":  # joint labels, or noise starts for every label: one run
        return refine(torch.arange(len(x0), device=x0.device))
    groups = _label_groups(fixed, LABELS_KEPT)
    if not isinstance(param, Pixels):
        # a learned basis cannot hold the sample exactly: its best match stays above
        # ESCALATE_MATCH (0.12-0.55 for the truth's own projection at 28x28), whatever the labels
        return refine(groups[0])
    return _escalate(refine, groups)


def _label_groups(fixed: torch.Tensor, per_group: int) -> list[torch.Tensor]:
    """Hypothesis rows in groups of ``per_group`` labels, in the order the labels first appear
    (the screen's ranking)."""
    order: list[int] = []
    for label in fixed.flatten().tolist():
        if label not in order:
            order.append(label)
    flat = fixed.flatten()
    return [torch.nonzero(torch.isin(flat, torch.tensor(order[i : i + per_group], device=flat.device))).flatten()
            for i in range(0, len(order), per_group)]


def _escalate(refine: Callable[[torch.Tensor], Solution], groups: list[torch.Tensor]) -> Solution:
    """Refine the best-screened labels' hypotheses; while the best match stays above
    ``ESCALATE_MATCH``, the next group of labels too (up to ``LABEL_GROUPS``), and keep the best.

    The screen ranks the true label first in most captures but not all (6th of 10 in one of
    18 measured at P = 32); a match that high means the run found no image that explains Δα.
    """
    best: Solution | None = None
    hypotheses = iters = 0
    for rows in groups[:LABEL_GROUPS]:
        sol = refine(rows)
        hypotheses, iters = hypotheses + sol.hypotheses, iters + sol.iterations
        if best is None or sol.match < best.match or not math.isfinite(best.match):
            best = sol
        if best.match <= ESCALATE_MATCH:
            break
        log.info("best match %.3g > %.3g: refining the next labels", best.match, ESCALATE_MATCH)
    return Solution(best.images, best.labels, best.match, hypotheses, iters)


def _labels(problem: Problem, fixed: torch.Tensor | None, logits: torch.Tensor | None) -> torch.Tensor:
    k, b, c = problem.steps, problem.batch, problem.classes
    return F.one_hot(fixed.expand(-1, k, b), c).float() if fixed is not None else torch.softmax(logits, -1)


def _finish(problem: Problem, s: Any, param, params: torch.Tensor | None, fixed, logits, temperature: float,
            hypotheses: int, its: int, report: Report, images: torch.Tensor | None = None) -> Solution:
    """Score the surviving hypotheses (``params``, or their ``images``) once more and keep the best match."""
    report("final", 0, 1, None)
    with torch.no_grad():
        x = param.images(params) if images is None else images
        y = _labels(problem, fixed, logits)
        final = _match(problem, x, y, problem.distance, temperature)
    best = int(torch.argmin(torch.nan_to_num(final, nan=math.inf)))
    report("final", 1, 1, float(final[best]))
    return Solution(x[best].detach().cpu(), y[best].argmax(-1).cpu(), float(final[best]), hypotheses, its)


def _refine_adam(problem: Problem, s: Any, param, x0, fixed, logits0, report: Report) -> Solution:
    """Adam on pixels (or coefficients), TV and box priors, cosine-annealed, successive halving."""
    params = param.encode(x0).requires_grad_(True)
    label_params = logits0.clone().requires_grad_(True) if logits0 is not None else None
    n = len(x0)
    total = iterations(s, "adam")
    # successive halving: the best half of the hypotheses at 25% of the run, the best quarter at 50%
    stages = {int(total * 0.25): max(1, n // 2), int(total * 0.5): max(1, n // 4)}
    opt = torch.optim.Adam([params] + ([label_params] if label_params is not None else []), lr=s.adra_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    adam = problem.proc.optimizer == "adam"
    for it in range(total):
        temp = _temperature(it, total) if adam else 0.0
        y = _labels(problem, fixed, label_params)
        x = param.images(params)
        dist = _match(problem, x, y, problem.distance, temp)
        loss = dist + s.adra_tv * total_variation(x.flatten(1, 2))
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        sched.step()
        param.project(params)
        if it in stages and stages[it] < len(dist):
            params, fixed, label_params = _prune(opt, [params, fixed, label_params], dist.detach(), stages[it])
        report("refine", it + 1, total, float(torch.nan_to_num(dist.detach(), nan=math.inf).min()))
    temp = _temperature(total - 1, total) if adam else 0.0
    logits = label_params.detach() if label_params is not None else None
    return _finish(problem, s, param, params.detach(), fixed, logits, temp, n, total, report)


def _refine_lm(problem: Problem, s: Any, param, x0, fixed, logits0, report: Report,
               aux_images=None) -> Solution:
    """Levenberg–Marquardt on the batched hypotheses (attacks.adra.lm), coarse to fine.

    ``coarse``: every hypothesis, a few steps in a small basis (the aux pool's first
    principal components: cheap Jacobians, a smoother landscape) around its start; the best
    ``KEEP_FINE`` go on. ``refine``: those in the full parametrisation (``adra-prior``)
    until they plateau. Moving around each start instead of re-encoding it in the basis
    keeps what a good start (the learned inverse) has beyond the first components.
    """
    temp = ADAM_TEMPERATURE_LM if problem.proc.optimizer == "adam" else 0.0
    total = iterations(s, "lm")
    n_hyp = len(x0)
    around = s.adra_init == "aux"  # a noise start has no detail worth keeping: re-encoding it denoises it
    coarse = _coarse_param(problem, param, aux_images)
    if coarse is not None and n_hyp > KEEP_FINE:
        # cosine: scale-free, so a start whose gradient is far too large or small still moves
        x0, fixed, logits0, _ = _lm_stage(problem, coarse, x0, fixed, logits0, temp, "coarse", COARSE_ITERATIONS,
                                          {COARSE_ITERATIONS: KEEP_FINE}, report, "cosine", around=around)
    # a PCA prior refines around each start too: its detail beyond the components stays
    x, fixed, logits, its = _lm_stage(problem, param, x0, fixed, logits0, temp, "refine", total,
                                      {2: max(1, len(x0) // 2), 4: max(1, len(x0) // 4)}, report, problem.distance,
                                      around=around and isinstance(param, PCA))
    return _finish(problem, s, param, None, fixed, logits, temp, n_hyp, its, report, images=x)


KEEP_FINE = 2  # hypotheses that go on from the coarse stage to the full parametrisation
COARSE_ITERATIONS = 6
COARSE_COMPONENTS = 12


def _coarse_param(problem: Problem, param, aux_images) -> PCA | None:
    """The coarse stage's basis: the first principal components of the aux pool (None: no pool)."""
    if aux_images is None or (isinstance(param, PCA) and param.k <= COARSE_COMPONENTS):
        return None
    shape = (problem.steps, problem.batch, *problem.image_shape)
    return PCA(shape, aux_images, COARSE_COMPONENTS, device=problem.victim.device)


def _lm_stage(problem: Problem, param, x0, fixed, logits0, temp: float, stage: str, total: int,
              keep: dict[int, int], report: Report, distance: str, around: bool = False):
    """One LM run from images ``x0`` in ``param``'s coordinates; returns the survivors' images,
    labels (fixed or logits) and the iterations taken.

    ``around``: the unknowns are moves in ``param``'s basis (a PCA) away from each start
    itself, from 0, so that a start keeps the detail the basis cannot hold.
    """
    n_hyp = len(x0)
    base = x0.detach() if around else None
    coeffs = torch.zeros(n_hyp, *param.param_shape, device=x0.device) if around else param.encode(x0).detach()
    n_img = coeffs[0].numel()
    u0 = coeffs.reshape(n_hyp, -1)
    if logits0 is not None:
        u0 = torch.cat([u0, logits0.reshape(n_hyp, -1)], 1)
    lab_shape = (problem.steps, problem.batch, problem.classes)
    core = _residual_fn(problem, param, n_img, lab_shape, temp, distance)
    onehot = F.one_hot(fixed.expand(-1, *lab_shape[:2]), lab_shape[2]).float() if fixed is not None else None

    def residual(u: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return core(u, onehot[rows] if onehot is not None else None, base[rows] if base is not None else None)

    chunk = set_chunk(problem)

    def jacobian(u: torch.Tensor, rows: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return forward_difference_jacobian(residual, u, rows, r, FD_STEP, chunk)

    def project(u: torch.Tensor) -> torch.Tensor:
        head = u[:, :n_img].reshape(len(u), *coeffs.shape[1:]).clone()
        param.project(head)
        return torch.cat([head.reshape(len(u), -1), u[:, n_img:]], 1)

    def progress(it: int, tot: int, best: float) -> None:
        report(stage, it, tot, _cost_to_match(best, problem, distance))

    res = levenberg_marquardt(residual, jacobian, u0, project, iterations=total, keep=keep, report=progress)
    with torch.no_grad():
        u_img = res.u[:, :n_img].reshape(len(res.u), *coeffs.shape[1:])
        x = (base[res.rows] + param.offsets(u_img)).clamp(0.0, 1.0) if around else param.images(u_img)
    fixed_rows = fixed[res.rows] if fixed is not None else None
    logits = res.u[:, n_img:].reshape(len(res.u), *lab_shape) if logits0 is not None else None
    return x, fixed_rows, logits, res.iterations


FD_STEP = 1e-2  # forward-difference step in pixels (of 1) or pca coefficients (of one standard deviation)
SET_BUDGET = 2_000_000  # edges x pixels x samples per batched residual call on the CPU (bounds its memory)
GPU_MEMORY_SHARE = 0.5  # on a GPU: the share of its free memory one residual call may take
BYTES_PER_UNIT = 2048  # GPU bytes per edge x pixel x sample: 2x the ~1.1 kB of the fused inner step (H200, 28x28)


def set_budget(device: torch.device) -> float:
    """Edges × pixels × samples one residual call may hold: ``SET_BUDGET`` on the CPU, and on a
    GPU what ``GPU_MEMORY_SHARE`` of its free memory holds (at least that), so that a large
    card evaluates many hypotheses per call instead of a few calls' worth of kernel launches."""
    if device.type != "cuda":
        return float(SET_BUDGET)
    free, _ = torch.cuda.mem_get_info(device)
    # blocks torch's allocator keeps cached are free to it, though not to the driver
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return max(float(SET_BUDGET), GPU_MEMORY_SHARE * free / BYTES_PER_UNIT)


def set_chunk(problem: Problem) -> int:
    """How many hypotheses one residual call evaluates at once (memory grows with edges × pixels)."""
    v = problem.victim
    per = v.n_alpha / 8 * math.prod(problem.image_shape) * problem.batch * problem.steps * v.draws
    return max(1, int(set_budget(v.device) // max(per, 1)))


def screen_chunk(problem: Problem) -> int:
    """Aux images per batched gradient call of the screen (at most ``screen.CHUNK``).

    A first-order gradient holds about a third of the memory per edge × pixel of the
    residual's double backward (64 images at P = 32, 28×28 peaked at ~9 GB on the CPU; at
    P = 64 they took the machine's 24 GB), so the screen gets ``FIRST_ORDER_SHARE`` × the
    residual's budget.
    """
    v = problem.victim
    per = v.n_alpha / 8 * math.prod(problem.image_shape)
    return max(1, min(CHUNK, int(FIRST_ORDER_SHARE * set_budget(v.device) // max(per, 1))))


FIRST_ORDER_SHARE = 3


def _cost_to_match(cost: float, problem: Problem, distance: str) -> float:
    """||r||² of the LM residual as the reported distance (cosine: 2(1 − cos); averaged over draws)."""
    scale = 2.0 if distance == "cosine" else 1.0
    return cost / scale / problem.victim.draws


def _residual_fn(problem: Problem, param, n_img: int, lab_shape, temperature: float, distance: str):
    """r(u, y): per θ draw, the predicted Δα against the observed one, stacked: [H, draws · n_alpha].

    ``y`` holds fixed one-hot labels [H, K, B, classes]; None: the labels are the softmax of
    the unknowns after the image's (joint labels).
    """
    obs = problem.observed
    unit = obs / obs.norm().clamp_min(1e-30)

    def residual(u: torch.Tensor, y: torch.Tensor | None, base: torch.Tensor | None = None) -> torch.Tensor:
        h = len(u)
        u_img = u[:, :n_img].reshape(h, *param.param_shape)
        x = param.images(u_img) if base is None else (base + param.offsets(u_img)).clamp(0.0, 1.0)
        if y is None:
            y = torch.softmax(u[:, n_img:].reshape(h, *lab_shape), -1)
        pred = _predict(problem, x, y, temperature)  # [h * draws, n_alpha]
        if distance == "cosine":
            r = pred / pred.norm(dim=-1, keepdim=True).clamp_min(1e-30) - unit
        else:
            r = (pred - obs) / obs.norm().clamp_min(1e-30)
        return r.reshape(h, -1)

    return residual


def _prune(opt: torch.optim.Optimizer, tensors: list[torch.Tensor | None], dist: torch.Tensor,
           keep: int) -> list[torch.Tensor | None]:
    """Keep the ``keep`` best-matching hypotheses (rows) of every tensor, optimizer state included."""
    rows = torch.argsort(torch.nan_to_num(dist, nan=math.inf))[:keep]
    out: list[torch.Tensor | None] = []
    group = opt.param_groups[0]["params"]
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        if not t.requires_grad:  # fixed labels
            out.append(t[rows])
            continue
        new = t.detach()[rows].clone().requires_grad_(True)
        state = opt.state.pop(t, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key] = state[key][rows].clone()
        group[[i for i, p in enumerate(group) if p is t][0]] = new
        if state:
            opt.state[new] = state
        out.append(new)
    return out
