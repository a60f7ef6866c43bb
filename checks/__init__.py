"""The built-in checks, one module per concern. Importing this package registers them all,
in stage order; a module registers its checks with `dlgate.registry.check` and, where it has
settings, its config section with `dlgate.config.section`."""

# The import order is the order the checks run and are reported in: keep it, unsorted.
# isort: off
from dlgate import dataset as dataset
from dlgate.checks import changes as changes
from dlgate.checks import sources as sources
from dlgate.checks import counts as counts
from dlgate.checks import labels as labels
from dlgate.checks import integrity as integrity
from dlgate.checks import images as images
from dlgate.checks import duplicates as duplicates
from dlgate.checks import conflicts as conflicts
from dlgate.checks import leakage as leakage
from dlgate.checks import roundtrip as roundtrip
from dlgate.checks import stats as stats
from dlgate.checks import gallery as gallery
from dlgate.checks import loss as loss
from dlgate.checks import init_loss as init_loss
from dlgate.checks import gradients as gradients
from dlgate.checks import gradient_flow as gradient_flow
from dlgate.checks import finite as finite
from dlgate.checks import outputs as outputs
from dlgate.checks import overfit as overfit
from dlgate.checks import independence as independence
from dlgate.checks import zero_input as zero_input
from dlgate.checks import activations as activations
from dlgate.checks import determinism as determinism
from dlgate.checks import history as history
from dlgate.checks import fit as fit
from dlgate.checks import metrics as metrics
from dlgate.checks import tests as tests
from dlgate.checks import contract as contract
from dlgate.checks import parity as parity
from dlgate.checks import facts as facts
from dlgate.checks import accuracy as accuracy
from dlgate.checks import noise as noise
from dlgate.checks import edge_cases as edge_cases
from dlgate.checks import release as release
# isort: on
