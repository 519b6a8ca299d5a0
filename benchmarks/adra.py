"""``python -m benchmarks.adra [--device cpu|cuda] [--dataset D] [--dag-nodes 8,32] [--captures N] [--solvers ...]``:
ADRA's seconds per capture and what it rebuilt, per solver, side by side with the reference.

For each P it builds the captures of round 1 in this process, as the eavesdropper would
record them (the real local search of clients 0, 1, ... from the server's seeded α and θ:
one SGD step on one D^α sample, B = 1, θ known), attacks each with strong mode under every
solver of ``--solvers`` (``adra-optimizer``: ``lm``, the default Levenberg–Marquardt, and
``adam``, the first-order reference it replaced) on ``--device``, and scores it against the
client's sample: wall and CPU seconds per capture (mean and t 95 % interval; the device
drained before and after), identified in D^α and in the whole dataset (Wilson 95 %),
success (the report's SR: identified, or the oracle's label right at SSIM ≥ 0.3), label
accuracy and PSNR, what the attacker knew of θ (a column), and the attack's distance at
the reconstruction beside its distance at the client's true samples (near 0 where the replay is exact: a larger match is
the solver's local minimum, not missing information); then the reference's seconds over
each solver's. CPU seconds are the steadier figure on a shared machine. Asking for CUDA
without a GPU is an error that says so, before anything runs. ``--budget S`` starts no
capture once S wall seconds of a P and solver are spent (captures are built as they are
attacked); ``--results DIR`` puts the JSON elsewhere than ``benchmarks/results``.

``--set KEY=VALUE`` (repeatable) changes the run's config for the clients and the attack
alike, e.g. ``alpha-batch-size=8``, ``local-steps=5 alpha-optimizer=adam`` (the default
client procedure), ``knows-weights=false theta-prior=init`` or ``surrogate-draws=4``. With
several samples per capture each is scored (reconstructions matched to the step's samples
by least MSE, as the leakage report does) and the rates count samples.

``--round R`` attacks round R's captures after R − 1 warm-up rounds of every client
(``--warm-steps`` local steps each), FedAvg'd; the warm-up's arrays are cached (``warm_arrays``).

``--spread-only`` (θ unknown: ``--set knows-weights=false --set surrogate-draws=N``; or a
K-step round whose θ path between steps the attacker samples: ``--set local-steps=5 --set
theta-between-steps=sampled``) attacks nothing and trains nothing: per seed it builds the
captures' round and measures how far Δα's unit direction moves across θ draws against across
``--spread`` sets of aux images, and whether the nearest set under another draw is the same
set (the cheap test of whether an update can tell images apart without θ, at a P where
training the θ-unknown inverse costs too much). In a K-step round it does the same per local
step for sets that differ at that step alone, the other steps' images known.

``--merge A.json B.json ...`` runs nothing: it prints one table over result files of the
same settings run in separate processes (one seed each, so that each seed's JSON lands as
it ends), as ``--seeds`` would have, and writes it as one JSON; files that differ in a
setting other than the seed, or that hold the same capture twice, are refused by name.
``--spread-only`` files merge the same way, one seed per file.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from attacks import metrics as M
from attacks.adra.attack import ADRA
from attacks.adra.client_model import CaptureError
from attacks.adra.inverse import InverseCache, exclusive_lock, save_atomic
from attacks.adra.pairs import digest, one_step_varied, theta_spread
from attacks.adra.solver import match_at
from attacks.base import Knowledge
from attacks.nulls import NULL_KINDS, null_reconstruction
from attacks.report import pairs_by_step
from benchmarks.adra_table import load_merged, merge_seeds, report, seed_spread_lines, spread_lines
from benchmarks.common import RESULTS, machine, resolve_device, timed, write_results
from fednas.captures import Capture
from fednas.config import GROUP_KEYS, parse_config, search_to_record
from fednas.data import client_data, make_pools
from fednas.federated import client_train, initial_arrays
from fednas.memory import memory_warning
from fednas.paradigms import paradigm_of
from fednas.paradigms.federation import run_federation
from fednas.overrides import dag_nodes_option, parse_overrides

log = logging.getLogger(__name__)

WARM_VERSION = 1  # bump when the warm-up rounds change meaning: old cached arrays are then never read
EXPERIMENT = {"head": "flatten", "activation": "elu", "local-steps": 1, "alpha-batch-size": 1,
              "alpha-optimizer": "sgd", "num-server-rounds": 1}


class Captures:
    """Round-``round`` captures of clients 0..count-1 (a federation of ``count`` clients) and their
    samples, built on first use and kept: a run whose budget ends early builds no more.

    A later round (``round`` > 1) starts from the global arrays after ``round`` − 1 earlier rounds
    of every client, each of ``warm_steps`` local steps (0: the run's ``local-steps``), FedAvg'd
    as the server does: θ and α have moved, and θ_0 is no longer the client's θ.
    """

    def __init__(self, cfg: Any, count: int, round: int = 1, warm_steps: int = 0) -> None:
        self.cfg, self.count, self.round = cfg, count, round
        self.arrays = initial_arrays(cfg) if round == 1 else warm_arrays(cfg, count, round - 1, warm_steps)
        self.built: list[tuple[Capture, list[int]]] = []

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, pid: int) -> tuple[Capture, list[int]]:
        if not 0 <= pid < self.count:
            raise IndexError(pid)
        while len(self.built) <= pid:
            self.built.append(self._build(len(self.built)))
        return self.built[pid]

    def _build(self, pid: int) -> tuple[Capture, list[int]]:
        cfg, arrays = self.cfg, self.arrays
        alpha = {k: v.numpy() for k, v in arrays.items() if k.startswith("alpha")}
        theta = {k: v.numpy() for k, v in arrays.items() if not k.startswith("alpha")}
        r = self.round
        reply = client_train(cfg, cfg.search, arrays, partition_id=pid, num_clients=self.count, server_round=r)
        cap = Capture(id=f"r{r:03d}-n{pid}", round=r, node_id=pid, partition_id=pid, alpha_t1=alpha,
                      alpha_t2={k: v.numpy() for k, v in reply.arrays.items() if k.startswith("alpha")},
                      theta_t1=theta, train_config={**search_to_record(cfg.search), "server-round": r},
                      metrics=dict(reply.metrics))
        return cap, list(reply.audit["alpha-indices"])


def warm_arrays(cfg: Any, count: int, rounds: int, steps: int) -> dict[str, torch.Tensor]:
    """The global arrays the server sends after ``rounds`` rounds of ``count`` clients, each of
    ``steps`` local steps (0: the run's own), computed in this process as under Flower.

    They are kept beside the round's inverses (``adra-cache-dir``, else ``default_cache_dir``)
    under a key of every setting that shapes the federation (all but the attack's and AMIA's
    keys), ``count`` and ``rounds``: the processes of one seed (θ_0 and the wire reference, one
    seed a process) run the warm-up rounds once, and one waits while another computes them.
    """
    warm = cfg.replace(num_server_rounds=rounds, **({"local_steps": steps} if steps else {}))
    path = InverseCache(cfg.attack.adra_cache_dir or None).root / f"warm-{warm_key(warm, count)[:24]}.pt"
    with exclusive_lock(path.with_suffix(".lock")):
        if path.exists():
            return torch.load(path, weights_only=True)
        arrays = run_federation(warm, count)
        model_arrays, state = paradigm_of(cfg).server_configure(cfg, rounds + 1, arrays)
        out = {k: torch.as_tensor(np.asarray(v)) for k, v in {**model_arrays, **state}.items()}
        save_atomic(out, path)
        return out


def warm_key(warm: Any, count: int) -> str:
    """The warm-up's cache key: the federation's settings (the attack's and AMIA's keys left
    out: they change no client's training) and the number of clients."""
    skip = {key.name for group in ("attack", "amia") for key in GROUP_KEYS[group]}
    return digest(WARM_VERSION, sorted((k, v) for k, v in warm.flat().items() if k not in skip), count)


def attack_all(cfg: Any, caps: Captures | list, knowledge: Knowledge, device: torch.device, label: str,
               budget: float = 0.0, nulls: bool = False) -> list[dict[str, Any]]:
    """Attack the captures in order with ``cfg``'s attack settings; per-capture figures.

    ``budget`` > 0: no capture is started once that many wall seconds have been spent
    (the first always is), so a slow case still reports what it finished. ``nulls``: also
    the rows of the null reconstructions (``attacks.nulls``: from the aux pool and the true
    class alone, never the update) of the same captures. The first row is the attack's.
    """
    dataset, _ = client_data(cfg.data, cfg.run.seed, 0, len(caps))
    x_all, y_all = dataset.x.numpy(), dataset.y.numpy()
    oracle = success_oracle(cfg, x_all, y_all)
    attack = ADRA(cfg.attack, seed=cfg.run.seed, device=device)
    # wall, cpu, train and theta: one per capture; the rest one per sample ("capture": its cluster)
    out: dict[str, list] = {k: [] for k in ROW_KEYS}
    null_rows = {kind: {k: [] for k in ROW_KEYS} for kind in (NULL_KINDS if nulls else ())}
    rng = np.random.default_rng(cfg.run.seed)
    aux_x, aux_y = np.asarray(knowledge.aux_images), np.asarray(knowledge.aux_labels)
    for cap, used in caps:
        if budget > 0 and out["wall"] and sum(out["wall"]) >= budget:
            log.warning("%s: the %.0f s budget is spent after %d of %d captures", label, budget,
                        len(out["wall"]), len(caps))
            break
        _, split = client_data(cfg.data, cfg.run.seed, cap.partition_id, len(caps))
        box: list = []
        wall, cpu = timed(lambda: box.append(attack.reconstruct([cap], knowledge)[0]), device)
        rec = box[0]
        fresh = not rec.details.get("inverse-cached", 1.0)
        fresh_prior = not rec.details.get("inverse-prior-cached", 1.0)  # the generative prior's VAE
        spent = rec.details.get("inverse-pair-seconds", 0.0) + rec.details.get("inverse-train-seconds", 0.0)
        trained = fresh * spent + fresh_prior * rec.details.get("inverse-prior-train-seconds", 0.0)
        trained_cpu = (fresh * (rec.details.get("inverse-pair-cpu-seconds", 0.0)
                                + rec.details.get("inverse-train-cpu-seconds", 0.0))
                       + fresh_prior * rec.details.get("inverse-prior-train-cpu-seconds", 0.0))
        out["train"].append(trained)  # the inverse's pairs and fit, once per round: apart from the attack's time
        out["wall"].append(wall - trained)
        out["cpu"].append(cpu - trained_cpu)
        out["theta"].append(rec.details.get("theta-knowledge", "–"))
        ok = rec.status == "ok"  # a capture the attack refused has no problem to measure the truth in
        out["truth-match"].append(truth_match(attack, cap, knowledge, used, x_all, y_all) if ok else math.nan)
        out["match"].append(rec.match if ok else math.nan)
        cid = f"s{cfg.run.seed}-{cap.id}"
        if not ok:
            log.warning("%s %s failed: %s", label, cap.id, rec.reason)
            _refused(out, len(used), cid)
        else:
            _score(out, rec, used, cap, split, x_all, y_all, oracle, cid)
            print(f"  {label} {cap.id}: {wall - trained:.1f} s wall, {cpu - trained_cpu:.1f} s CPU (capture; "
                  f"{trained:.0f} s training; the inverse's held-out label accuracy on its own pairs "
                  f"{rec.details.get('inverse-val-label-acc', math.nan):.2f}), identified dataset {out['identified-dataset'][-len(used):]}, label "
                  f"{out['label'][-len(used):]}, PSNR {out['psnr'][-1]:.1f} dB; match {rec.match:.3g} (at the "
                  f"truth {out['truth-match'][-1]:.3g})", flush=True)
        b = max(1, int(cap.train_config.get("alpha-batch-size", 1)))
        samples = [(i // b, i % b, g) for i, g in enumerate(used)]
        for kind, row in null_rows.items():
            if not ok:  # a refused capture is refused for its nulls too: the rows count the same captures
                _refused(row, len(used), cid)
                continue
            null = null_reconstruction(kind, cap.id, samples, [int(y_all[g]) for g in used], aux_x, aux_y, rng)
            _score(row, null, used, cap, split, x_all, y_all, oracle, cid)
    return [out, *({**row, "solver": f"null: {kind}"} for kind, row in null_rows.items())]


ROW_KEYS = ("wall", "cpu", "train", "theta", "match", "truth-match", "identified", "identified-dataset", "success",
            "label", "psnr", "capture")


def _refused(out: dict[str, list], n: int, cid: str) -> None:
    for k in ("identified", "identified-dataset", "success", "label"):
        out[k] += [False] * n
    out["capture"] += [cid] * n


def _score(out: dict[str, list], rec: Any, used: list[int], cap: Capture, split: Any, x_all, y_all, oracle,
           cid: str) -> None:
    """The report's per-sample figures of ``rec`` against the capture's samples, appended to ``out``."""
    for g, r in matched(rec, used, cap.train_config, x_all):
        img = rec.images[r]
        out["identified"].append(int(split.alpha[M.nearest(img, x_all[split.alpha])]) == g)
        out["identified-dataset"].append(M.nearest(img, x_all) == g)
        oracle_ok = int(oracle.predict(img[None])[0]) == int(y_all[g])
        out["success"].append(M.is_success(out["identified"][-1], oracle_ok, M.ssim(img, x_all[g])))
        out["label"].append(int(rec.labels[r]) == int(y_all[g]))
        out["psnr"].append(M.psnr(M.mse(img, x_all[g])))
        out["capture"].append(cid)


def success_oracle(cfg: Any, x_all, y_all) -> M.Oracle:
    """The leakage report's scoring oracle: fitted on the holdout, aux and test pools (no client's data)."""
    pools = make_pools(len(x_all), cfg.data, cfg.run.seed)
    outside = np.concatenate([pools.holdout, pools.aux, pools.test])
    return M.Oracle(x_all[outside], y_all[outside], seed=cfg.run.seed)


def truth_match(attack: ADRA, cap: Capture, knowledge: Knowledge, used: list[int], x_all, y_all) -> float:
    """The attack's distance at the client's true samples of the modelled steps (see ``match_at``)."""
    problem, _ = attack.problem(cap, knowledge)
    n = problem.steps * problem.batch
    shape = (problem.steps, problem.batch, *problem.image_shape)
    return match_at(problem, torch.as_tensor(x_all[used[:n]]).reshape(shape),
                    torch.as_tensor(y_all[used[:n]]).reshape(shape[:2]))


def matched(rec: Any, used: list[int], train_config: dict[str, Any], x_all) -> list[tuple[int, int]]:
    """(sample, reconstruction row) pairs: within each local step, by least MSE (as the leakage report)."""
    b = max(1, int(train_config.get("alpha-batch-size", 1)))
    pairs = pairs_by_step(rec.images, rec.steps, [i // b for i in range(len(used))], x_all[used])
    return [(used[t], r) for t, r in sorted(pairs.items())]


# what each --solvers name sets: the search's two refinement optimizers, and the learned inverse
# alone or polished by LM on the match (kept only where it lowers the match)
VARIANTS = {"lm": {"adra-method": "search", "adra-optimizer": "lm"},
            "adam": {"adra-method": "search", "adra-optimizer": "adam"},
            "inverse": {"adra-method": "inverse", "adra-inverse-polish": 0},
            "inverse+lm": {"adra-method": "inverse", "adra-inverse-polish": 10},
            "generative": {"adra-method": "generative", "adra-inverse-polish": 10}}


def variant(name: str) -> dict[str, Any]:
    """The config keys a ``--solvers`` name sets (an error naming the choices for another)."""
    if name not in VARIANTS:
        raise SystemExit(f"--solvers: unknown {name!r}; choose from {', '.join(VARIANTS)}")
    return dict(VARIANTS[name])


def run_nodes(nodes: int, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Rows of one P and one seed (``args.seed``): each solver, then (``args.nulls``) the nulls
    of the first solver's captures."""
    base = {**EXPERIMENT, "dataset": args.dataset, "dag-nodes": nodes, "seed": args.seed, "device": device.type,
            "num-server-rounds": getattr(args, "round", 1), **parse_overrides(args.set)}
    cfg = parse_config(base)
    dataset, _ = client_data(cfg.data, cfg.run.seed, 0, args.captures)
    if device.type == "cpu" and (warning := memory_warning(cfg, dataset.spec, 1, psutil.virtual_memory().available)):
        log.warning("P=%d: %s", nodes, warning)  # the captures' local search comes first
    aux = make_pools(len(dataset), cfg.data, cfg.run.seed).aux
    knowledge = Knowledge(cfg, dataset.spec, dataset.x[aux].numpy(), dataset.y[aux].numpy())
    caps = Captures(cfg, args.captures, getattr(args, "round", 1), getattr(args, "warm_steps", 0))
    if getattr(args, "spread_only", False):
        return [spread_row(nodes, args, base, caps, knowledge, device)]
    rows = []
    for i, solver in enumerate(args.solvers.split(",")):
        attack = {**variant(solver), **parse_overrides(args.set)}  # --set wins: e.g. adra-inverse-pairs
        if solver == args.reference and args.reference_iterations:
            attack["adra-iterations"] = args.reference_iterations
        scfg = parse_config({**base, **attack})
        got = attack_all(scfg, caps, knowledge, device, f"P={nodes} s{args.seed} {solver}", args.budget,
                         nulls=getattr(args, "nulls", False) and i == 0)
        rows += [{"nodes": nodes, "solver": solver, **got[0]}, *({"nodes": nodes, **r} for r in got[1:])]
        if i == 0 and getattr(args, "spread", 0) and len(caps):
            if (spread := measure_spread(scfg, caps, knowledge, args.spread, device)) is not None:
                rows[0]["spread"] = [spread]  # a list: several seeds' join
    return rows


def spread_row(nodes: int, args: argparse.Namespace, base: dict[str, Any], caps: Captures, knowledge: Knowledge,
               device: torch.device) -> dict[str, Any]:
    """``--spread-only``: the θ spread of the captures' round, no attack (nothing is trained)."""
    scfg = parse_config({**base, **variant(args.solvers.split(",")[0]), **parse_overrides(args.set)})
    got: list[dict[str, float] | None] = []
    wall, cpu = timed(lambda: got.append(measure_spread(scfg, caps, knowledge, args.spread, device, steps=True)),
                      device)
    if got[0] is None:
        raise SystemExit("--spread-only: this round is not under several θ draws (one local step with θ known, or "
                         "adra-unroll off), or every capture of it is weight decay alone")
    return {"nodes": nodes, "solver": "spread", "seed": [args.seed], "spread": got, "wall": [wall], "cpu": [cpu]}


def measure_spread(cfg: Any, caps: Captures, knowledge: Knowledge, images: int, device: torch.device,
                   steps: bool = False) -> dict[str, Any] | None:
    """``pairs.theta_spread`` of the captures' round on ``images`` seeded sets of aux images,
    where the attack believes θ through several draws; else None.

    A one-sample round (K = B = 1, θ unknown) is always measured. A K-step round (θ drawn or
    its path between steps sampled) only where ``steps`` (``--spread-only``): the whole sets,
    and per local step the sets that differ at that step alone (``per-step``). The spread reads
    only the round (α_t1, the θ draws) and aux images, so any capture of the round serves: one
    whose Δα is weight decay alone (refused by the attack) is passed over.
    """
    if not several_theta_draws(cfg.attack, steps):
        return None  # θ known or one draw: nothing to spread over, and no round worth building
    attack = ADRA(cfg.attack, seed=cfg.run.seed, device=device)
    for pid in range(len(caps)):
        try:
            problem, _ = attack.problem(caps[pid][0], knowledge)
            break
        except CaptureError as e:
            log.info("spread: capture %d passed over (%s)", pid, e)
    else:
        return None
    k, b = problem.steps, problem.batch
    if problem.victim.draws < 2 or (k * b != 1 and not steps):
        return None
    pool, n = len(knowledge.aux_images), images * k * b
    gen = torch.Generator().manual_seed(cfg.run.seed)
    pick = torch.randperm(pool, generator=gen)[:n] if n <= pool else torch.randint(pool, (n,), generator=gen)
    x = torch.as_tensor(knowledge.aux_images)[pick].float()
    x, y = x.view(images, k, b, *x.shape[1:]), torch.as_tensor(knowledge.aux_labels)[pick].long().view(images, k, b)
    out: dict[str, Any] = theta_spread(problem, x, y)
    if k > 1:
        out["per-step"] = [theta_spread(problem, *one_step_varied(x, y, s)) for s in range(k)]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.adra", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda (an error without a GPU)")
    p.add_argument("--dataset", default="mnist-5k", help="digits (8x8) or mnist-5k (28x28, default)")
    dag_nodes_option(p, default="32,64,128", help="comma-separated P")
    p.add_argument("--captures", type=int, default=3, help="captures (clients of round 1) per P")
    p.add_argument("--solvers", default="inverse,lm",
                   help=f"comma-separated ways to read a capture, compared side by side: {', '.join(VARIANTS)}")
    p.add_argument("--reference", default="lm", help="the solver the others are compared with")
    p.add_argument("--reference-iterations", type=int, default=0,
                   help="adra-iterations of the reference (0: its own default, 300 for adam)")
    p.add_argument("--budget", type=float, default=0.0,
                   help="wall seconds per P and solver after which no further capture starts (0: no bound)")
    p.add_argument("--results", type=Path, default=RESULTS,
                   help="folder of the JSON results (default benchmarks/results)")
    p.add_argument("--seed", type=int, default=0, help="one seed (see --seeds)")
    p.add_argument("--seeds", default="",
                   help="comma-separated seeds, one row per P and solver over all their captures (tune on 0-4; "
                        "report held-out seeds, e.g. 100,101,102,103,104)")
    p.add_argument("--no-nulls", dest="nulls", action="store_false",
                   help="leave out the null rows (a random aux image of the true class, the aux class mean)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--spread", type=int, default=64,
                   help="with theta unknown (several draws): also measure how far delta-alpha moves across theta "
                        "draws against across this many aux images, per seed (0: off)")
    p.add_argument("--round", type=int, default=1,
                   help="attack this round's captures: the earlier rounds run first, every client, FedAvg'd")
    p.add_argument("--warm-steps", type=int, default=0,
                   help="local steps of each client in the rounds before --round (0: the run's local-steps)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config key for the clients and the attack (repeatable), e.g. alpha-batch-size=8")
    p.add_argument("--merge", nargs="+", type=Path, default=[], metavar="JSON",
                   help="run nothing: one table over these result files (the same settings, other seeds)")
    p.add_argument("--spread-only", action="store_true",
                   help="measure the theta spread (--spread image sets) of each seed's round and attack nothing; "
                        "needs --set knows-weights=false --set surrogate-draws=N with N >= 2, or a K-step round "
                        "with --set theta-between-steps=sampled")
    args = p.parse_args(argv)
    if args.round < 1 or args.warm_steps < 0:
        raise SystemExit(f"--round must be >= 1 and --warm-steps >= 0 (got {args.round}, {args.warm_steps})")
    if args.merge:
        return merge_main(args)
    if args.spread_only:
        check_spread_only(args)
    for name in args.solvers.split(","):
        variant(name)  # an unknown name fails here, before any capture is made
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()] or [args.seed]
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rows = merge_seeds([r for n in args.dag_nodes.split(",") if n.strip() for seed in seeds
                        for r in run_nodes(int(n), argparse.Namespace(**{**vars(args), "seed": seed}), device)])
    record = {**vars(args), "results": str(args.results)}
    if not args.spread_only:
        record["nearest-other-psnr"] = dataset_rivals(args, seeds[0])
    if args.spread_only:
        return publish(f"theta spread, {args.dataset}, seeds {seeds}, changed: {' '.join(args.set)}",
                       [*seed_spread_lines(rows), *spread_lines(rows)], "adra-spread", rows, record, args.results)
    return publish(f"ADRA strong, {args.dataset}, by default B = 1, theta known (wire), one SGD step, seeds {seeds}, "
                   f"round {args.round}{f' after {args.warm_steps}-step rounds' if args.round > 1 and args.warm_steps else ''}, "
                   f"{device.type}, {args.threads} thread(s); changed: {' '.join(args.set) or 'nothing'}",
                   [report(rows, args.reference), *spread_lines(rows), rival_line(record["nearest-other-psnr"])],
                   f"adra-{device.type}", rows, record, args.results)


def dataset_rivals(args: argparse.Namespace, seed: int) -> dict[str, float]:
    """How near a read must come for the whole-dataset check: the PSNR of each image's nearest
    other image in the dataset (``attacks.metrics.nearest_other_psnr``), summarised."""
    cfg = parse_config({**EXPERIMENT, "dataset": args.dataset, "seed": seed, **parse_overrides(args.set)})
    dataset, _ = client_data(cfg.data, cfg.run.seed, 0, args.captures)
    rival = M.nearest_other_psnr(dataset.x.numpy())
    q10, q50, q90 = (float(np.percentile(rival, q)) for q in (10, 50, 90))
    return {"images": len(rival), "median": q50, "q10": q10, "q90": q90}


def rival_line(r: dict[str, float]) -> str:
    return (f"whole-dataset check over {r['images']} images: an image's nearest other image is at PSNR "
            f"{r['median']:.1f} dB (median; 10-90 %: {r['q10']:.1f}-{r['q90']:.1f}); a read much farther than that "
            "from its sample rarely lands on it")


def publish(header: str, lines: list[str], kind: str, rows: list[dict[str, Any]], record: dict[str, Any],
            results: Path) -> int:
    """Print ``lines`` (a table, the θ spread) under ``header`` and write the rows with ``record`` as their args."""
    print(f"\n{header}")
    for line in lines:
        print(line)
    print("results:", write_results(kind, {"machine": machine(), "args": record, "rows": rows}, results))
    return 0


def several_theta_draws(attack: Any, paths: bool = False) -> bool:
    """Whether the attack config believes θ through several draws: θ unknown under
    ``surrogate-draws`` ≥ 2, or (``paths``) the θ path between local steps sampled
    (``theta-between-steps = sampled``, ``theta-paths`` ≥ 2: a K-step round)."""
    drawn = not attack.knows_weights and attack.surrogate_draws >= 2
    return drawn or (paths and attack.theta_between_steps == "sampled" and attack.theta_paths >= 2)


def check_spread_only(args: argparse.Namespace) -> None:
    """``--spread-only`` needs θ unknown under several draws and ``--spread`` images: an error before any work."""
    cfg = parse_config({**EXPERIMENT, "dataset": args.dataset, **parse_overrides(args.set)})
    if not several_theta_draws(cfg.attack, paths=True) or args.spread < 2:
        raise SystemExit("--spread-only needs several theta draws: --set knows-weights=false --set surrogate-draws=N "
                         "(N >= 2), or a K-step round with --set theta-between-steps=sampled (theta-paths >= 2); and "
                         f"--spread >= 2 (got knows-weights={cfg.attack.knows_weights}, "
                         f"surrogate-draws={cfg.attack.surrogate_draws}, theta-between-steps="
                         f"{cfg.attack.theta_between_steps}, theta-paths={cfg.attack.theta_paths}, --spread {args.spread})")


def merge_main(args: argparse.Namespace) -> int:
    """``--merge``: print and write one result over several files' rows."""
    common, rows = load_merged(args.merge)
    spread = bool(common.get("spread_only"))  # --spread-only files: rows of seeds, no captures
    if spread:
        seeds = [str(s) for r in rows for s in r["seed"]]
        if len(set(seeds)) < len(seeds):
            raise SystemExit(f"--merge: a seed is in more than one file (seeds {', '.join(seeds)})")
    else:
        seeds = sorted({c.split("-", 1)[0].removeprefix("s") for r in rows for c in r.get("capture", [])}, key=int)
    header = (f"{'theta spread' if spread else 'ADRA strong'}, {common.get('dataset')}, merged from "
              f"{len(args.merge)} file(s), seeds {', '.join(seeds)}; changed: {' '.join(common.get('set') or []) or 'nothing'}")
    merged = {**common, "merged": [p.name for p in args.merge], "seeds": ",".join(seeds)}
    if spread:
        return publish(header, [*seed_spread_lines(rows), *spread_lines(rows)], "adra-spread", rows, merged,
                       args.results)
    # the files' own reference solver, not this invocation's --reference
    lines = [report(rows, common.get("reference", "lm")), *spread_lines(rows)]
    if rival := common.get("nearest-other-psnr"):  # the first file's (older files have none)
        lines.append(rival_line(rival))
    return publish(header, lines, "adra-merged", rows, merged, args.results)


if __name__ == "__main__":
    sys.exit(main())
