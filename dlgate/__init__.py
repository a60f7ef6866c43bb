"""dlgate: a merge gate for deep-learning pipelines."""

__version__ = "0.1.0"
