"""ClientApp: per inner step, one SGD step on the architecture weights, then one on the weights."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from cellsearch.data import images, partition
from cellsearch.model import make_net
from clients.plugin import record_truth, tag_reply

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    clients = int(context.node_config["num-partitions"])
    cfg = msg.content["config"]
    server_round = int(cfg["server-round"])
    net = make_net()
    net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    net.train()
    x, y = (torch.as_tensor(a) for a in images())
    arch_pool, weight_pool = partition(pid, clients)
    arch = [p for n, p in net.named_parameters() if n.endswith("arch_weights")]
    weights = [p for n, p in net.named_parameters() if not n.endswith("arch_weights")]
    arch_opt = torch.optim.SGD(arch, lr=float(cfg["arch-lr"]))
    weight_opt = torch.optim.SGD(weights, lr=float(cfg["weight-lr"]))
    rng = np.random.default_rng([server_round, pid])
    batches = []
    for _ in range(int(cfg["inner-steps"])):
        batch = rng.choice(arch_pool, int(cfg["arch-batch"]), replace=False)
        batches.append(batch)
        arch_opt.zero_grad()
        F.cross_entropy(net(x[batch]), y[batch]).backward()
        arch_opt.step()
        batch = rng.choice(weight_pool, int(cfg["weight-batch"]), replace=False)
        weight_opt.zero_grad()
        F.cross_entropy(net(x[batch]), y[batch]).backward()
        weight_opt.step()
    if context.run_config["record-truth"]:  # a simulation's shared disk; never in the reply
        record_truth(str(context.run_config["run-dir"]), server_round, pid, batches, pool=arch_pool)
    content = RecordDict({"arrays": ArrayRecord(net.state_dict()),
                          "metrics": MetricRecord({"num-examples": len(weight_pool), "steps-done": len(batches)})})
    return Message(content=tag_reply(content, pid), reply_to=msg)
