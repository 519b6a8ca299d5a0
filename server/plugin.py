"""The attacker as a plugin for any Flower app: wrap a strategy, get self-describing captures.

Two lines in any ServerApp (docs/plugin.md)::

    from server.plugin import eavesdrop
    strategy = eavesdrop(FedAvg(...), "RUN_DIR", model="my_app.model:build", input_shape=(1, 28, 28))

then ``strategy.start(...)`` as usual: the wrapped strategy aggregates exactly what it would
alone; ``RUN_DIR/captures`` fills with each client's α before and after every round, and
``python -m attacks.adra RUN_DIR`` attacks them offline on ``my_app.model:build``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flwr.serverapp.strategy import Strategy

from fednas.captures import CaptureStore, Manifest
from server.eavesdrop import Eavesdropper


def eavesdrop(strategy: Strategy, run_dir: str | Path, *, model: str | Callable[..., Any] | None = None,
              alpha_pattern: str = "^alpha", input_shape: tuple[int, int, int] | None = None,
              num_classes: int | None = None, client_settings: Mapping[str, Any] | None = None,
              wire_keys: Mapping[str, str] | None = None,
              on_capture: Callable[[str], None] | None = None) -> Eavesdropper:
    """Wrap ``strategy`` so that it records what crosses the wire into ``run_dir/captures``.

    Parameters
    ----------
    strategy : flwr.serverapp.strategy.Strategy
        Any strategy (Flower's, a subclass of your own, a DP wrapper); forwarded untouched.
    run_dir : path
        Absolute folder for ``captures/`` and ``truth/`` (a ServerApp's working directory
        is an unrelated temporary one under ``flwr run``).
    model : str or callable, optional
        ``package.module:factory`` (or the factory itself) returning the victim's network:
        a ``torch.nn.Module`` whose α are named parameters matching ``alpha_pattern``.
        Recorded in the manifest for ``python -m attacks.adra``; ``--model`` can give it later.
    alpha_pattern : str
        Regular expression (``re.search``) naming the α arrays among a message's arrays.
    input_shape, num_classes
        The victim's input (C, H, W) and classes, if the server knows them.
    client_settings : mapping, optional
        Facts of your client's α procedure not sent on the wire, by the names
        ``alpha-optimizer`` (``sgd``/``adam``), ``alpha-lr``, ``alpha-weight-decay``,
        ``alpha-beta1``, ``alpha-batch-size``, ``local-steps``, ``alpha-l2``.
    wire_keys : mapping, optional
        ``{name above: your key}`` for settings your train config (or the reply's metrics)
        carries under another name, e.g. ``{"alpha-lr": "arch-lr"}``.
    on_capture : callable, optional
        Called with each new capture's id.
    """
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_absolute():
        raise ValueError(f"run_dir {str(run_dir)!r} must be absolute: under flwr run a ServerApp's working "
                         "directory is a temporary one, and what is written there is lost")
    if model is not None and not isinstance(model, str):
        from attacks.foreign import callable_ref

        model = callable_ref(model)
    manifest = Manifest(model=model, alpha_pattern=alpha_pattern,
                        input_shape=None if input_shape is None else tuple(int(v) for v in input_shape),
                        num_classes=num_classes, client_settings=dict(client_settings or {}),
                        wire_keys=dict(wire_keys or {}))
    return Eavesdropper(strategy, CaptureStore(run_dir), on_capture=on_capture, manifest=manifest)


__all__ = ["eavesdrop", "Eavesdropper", "Manifest"]
