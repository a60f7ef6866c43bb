"""The seeded-fault catalogue of the training stage: small, realistic changes to the bundled
example's model or training code (examples/digits), each of which raises no exception and
must be caught by a named `training.*` check.

    from faults import FAULTS, Suite
    suite = Suite(tmp_path)
    healthy = suite.healthy()          # check id → CheckResult of the unmodified example
    row = suite.run(FAULTS[0])         # which checks failed, and whether an expected one did

Run as a script (`python tests/faults/run.py`) it prints the catch table.
"""

from faults.catalogue import FAULTS, Fault, Row, Suite, table

__all__ = ["FAULTS", "Fault", "Row", "Suite", "table"]
