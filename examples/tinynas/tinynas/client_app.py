"""ClientApp: local bilevel search (one α step, then one θ step, per local step).

Which images each α step used never goes into the reply: in a simulation (``write-truth``)
the client writes it to the run directory's ``truth/`` itself, where the leakage report's
scoring reads it (``fednas.truth``); a deployment's clients keep it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fednas.truth import write_truth

from tinynas.data import client_split, load_all
from tinynas.model import build

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    pid, num = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    cfg = msg.content["config"]
    model = build()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    model.train()
    x, y = (torch.as_tensor(a) for a in load_all())
    arch_idx, weight_idx = client_split(pid, num)
    rng = np.random.default_rng([int(cfg["server-round"]), pid])
    arch = [p for n, p in model.named_parameters() if n.startswith("arch.")]
    weights = [p for n, p in model.named_parameters() if not n.startswith("arch.")]
    arch_opt = torch.optim.SGD(arch, lr=float(cfg["lr-arch"]))
    weight_opt = torch.optim.SGD(weights, lr=float(cfg["lr-weights"]))
    used, loss = [], torch.tensor(0.0)
    for _ in range(int(cfg["steps"])):
        batch = rng.choice(arch_idx, int(cfg["batch-arch"]), replace=False)
        used.append(batch)
        arch_opt.zero_grad()
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        arch_opt.step()
        batch = rng.choice(weight_idx, int(cfg["batch-weights"]), replace=False)
        weight_opt.zero_grad()
        loss = F.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        weight_opt.step()
    if context.run_config.get("write-truth", True):  # simulation only: for scoring, never on the wire
        run_dir = str(context.run_config.get("run-dir", "")) or Path.home() / "tinynas-runs" / str(context.run_id)
        write_truth(run_dir, int(cfg["server-round"]), pid, {
            "alpha-indices": [int(i) for b in used for i in b], "alpha-batch-sizes": [len(b) for b in used],
            "alpha-pool": [int(i) for i in arch_idx]})
    content = RecordDict({
        "arrays": ArrayRecord(model.state_dict()),
        "metrics": MetricRecord({"loss": float(loss.detach()), "num-examples": len(weight_idx)}),
        "client": ConfigRecord({"partition-id": pid}),
    })
    return Message(content=content, reply_to=msg)
