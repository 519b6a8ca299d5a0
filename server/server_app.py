"""Flower ServerApp: federated DARTS search with FedAvg over α (and θ), writing a run directory."""

from __future__ import annotations

import logging
import math
import time

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from attacks.amia import amia_after_run
from fednas.accounting import ACCOUNTANTS, dp_summary
from fednas.config import Config, check_against_federation, parse_config, search_to_record
from fednas.data import check_federation, dataset_from_config
from fednas.derive import derive_after_run
from fednas.federated import central_evaluate, genotype_of, initial_arrays
from fednas.paradigms import paradigm_of
from fednas.progress import SearchProgress
from fednas.runlog import RunLog, resolve_run_dir
from server import route_logs_to_flower
from server.bnstats import PooledStatistics
from server.deltas import DeltaReplies
from server.eavesdrop import Eavesdropper
from server.guard import ReplyGuard
from server.paradigm_strategy import with_paradigm
from server.strategies import RoundBook, build_strategy

log = logging.getLogger(__name__)

app = ServerApp()


def wait_for_nodes(grid: Grid, timeout: float = 120.0, settle: float = 2.0) -> list[int]:
    """Node ids once the federation has connected (the count stable for ``settle`` s)."""
    deadline = time.monotonic() + timeout
    nodes: list[int] = []
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        now = list(grid.get_node_ids())
        if len(now) != len(nodes):
            nodes, stable_since = now, time.monotonic()
        elif nodes and time.monotonic() - stable_since >= settle:
            return nodes
        time.sleep(0.2)
    if not nodes:
        raise RuntimeError(f"no client node connected within {timeout:.0f} s")
    return nodes


def _json_eps(value: float) -> float | str:
    """ε for JSON, which has no infinity: "inf" (no noise) rather than an ambiguous null."""
    return value if math.isfinite(value) else "inf"


def dp_block(cfg: Config, book: RoundBook) -> dict:
    """summary.json's ``dp``: the settings, and the final ε (the largest cumulative ε any client
    reached) of the reply as a whole and of each mechanism, by the configured accountant and
    by both (``rdp``, an upper bound; ``prv``, tight) side by side."""
    eps = book.epsilons
    reached: dict[str, float] = {}
    for metrics in book.dp_epsilons.values():
        for key, value in metrics.items():
            reached[key] = max(reached.get(key, -math.inf), value)
    block = {**dp_summary(cfg.dp), "epsilon": _json_eps(max(eps.values())),
             "epsilon-mean": _json_eps(sum(eps.values()) / len(eps)),
             "epsilon-by-accountant": {a: _json_eps(reached[f"dp-epsilon-{a}"]) for a in ACCOUNTANTS
                                       if f"dp-epsilon-{a}" in reached},
             "epsilon-by-client": {str(k): _json_eps(v) for k, v in sorted(eps.items())}}
    for name, mechanism in block["mechanisms"].items():
        found = {a: reached[f"{name}-epsilon-{a}"] for a in ACCOUNTANTS if f"{name}-epsilon-{a}" in reached}
        if f"{name}-epsilon" in reached:
            mechanism["epsilon"] = _json_eps(reached[f"{name}-epsilon"])
        if found:
            mechanism["epsilon-by-accountant"] = {a: _json_eps(v) for a, v in found.items()}
    return block


def _make_evaluate_fn(cfg: Config, book: RoundBook, runlog: RunLog):
    # α's entropy, drift and genotype changes read α as the configured supernet's op weights
    # per edge; the other paradigms' architecture state (a P-DARTS stage's pruned α, ENAS's
    # controller, SMASH's scores) is not that
    progress = SearchProgress() if paradigm_of(cfg).supernet_search else None

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        state = arrays.to_torch_state_dict()
        metrics = {}
        if cfg.fed.central_eval and cfg.search.share_weights:
            metrics = central_evaluate(cfg, state)
        genotype = genotype_of(cfg, state)
        if progress is not None:
            metrics.update(progress.update(state, genotype))
        if server_round == 0:
            runlog.summary["initial-central-acc"] = metrics.get("central-acc")
            return MetricRecord(metrics) if metrics else None
        log.info("round %d genotype:\n%s", server_round, genotype.pretty())
        row = {**book.current, **metrics, "round": server_round,
               "seconds": round(time.time() - runlog.t0, 3)}
        runlog.add_round(row, genotype)
        runlog.summary.update({"rejections": book.rejections, "clippings": book.clippings,
                               "rounds-kept-previous": book.kept_previous})
        if book.epsilons:
            runlog.summary["dp"] = dp_block(cfg, book)
        runlog.write_summary()
        return MetricRecord(metrics) if metrics else None

    return evaluate_fn


def eavesdropping(cfg: Config, run_dir, strategy, judge=None):
    """Wrap ``strategy`` with the eavesdropper; attack online when asked (see attacks.leakage).
    ``judge`` marks the replies the server rejects (the guard's)."""
    from attacks.leakage import LeakageAudit
    from fednas.captures import CaptureStore, Manifest

    audit = LeakageAudit(run_dir, cfg.flat()) if cfg.attack.attack_online else None
    store = CaptureStore(run_dir)
    manifest = Manifest(alpha_pattern=cfg.attack.alpha_pattern, paradigm=cfg.paradigm.paradigm)
    return Eavesdropper(strategy, store, on_capture=audit.submit if audit is not None else None,
                        manifest=manifest, judge=judge), audit


