"""The built-in checks, one module per concern. Importing this package registers them all,
in stage order; a module registers its checks with `dlgate.registry.check` and, where it has
settings, its config section with `dlgate.config.section`."""

from dlgate.checks import changes as changes
