"""Client-side differential-privacy mods: DP-SGD on α, and a clipped, noised update.

Register them for training only (``@app.train(mods=[dp_sgd_mod, update_dp_mod])``): like
Flower's ``LocalDpMod`` they must not touch evaluate messages. Each reads its settings from
``context.run_config`` at its first call (validated by ``fednas.config``, errors name the
key), passes every non-train message and every message through untouched when switched
off, and accounts what it spent in a per-client ledger kept in ``context.state``.

What a DP client adds to its reply's MetricRecord (every DP client the same keys, as
Flower's FedAvg requires):

* ``dp-epsilon`` / ``dp-epsilon-round``: the tightest ε this client can claim at ``dp-delta``
  for one example of its D^α over **everything it sends** (cumulative over its rounds /
  this round alone), by the configured accountant; ``dp-epsilon-rdp`` and
  ``dp-epsilon-prv`` the same by each accountant. It is the smallest ε among the
  mechanisms that cover every array of the reply (``dp-<mechanism>-covers-all = 1``):
  DP-SGD always does (θ and BatchNorm statistics are post-processing of the private α as
  far as D^α is concerned), the update mod only when it privatises every array sent. A
  mechanism that covers α alone bounds nothing about the θ sent beside it, so with no
  covering mechanism ``dp-epsilon`` is ∞ and only the per-mechanism ε remain.
* ``dp-delta``, ``dp-secure-rng`` (1: noise from OS entropy; 0: seeded from the run's seed,
  reproducible and removable by anyone who knows the seed); per mechanism ``dp-sgd-*``
  (clip, noise multiplier, sample rate, steps, epsilon by each accountant, covers-all) and
  ``dp-update-*`` (clip, noise std, noise multiplier, covers-theta, covers-all, epsilon).
"""

from __future__ import annotations

import abc
import functools
import logging
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MessageType, MetricRecord
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.constant import ErrorCode
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from fednas.accounting import GaussianEvent, Ledger, epsilon
from fednas.config import Config, parse_config
from fednas.privacy import (
    RECORD_BATCHNORM, RECORD_CLIP, RECORD_NOISE, RECORD_SECURE, noise_seed, privatize_update,
)
from fednas.spaces import Supernet

log = logging.getLogger(__name__)

LEDGER_KEY = "fednas-dp-ledger"  # context.state ConfigRecord holding the client's ledger (JSON)
UPDATE_NOISE_TAG = 0xD9_0D  # separates the update mod's noise stream from the DP-SGD one
SGD_METRICS_DROPPED = ("alpha-loss", "alpha-acc")  # computed on D^α without noise


@functools.lru_cache(maxsize=8)
def _parse(items: tuple) -> Config:
    return parse_config(dict(items))


def settings(context: Context) -> Config:
    """The run's configuration, validated once per process (ConfigError names bad keys)."""
    return _parse(tuple(sorted(context.run_config.items())))


def load_ledger(context: Context) -> Ledger:
    record = context.state.config_records.get(LEDGER_KEY)
    return Ledger.from_json(str(record["json"])) if record is not None else Ledger.empty()


def save_ledger(context: Context, ledger: Ledger) -> None:
    context.state[LEDGER_KEY] = ConfigRecord({"json": ledger.to_json()})


EPSILON_SUFFIXES = ("", "-round", "-rdp", "-prv")  # dp-<mechanism>-epsilon<suffix>, dp-epsilon<suffix>
_COVERS_ALL = re.compile(r"^dp-(.+)-covers-all$")


def covering_mechanisms(metrics: Mapping[str, Any]) -> list[str]:
    """The mechanisms of a reply whose ε covers every array the client sends."""
    return [m.group(1) for k in metrics if (m := _COVERS_ALL.match(k)) and int(metrics[k]) == 1]


