"""The built-in checks, one module per concern. Importing this package registers them all,
in stage order; a module registers its checks with `dlgate.registry.check` and, where it has
settings, its config section with `dlgate.config.section`."""

from dlgate import dataset as dataset
from dlgate.checks import changes as changes
from dlgate.checks import counts as counts
from dlgate.checks import loss as loss
from dlgate.checks import parity as parity
from dlgate.checks import accuracy as accuracy
