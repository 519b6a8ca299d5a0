"""``python -m benchmarks.adra [--device cuda] [--nodes 32,64,128] [--captures 3] [...]``: ADRA's seconds
per capture at the paper's scale (28×28 ``mnist-5k``, B = 1, θ known), and what it rebuilt.

A few minutes on one GPU with the defaults. For each P it builds the captures of round 1
in this process, as the eavesdropper would record them (the real local search of clients
0, 1, ... from the server's seeded α and θ: one SGD step on one D^α sample), attacks each
with the default strong settings on ``--device`` and scores it against the client's
sample: seconds per capture (the device drained before and after), identified in D^α and
in the whole dataset, label accuracy, PSNR. Asking for CUDA without a GPU is an error
that says so, before anything runs.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

from attacks import metrics as M
from attacks.adra.attack import ADRA
from attacks.base import Knowledge
from attacks.captures import Capture
from benchmarks.common import machine, resolve_device, synchronize, table, write_results
from fednas.config import parse_config, search_to_record
from fednas.data import client_data, make_pools
from fednas.federated import client_train, initial_arrays

EXPERIMENT = {"dataset": "mnist-5k", "head": "flatten", "activation": "elu", "local-steps": 1, "alpha-batch-size": 1,
              "alpha-optimizer": "sgd", "num-server-rounds": 1}


def captures(cfg: Any, count: int) -> list[tuple[Capture, list[int]]]:
    """Round-1 captures of clients 0..count-1 (a federation of ``count`` clients) and their samples."""
    arrays = initial_arrays(cfg)
    alpha = {k: v.numpy() for k, v in arrays.items() if k.startswith("alpha")}
    theta = {k: v.numpy() for k, v in arrays.items() if not k.startswith("alpha")}
    out = []
    for pid in range(count):
        reply = client_train(cfg, cfg.search, arrays, partition_id=pid, num_clients=count, server_round=1)
        cap = Capture(id=f"r001-n{pid}", round=1, node_id=pid, partition_id=pid, alpha_t1=alpha,
                      alpha_t2={k: v.numpy() for k, v in reply.arrays.items() if k.startswith("alpha")},
                      theta_t1=theta, train_config={**search_to_record(cfg.search), "server-round": 1},
                      metrics=dict(reply.metrics))
        out.append((cap, list(reply.audit["alpha-indices"])))
    return out


def run_nodes(nodes: int, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    cfg = parse_config({**EXPERIMENT, "nodes": nodes, "seed": args.seed, "device": device.type})
    dataset, _ = client_data(cfg.data, cfg.run.seed, 0, args.captures)
    aux = make_pools(len(dataset), cfg.data, cfg.run.seed).aux
    knowledge = Knowledge(cfg, dataset.spec, dataset.x[aux].numpy(), dataset.y[aux].numpy())
    attack = ADRA(cfg.attack, seed=cfg.run.seed, device=device)
    x_all, y_all = dataset.x.numpy(), dataset.y.numpy()
    seconds, ident, ident_all, labels, psnr = [], [], [], [], []
    for cap, used in captures(cfg, args.captures):
        _, split = client_data(cfg.data, cfg.run.seed, cap.partition_id, args.captures)
        synchronize(device)
        t0 = time.perf_counter()
        rec = attack.reconstruct([cap], knowledge)[0]
        synchronize(device)
        seconds.append(time.perf_counter() - t0)
        if rec.status != "ok":
            logging.warning("P=%d %s failed: %s", nodes, cap.id, rec.reason)
            ident.append(False), ident_all.append(False), labels.append(False)
            continue
        g, img = used[0], rec.images[0]
        ident.append(int(split.alpha[M.nearest(img, x_all[split.alpha])]) == g)
        ident_all.append(M.nearest(img, x_all) == g)
        labels.append(int(rec.labels[0]) == int(y_all[g]))
        psnr.append(M.psnr(M.mse(img, x_all[g])))
        print(f"  P={nodes} {cap.id}: {seconds[-1]:.1f} s, identified {ident[-1]} (dataset {ident_all[-1]}), "
              f"label {labels[-1]}, PSNR {psnr[-1]:.1f} dB", flush=True)
    return {"nodes": nodes, "captures": len(seconds), "s-per-capture": statistics.median(seconds),
            "s-each": seconds, "identified": float(np.mean(ident)), "identified-dataset": float(np.mean(ident_all)),
            "label-accuracy": float(np.mean(labels)), "mean-psnr": float(np.mean(psnr)) if psnr else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.adra", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--device", default="cuda", help="cuda (default; an error without a GPU) or cpu")
    p.add_argument("--nodes", default="32,64,128", help="comma-separated P")
    p.add_argument("--captures", type=int, default=3, help="captures (clients of round 1) per P")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rows = [run_nodes(int(n), args, device) for n in args.nodes.split(",") if n.strip()]
    print(f"\nADRA strong (defaults), mnist-5k 28x28, B = 1, theta known, {device.type}: wall seconds per capture "
          "(median)")
    print(table(([r["nodes"], r["captures"], r["s-per-capture"], r["identified"], r["identified-dataset"],
                  r["label-accuracy"], r["mean-psnr"]] for r in rows),
                ["P", "captures", "s/capture", "identified", "identified (dataset)", "label acc", "PSNR dB"]))
    print("results:", write_results(f"adra-{device.type}", {"machine": machine(), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
