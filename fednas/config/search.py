"""One client's local search: the alpha and theta steps, and what it replies (``cfg.search``).

These keys travel to the clients in every round's train config (:func:`search_to_record`).
"""

from __future__ import annotations

from fednas.config.schema import Key, in_unit0, keys_of, non_negative, positive

_k = keys_of("search")

# fmt: off
KEYS: tuple[Key, ...] = (
    _k("local-steps", 5,
       "Local search steps per round (each: one alpha step on D^alpha, one theta step on D^theta).",
       check=positive, rule="> 0"),
    _k("local-epochs", 0,
       "If > 0: run this many passes over D^theta instead of local-steps.",
       check=non_negative, rule=">= 0"),
    _k("batch-size", 32,
       "Batch size of a theta step.",
       check=positive, rule="> 0"),
    _k("alpha-batch-size", 32,
       "B: batch size of an alpha step.",
       check=positive, rule="> 0"),
    _k("theta-lr", 0.025,
       "SGD learning rate of theta.",
       check=positive, rule="> 0"),
    _k("theta-momentum", 0.9,
       "SGD momentum of theta.",
       check=in_unit0, rule="in [0, 1)"),
    _k("theta-weight-decay", 3e-4,
       "Weight decay of theta.",
       check=non_negative, rule=">= 0"),
    _k("theta-grad-clip", 5.0,
       "Clip theta's gradient to this L2 norm (0: off).",
       check=non_negative, rule=">= 0"),
    _k("alpha-optimizer", "adam",
       "Optimizer of alpha.",
       choices=("adam", "sgd")),
    _k("alpha-lr", 3e-4,
       "Learning rate of alpha.",
       check=positive, rule="> 0"),
    _k("alpha-weight-decay", 1e-3,
       "Weight decay of alpha.",
       check=non_negative, rule=">= 0"),
    _k("alpha-beta1", 0.5,
       "Adam beta1 for alpha.",
       check=in_unit0, rule="in [0, 1)"),
    _k("alpha-order", "first",
       "Architecture gradient: first-order, or second-order (unrolled, finite-difference Hessian-vector "
       "product).",
       choices=("first", "second")),
    _k("alpha-l2", 0.0,
       "lambda of an L2 penalty lambda * sum(alpha^2) added to the alpha loss (the LR defense).",
       check=non_negative, rule=">= 0"),
    _k("share-weights", True,
       "Clients send theta too and the server averages it (FedNAS). Off: theta stays on each client."),
    _k("alpha-warmup-rounds", 0,
       "Warm-up: in rounds 1..N clients train theta only and alpha does not move (DARTS variants warm the "
       "weights up before the architecture; a random-weight supernet favours parameter-free ops).",
       check=non_negative, rule=">= 0"),
    _k("proximal-alpha", False,
       "FedProx (strategy = fedprox): put the proximal term on alpha too, mu/2 ||alpha - alpha_global||^2 added "
       "to alpha's loss (off: theta only, as FedProx)."),
    _k("bn-statistics", "pooled",
       "BatchNorm running statistics of the global model. pooled: after aggregating, the server asks the round's "
       "clients for the statistics of the new global theta on their D^theta (a recalibration pass) and pools "
       "them, so eval-mode numbers describe the averaged model (with local theta: as client). client: each "
       "client re-estimates the statistics of the theta it replies on its D^theta and the server averages them "
       "(no extra round trip, approximate). ema: the theta steps' moving average, averaged (near-chance "
       "eval-mode accuracy for many rounds). D^alpha never enters them.",
       choices=("pooled", "client", "ema")),
    _k("bn-statistics-batches", 0,
       "Batches of batch-size samples of D^theta in a recalibration pass (0: all of D^theta).",
       check=non_negative, rule=">= 0"),
)
# fmt: on
