"""ServerApp: FedAvg over the whole network, wrapped by the fednas-privacy eavesdropper."""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from cellsearch.model import make_net
from server.plugin import eavesdrop

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    clients = int(rc["clients"])
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=clients, min_available_nodes=clients)
    strategy = eavesdrop(strategy, str(rc["run-dir"]), model="cellsearch.model:make_net",
                         alpha_pattern=r"arch_weights$", input_shape=(1, 8, 8), num_classes=10,
                         client_settings={"alpha-optimizer": "sgd"},
                         wire_keys={"alpha-lr": "arch-lr", "alpha-batch-size": "arch-batch",
                                    "local-steps": "steps-done"})
    train_config = ConfigRecord({k: rc[k] for k in ("arch-lr", "arch-batch", "weight-lr", "weight-batch",
                                                    "inner-steps")})
    strategy.start(grid=grid, initial_arrays=ArrayRecord(make_net().state_dict()),
                   num_rounds=int(rc["num-server-rounds"]), train_config=train_config)
