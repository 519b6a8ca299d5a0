"""AMIA: black-box membership inference on the final model of a federated NAS run.

The target sits behind a :class:`PredictionAPI` (probabilities only); shadow models
trained on the attacker's auxiliary data (fixed ResNet, or searched with the run's own
DARTS search) calibrate three attacks (the paper's MLP, offline LiRA, loss threshold);
members are the clients' D^α samples, with D^θ as the weight-level baseline. Defenses:
LR (``alpha-l2``), DP input noise (``input-noise-std``), MD distillation (``md``).

``python -m attacks.amia RUN_DIR [--set key=value ...]`` or ``amia = true`` in a run.
"""

from attacks.amia.api import PredictionAPI, QueryError
from attacks.amia.data import AMIAInputError
from attacks.amia.runner import amia_after_run, run_amia

__all__ = ["PredictionAPI", "QueryError", "AMIAInputError", "run_amia", "amia_after_run"]
