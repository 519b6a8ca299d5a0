"""fednas: federated DARTS search and its privacy audit, without any Flower dependency."""

__version__ = "0.1.0"