def set_overall(metrics: MetricRecord, delta: float, secure: bool) -> None:
    """Write ``dp-epsilon*``: the smallest ε among the mechanisms covering every array sent (∞ if none)."""
    covering = covering_mechanisms(metrics)
    for suffix in EPSILON_SUFFIXES:
        values = [float(metrics[f"dp-{m}-epsilon{suffix}"]) for m in covering if f"dp-{m}-epsilon{suffix}" in metrics]
        metrics[f"dp-epsilon{suffix}"] = min(values) if values else math.inf
    metrics["dp-delta"] = delta
    metrics["dp-secure-rng"] = int(secure)


def account(context: Context, mechanism: str, event: GaussianEvent, dp: Any) -> dict[str, float]:
    """Add a release to the client's ledger; its ε (cumulative, this round's, by each accountant)."""
    ledger = load_ledger(context)
    ledger.add(mechanism, event)
    save_ledger(context, ledger)
    out = {f"{mechanism}-epsilon": ledger.epsilon(mechanism, dp.dp_delta, dp.dp_accountant),
           f"{mechanism}-epsilon-round": epsilon([event], dp.dp_delta, dp.dp_accountant)}
    out.update({f"{mechanism}-epsilon-{name}": eps for name, eps in ledger.epsilons(mechanism, dp.dp_delta).items()})
    return out


def error_reply(msg: Message, reason: str) -> Message:
    """An error reply: the server counts it as a failed client, the run goes on."""
    log.error(reason)
    return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=reason), reply_to=msg)


class _DpMod(abc.ABC):
    """Shared behaviour: train messages only, settings from the run config, on/off switch."""

    name = "dp mod"

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, context)
        cfg = settings(context)  # raises ConfigError naming the key on bad settings
        if not self.enabled(cfg):
            return call_next(msg, context)
        if "config" not in msg.content.config_records or "arrays" not in msg.content.array_records:
            return error_reply(msg, f"{self.name}: the train message needs a 'config' ConfigRecord and an 'arrays' ArrayRecord")
        return self.train(msg, context, call_next, cfg)

    @abc.abstractmethod
    def enabled(self, cfg: Config) -> bool:
        """Whether the run config switches this mod on."""

    @abc.abstractmethod
    def train(self, msg: Message, context: Context, call_next: ClientAppCallable, cfg: Config) -> Message:
        """Handle one train message (the mod is on)."""


class DpSgdMod(_DpMod):
    """Switch local search to DP-SGD on α, then account it (unit: one example of D^α).

    In: adds ``dp-sgd-clip``, ``dp-sgd-noise-multiplier``, ``dp-sgd-batchnorm`` and
    ``dp-secure-rng`` to the train ConfigRecord; the ClientApp builds the private α rule
    from them (``fednas.privacy.private_rule_from_record``) and reports in its metrics
    the sample rate and the number of steps it actually took.
    Out: composes (z, q, steps) into the ledger (Poisson subsampled Gaussian, add/remove
    one example), writes ε, and drops ``alpha-loss``/``alpha-acc`` (statistics of D^α that
    no noise covers).
    """

    name = "dp_sgd_mod"
    mechanism = "dp-sgd"

    def enabled(self, cfg: Config) -> bool:
        return bool(cfg.dp.dp_sgd)

    def train(self, msg: Message, context: Context, call_next: ClientAppCallable, cfg: Config) -> Message:
        dp = cfg.dp
        record = msg.content["config"]
        record[RECORD_CLIP] = dp.dp_sgd_clip
        record[RECORD_NOISE] = dp.dp_sgd_noise_multiplier
        record[RECORD_BATCHNORM] = dp.dp_sgd_batchnorm
        record[RECORD_SECURE] = dp.dp_secure_rng
        out = call_next(msg, context)
        if out.has_error():
            return out
        metrics = out.content["metrics"]
        missing = [k for k in ("dp-sgd-sample-rate", "dp-sgd-steps") if k not in metrics]
        if missing:
            return error_reply(msg, f"{self.name}: the ClientApp's reply lacks {missing}: it did not run the private rule")
        event = GaussianEvent(dp.dp_sgd_noise_multiplier, float(metrics["dp-sgd-sample-rate"]), int(metrics["dp-sgd-steps"]))
        for key in SGD_METRICS_DROPPED:
            if key in metrics:
                del metrics[key]
        metrics.update(account(context, self.mechanism, event, dp))
        metrics["dp-sgd-covers-all"] = 1  # every array sent is post-processing of the private α steps
        set_overall(metrics, dp.dp_delta, dp.dp_secure_rng)
        return out


