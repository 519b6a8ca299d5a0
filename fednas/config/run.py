"""The run itself: seed, where its outputs go, the device (``cfg.run``)."""

from __future__ import annotations

from fednas.config.schema import Key, keys_of, non_negative

_k = keys_of("run")

# fmt: off
KEYS: tuple[Key, ...] = (
    _k("seed", 0,
       "Seed of everything: model init, pools, partitions, batches.",
       check=non_negative, rule=">= 0"),
    _k("output-dir", "outputs",
       "Root of run directories. A relative path is taken from $FEDNAS_HOME (the launcher sets it to the project "
       "root), else from the current directory."),
    _k("run-dir", "",
       "Exact run directory (absolute). Empty: a new folder under output-dir. The launcher sets it."),
    _k("run-name", "",
       "Optional name put into the run directory's name."),
    _k("device", "auto",
       "Torch device for clients and server: auto (cuda when the process has a GPU), cpu, cuda.",
       choices=("auto", "cpu", "cuda")),
)
# fmt: on