def compose(cfg: Config, run_dir, num_nodes: int):
    """The server's strategy chain, outermost first: RoundBook (sorts replies by partition-id,
    counts) > Eavesdropper (records every reply as it came over the wire, bad ones marked; with
    delta replies it stores α_t2 = α_t1 + Δα) > ParadigmStrategy (the paradigm's server state:
    P-DARTS's stages, ENAS's and SMASH's candidates; not for darts) > ReplyGuard (leaves bad
    replies out, rejects or clips oversized updates; checks the update itself with ``reply =
    "delta"``) > DeltaReplies (``reply = "delta"``: rebuilds sent + Δ, so everything inside
    sees weights) > PooledStatistics
    (``bn-statistics = "pooled"``) > the named strategy (and its DP wrapper). The guard sits
    inside the paradigm's wrapper: it checks replies against the model arrays the round sent
    (a P-DARTS stage's α shape), without the server state, which clients never send back.
    Delta replies are for paradigms that search the configured supernet (the arrays keep their
    names and shapes; the others reply arrays the server did not send, SMASH's scores, or
    change shape, P-DARTS's stages), pooled statistics for those that recalibrate (the others
    reply weights and average their statistics). Returns (book, audit)."""
    paradigm = paradigm_of(cfg)
    strategy = build_strategy(cfg.fed, num_nodes, cfg.dp)
    if paradigm.recalibrates_statistics and cfg.search.bn_statistics == "pooled" and cfg.search.share_weights:
        strategy = PooledStatistics(strategy, cfg.fed.round_timeout)
    delta = paradigm.supernet_search and cfg.fed.reply == "delta"
    if delta:
        strategy = DeltaReplies(strategy)
    elif cfg.fed.reply == "delta":
        log.info("paradigm %s replies weights (reply = \"delta\" needs the configured supernet's fixed arrays)",
                 paradigm.name)
    guard = ReplyGuard(strategy, max_update_norm=cfg.fed.max_update_norm, delta_replies=delta,
                       update_guard=cfg.fed.update_guard, update_guard_k=cfg.fed.update_guard_k,
                       alpha_pattern=cfg.attack.alpha_pattern)
    strategy, audit = with_paradigm(guard, cfg), None
    if cfg.attack.eavesdrop:
        strategy, audit = eavesdropping(cfg, run_dir, strategy, judge=guard.judge)
    return RoundBook(strategy, guard=guard), audit


def finish_leakage(audit, run_dir, strategy: Eavesdropper) -> dict:
    """The leakage summary for summary.json (never raises)."""
    if audit is None:
        log.info("eavesdropper: %d captures in %s; attack them with: python -m attacks.adra %s",
                 len(strategy.captures), strategy.store.dir, run_dir)
        return {"status": "captured", "captures": len(strategy.captures)}
    return audit.finish()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Validate the config, run the rounds, write the run directory."""
    route_logs_to_flower()
    cfg = parse_config(context.run_config)
    run_dir = resolve_run_dir(cfg)
    log.info("run directory: %s", run_dir)
    nodes = wait_for_nodes(grid)
    runlog = RunLog(cfg, run_dir, {"supernodes": len(nodes), "run-id": context.run_id})
    audit = None
    try:
        # Fail before any training if a client would lack data.
        check_federation(dataset_from_config(cfg.data, cfg.run.seed), cfg.data, cfg.run.seed, len(nodes))
        check_against_federation(cfg, len(nodes))
        book, audit = compose(cfg, run_dir, len(nodes))
        initial = ArrayRecord(initial_arrays(cfg))
        result = book.start(
            grid=grid,
            initial_arrays=initial,
            num_rounds=cfg.fed.num_server_rounds,
            timeout=cfg.fed.round_timeout,
            train_config=ConfigRecord(search_to_record(cfg.search)),
            evaluate_config=ConfigRecord(),
            evaluate_fn=_make_evaluate_fn(cfg, book, runlog),
        )
        # Without one successful aggregation the final model is the initial one (Flower's
        # Result then holds an empty ArrayRecord).
        final_record = result.arrays if result.arrays is not None and len(result.arrays) else initial
        final = final_record.to_torch_state_dict()
        genotype = genotype_of(cfg, final)
        log.info("final genotype:\n%s", genotype.pretty())
        if cfg.attack.eavesdrop:
            runlog.summary["leakage"] = finish_leakage(audit, run_dir, book.strategy)
        runlog.finish({k: v.numpy() for k, v in final.items()}, genotype=genotype.pretty())
    except BaseException as err:
        runlog.fail(err)
        if audit is not None:
            audit.close()
        raise
    if cfg.derive.derive:  # after the run is complete and saved; a failure is recorded, never raised
        runlog.summary["derive"] = derive_after_run(run_dir)
        runlog.write_summary()
    if cfg.amia.amia:  # after the run is complete and saved; a failure is recorded, never raised
        runlog.summary["amia"] = amia_after_run(run_dir)
        runlog.write_summary()
    log.info("run directory: %s", run_dir)
