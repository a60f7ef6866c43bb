"""What `dlgate.hooks.call` runs in the tests' child processes.

The spawned child imports this module by name (it inherits the test process's `sys.path`,
which holds `tests/`), then imports the user's module from its working directory, the
scratch repository, exactly as the gate imports a model factory: user code never lives in the
test process.
"""

from __future__ import annotations

from typing import Any

from dlgate.framework import load_target


def call_user(spec: str, *args: Any) -> Any:
    """Call `module:function` from the child's working directory with `args`."""
    return load_target(spec, "test hook")(*args)
