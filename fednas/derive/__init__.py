"""The derived network, trained from scratch and judged against random genotypes of the same space."""

from fednas.derive.run import DeriveInputError, derive_after_run, derive_run, judge, load_searched_run
from fednas.derive.training import Task, task_from_config, train_network

__all__ = ["DeriveInputError", "Task", "derive_after_run", "derive_run", "judge", "load_searched_run",
           "task_from_config", "train_network"]