class UpdateDpMod(_DpMod):
    """Clip the round's update to L2 norm C and add N(0, σ²) per coordinate (client-level).

    Δ is taken over α (names starting with ``alpha``), and over θ too when
    ``dp-update-theta`` is on. When the server runs Flower's
    ``DifferentialPrivacyClientSideFixedClipping`` (its clipping norm arrives in the train
    config under ``KEY_CLIPPING_NORM``), that norm is used and the *whole* update is
    clipped, as the wrapper's central noise calibration requires.

    Accounting: one Gaussian release per round, no amplification (an eavesdropper sees who
    took part). Unit: the client's whole dataset, any two datasets neighbours (local DP),
    so the L2 sensitivity is 2C and the noise multiplier z = σ / (2C).
    """

    name = "update_dp_mod"
    mechanism = "dp-update"

    def enabled(self, cfg: Config) -> bool:
        return bool(cfg.dp.dp_update)

    def train(self, msg: Message, context: Context, call_next: ClientAppCallable, cfg: Config) -> Message:
        dp = cfg.dp
        train_cfg = msg.content["config"]
        server_clip = train_cfg.get(KEY_CLIPPING_NORM)
        clip = float(server_clip) if server_clip is not None else dp.dp_update_clip
        if not clip > 0:
            return error_reply(msg, f"{self.name}: the server's clipping norm {server_clip!r} must be > 0")
        received = _numpy(msg.content["arrays"])
        out = call_next(msg, context)
        if out.has_error():
            return out
        record = out.content["arrays"]
        sent = _numpy(record)
        whole = server_clip is not None or dp.dp_update_theta
        keys = [k for k in sent if k in received and (whole or k.startswith(Supernet.alpha_prefix))]
        if not keys:
            return error_reply(msg, f"{self.name}: the reply holds no array that the server sent (nothing to privatise)")
        rng = np.random.default_rng(None if dp.dp_secure_rng else noise_seed(
            cfg.run.seed, int(train_cfg.get("server-round", 0)), int(context.node_config.get("partition-id", 0)),
            UPDATE_NOISE_TAG))
        new, norm = privatize_update(received, sent, keys, clip, dp.dp_update_noise_std, rng)
        log.debug("%s: update norm %.4g clipped to %.4g", self.name, norm, clip)  # never in the reply
        out.content["arrays"] = ArrayRecord({k: Array(np.ascontiguousarray(new[k])) for k in record.keys()})
        z = dp.dp_update_noise_std / (2.0 * clip)
        metrics = out.content["metrics"]
        covers_all = int(len(keys) == len(sent))
        metrics.update({
            "dp-update-clip": clip,
            "dp-update-noise-std": dp.dp_update_noise_std,
            "dp-update-noise-multiplier": z,
            "dp-update-covers-theta": covers_all,
            "dp-update-covers-all": covers_all,
            **account(context, self.mechanism, GaussianEvent(z, 1.0, 1), dp),
        })
        set_overall(metrics, dp.dp_delta, dp.dp_secure_rng)
        return out


def _numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: np.array(v.numpy(), copy=True) for k, v in record.items()}


dp_sgd_mod = DpSgdMod()
update_dp_mod = UpdateDpMod()

__all__ = ["DpSgdMod", "UpdateDpMod", "dp_sgd_mod", "update_dp_mod", "settings", "load_ledger", "LEDGER_KEY"]

