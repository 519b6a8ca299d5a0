"""ServerApp: federated search with a strategy of your choice, eavesdropped on by the plugin."""

from __future__ import annotations

from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedMedian

from server.plugin import eavesdrop
from tinynas.model import build

app = ServerApp()


class FiniteMedian(FedMedian):
    """A user-defined strategy: Flower's robust FedMedian, after dropping replies holding NaN or Inf."""

    def aggregate_train(self, server_round: int, replies) -> tuple[ArrayRecord | None, MetricRecord | None]:
        kept = [m for m in replies if m.has_error() or _finite(m)]
        return super().aggregate_train(server_round, kept)


def _finite(msg: Message) -> bool:
    import numpy as np

    return all(np.isfinite(a.numpy()).all() for r in msg.content.array_records.values() for a in r.values())


STRATEGIES = {"fedavg": FedAvg, "fedmedian": FedMedian, "custom": FiniteMedian}


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    nodes = int(cfg["min-nodes"])
    strategy = STRATEGIES[str(cfg["strategy"])](fraction_evaluate=0.0, min_train_nodes=nodes, min_available_nodes=nodes)
    run_dir = Path(str(cfg["run-dir"]) or Path.home() / "tinynas-runs" / str(context.run_id))
    # The plugin: two lines, whatever the strategy.
    strategy = eavesdrop(strategy, run_dir, model=build, alpha_pattern=r"^arch\.", input_shape=(1, 8, 8),
                         client_settings={"alpha-optimizer": "sgd"},
                         wire_keys={"alpha-lr": "lr-arch", "alpha-batch-size": "batch-arch", "local-steps": "steps"})
    train_config = ConfigRecord({k: cfg[k] for k in ("lr-arch", "lr-weights", "batch-arch", "batch-weights", "steps")})
    strategy.start(grid=grid, initial_arrays=ArrayRecord(build().state_dict()),
                   num_rounds=int(cfg["num-server-rounds"]), train_config=train_config)
