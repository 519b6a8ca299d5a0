"""The eavesdropper and ADRA, the attack on each capture (``cfg.attack``; attacks/adra, docs/adra.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fednas.config.schema import Key, in_unit, keys_of, non_negative, positive
from fednas.registry import ATTACKS

_k = keys_of("attack")

# fmt: off
KEYS: tuple[Key, ...] = (
    _k("eavesdrop", False,
       "Wrap the server's strategy with the eavesdropper: record each client's alpha before/after its round "
       "(captures/), attack it, write leakage/."),
    _k("attack", "adra",
       "Attack run on every capture, by name (fednas.registry.ATTACKS).",
       choices=ATTACKS),
    _k("attack-online", True,
       "Attack captures while the run goes on (worker processes) and report at its end. Off: only record "
       "captures; attack later with python -m attacks.adra RUN_DIR."),
    _k("attack-workers", 1,
       "Worker processes attacking captures during the run (0: attack in the server process after the last "
       "round).",
       check=non_negative, rule=">= 0"),
    _k("write-truth", True,
       "Simulation only: each client writes which D^alpha samples its alpha steps used to <run-dir>/truth/ for "
       "the leakage report's scoring (never sent over the wire; needs run-dir, which the launcher sets). The "
       "deployment launcher sets it false: a deployment's leakage report is unscored."),
    _k("attack-identifiability", True,
       "Score each capture's identifiability (rank of d(alpha-gradient)/dx at the true batch over the input "
       "size; costs about one attack iteration per input pixel)."),
    _k("alpha-pattern", "^alpha",
       "Regular expression (re.search) naming the alpha arrays among a message's arrays; the rest is theta."),
    _k("adra-mode", "strong",
       "paper: L2 matching of the raw gradient over a dummy image and soft label, kappa denoise (Li et al. "
       "2024). strong: the known client optimizer unrolled, cosine distance, label search, TV/box priors, "
       "restarts.",
       choices=("paper", "strong")),
    _k("knows-weights", True,
       "The attacker uses the server's theta_t1 (on the wire when share-weights). Off, or when no theta was "
       "sent: surrogate theta from U(-bound, bound)."),
    _k("theta-prior", "surrogate",
       "What the attacker uses for theta when it is not on the wire (or knows-weights = false): surrogate (fresh "
       "draws from U(-bound, bound), the paper's assumption), init (the theta_0 the server itself initialised: "
       "exact in round 1), shadow (theta_0 trained for the client's earlier rounds on the attacker's aux data).",
       choices=("surrogate", "init", "shadow")),
    _k("theta-between-steps", "aux",
       "strong, several local steps: how the replay moves theta between the client's alpha steps (the client's "
       "theta steps on D^theta batches the attacker never sees): aux (the client's theta optimizer on the aux "
       "pool's mean gradient, a stand-in for its batches), sampled (theta-paths paths, each theta step on a random "
       "aux batch of the client's batch-size: the spread of the client's own path) or held (theta_t1 throughout).",
       choices=("aux", "sampled", "held")),
    _k("theta-paths", 8,
       "theta-between-steps = sampled: theta paths drawn per theta belief (the match averages over them, the "
       "learned inverse trains across them).",
       check=positive, rule="> 0"),
    _k("surrogate-draws", 1,
       "theta draws whose matching losses are averaged when theta is not known (surrogate: independent draws; "
       "shadow: trajectories on different aux batches).",
       check=positive, rule="> 0"),
    _k("adra-iterations", 0,
       "Most optimisation steps of the reconstruction (0: the optimizer's own budget: lm 40, stopping earlier "
       "when the match plateaus; adam and lbfgs 300).",
       check=non_negative, rule=">= 0"),
    _k("adra-restarts", 2,
       "strong: starting points per label hypothesis (the best match is kept; the worst are dropped early). "
       "paper: 1.",
       check=positive, rule="> 0"),
    _k("adra-optimizer", "auto",
       "Optimiser of the dummy: lm (Levenberg-Marquardt with Broyden updates, batched over hypotheses), adam, "
       "lbfgs (paper mode only), or auto (paper: lbfgs as DLG; strong: lm).",
       choices=("auto", "lm", "adam", "lbfgs")),
    _k("adra-lr", 0.1,
       "Learning rate of the dummy's optimiser (adam; lbfgs uses 1 with a line search).",
       check=positive, rule="> 0"),
    _k("adra-distance", "auto",
       "strong: distance between observed and predicted delta-alpha: cosine, l2 (scale-aware, normalised by the "
       "observed norm), auto (l2 where the replay is exact: theta exact and the client's round modelled exactly; "
       "else cosine).",
       choices=("auto", "cosine", "l2")),
    _k("adra-init", "aux",
       "strong: starting points: aux (the attacker's aux images whose predicted update best matches, a learned "
       "prior; labels inferred from them; with one sample per capture also a learned inverse: ridge regression "
       "from the aux images' updates to their pixels) or noise (uniform noise, every label tried).",
       choices=("aux", "noise")),
    _k("adra-labels", "auto",
       "strong: labels: try-all (every class per sample, B=1), joint (soft labels optimised with the images), "
       "auto (try-all when one sample per step, else joint).",
       choices=("auto", "try-all", "joint")),
    _k("adra-unroll", True,
       "strong: replay the client's known local procedure (every alpha step, the optimizer's state) instead of "
       "reading delta-alpha as one gradient."),
    _k("adra-tv", 0.02,
       "strong: weight of the total-variation prior.",
       check=non_negative, rule=">= 0"),
    _k("adra-prior", "auto",
       "strong: what the dummy is made of: none (free pixels), pca (coefficients of the aux pool's principal "
       "components: a learned prior), auto (pixels up to 256 unknowns per hypothesis, else pca).",
       choices=("auto", "none", "pca")),
    _k("adra-prior-components", 32,
       "strong: principal components of the pca prior.",
       check=positive, rule="> 0"),
    _k("adra-method", "auto",
       "strong: how a capture is read: inverse (a network trained on (delta-alpha, image) pairs the attacker "
       "makes from its aux pool as the capture was made, read once, then polished: attacks/adra/inverse.py), "
       "search (screen the aux pool, then refine images until their predicted update matches delta-alpha), "
       "generative (the inverse's reading, then a latent search of a VAE trained on the aux pool: Adam "
       "restarts and CMA-ES, then the polish; whichever candidate matches delta-alpha best: "
       "attacks/adra/generative.py), or auto: inverse where it reads the capture (B <= 4 and an aux pool), "
       "search otherwise. Paper mode: the paper's recipe whatever this says.",
       choices=("auto", "inverse", "search", "generative")),
    _k("adra-inverse-pairs", 4096,
       "inverse: (delta-alpha, image) pairs made per round from the aux pool (each image randomly shifted, "
       "rotated and scaled when adra-inverse-augment).",
       check=positive, rule="> 0"),
    _k("adra-inverse-epochs", 60,
       "inverse: training epochs over the pairs (the epoch with the lowest held-out loss is kept).",
       check=positive, rule="> 0"),
    _k("adra-inverse-hidden", 1024,
       "inverse: width of the network's two hidden layers.",
       check=positive, rule="> 0"),
    _k("adra-inverse-augment", True,
       "inverse: move each aux image randomly (shift up to 2 px, rotation up to 12 degrees, scale 0.9-1.1) "
       "before making its pair."),
    _k("adra-inverse-polish", 10,
       "inverse: Levenberg-Marquardt iterations refining the inverse's image on the match; the polished image "
       "is kept only where it lowers the match (0: off).",
       check=non_negative, rule=">= 0"),
    _k("adra-generative-latent", 16,
       "generative: latent dimensions of the VAE trained on the aux pool.",
       check=positive, rule="> 0"),
    _k("adra-generative-epochs", 300,
       "generative: the VAE's training epochs over the (augmented) aux pool.",
       check=positive, rule="> 0"),
    _k("adra-generative-restarts", 8,
       "generative: random latent starts beside the inverse's image encoded, searched together by Adam.",
       check=non_negative, rule=">= 0"),
    _k("adra-generative-steps", 60,
       "generative: Adam steps on the latents (each a batched match and its gradient).",
       check=non_negative, rule=">= 0"),
    _k("adra-generative-generations", 30,
       "generative: CMA-ES generations on the latent from the best Adam latent (0: none).",
       check=non_negative, rule=">= 0"),
    _k("adra-cache-dir", "",
       "inverse: folder of the cached pairs and networks, keyed by everything that determines them (empty: "
       "$FEDNAS_CACHE, else $XDG_CACHE_HOME/fednas-privacy, else ~/.cache/fednas-privacy; then adra/)."),
    _k("adra-kappa", 0.96,
       "paper: denoise, pixels above kappa (of 1; the paper's 245/255) are set to 0.",
       check=in_unit, rule="in (0, 1]"),
)
# fmt: on


def attack_checks(flat: Mapping[str, Any]) -> list[str]:
    if flat["adra-mode"] == "paper" and flat["adra-method"] in ("inverse", "generative"):
        return [f"'adra-method' = \"{flat['adra-method']}\" is for adra-mode = \"strong\": paper mode is the "
                "paper's own recipe"]
    if flat["adra-mode"] == "strong" and flat["adra-optimizer"] == "lbfgs":
        return ["'adra-optimizer' = \"lbfgs\" is for adra-mode = \"paper\" only: strong mode refines batched "
                "hypotheses in the pixel box, for which it has lm (the default) and adam"]
    return []
