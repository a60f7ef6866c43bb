"""The errors dlgate raises, and the exit code each one maps to.

    DlgateError                  base; never escapes `cli.main` (exit 3 if nothing better fits)
    ├── UsageError               bad command line                               → exit 2
    ├── ConfigError              dlgate.yml invalid (file, line, key)           → exit 2
    ├── GitError                 a git command failed, a revision is unknown,
    │   │                        a shallow clone lacks history                  → exit 2
    │   └── ShallowCloneError
    ├── HookError                user pipeline code raised, hung or crashed     → becomes a check
    │                            outcome (`error`), never an exit by itself
    ├── BaselineError            the baseline store is unreachable or broken    → exit 3
    └── PublishError             GitHub refused a request after the retries     → exit 3

Foreign exceptions (subprocess, MLflow, PyGithub, onnxruntime) are translated into these at the
module that calls the foreign library; messages say what to do next.
"""

from __future__ import annotations


class DlgateError(Exception):
    """Base of every error dlgate raises on purpose."""

    exit_code = 3


class UsageError(DlgateError):
    exit_code = 2


class ConfigError(DlgateError):
    """An invalid configuration; the message names the file, the line and the key."""

    exit_code = 2

    def __init__(self, message: str, *, file: str = "dlgate.yml", line: int | None = None) -> None:
        self.file = file
        self.line = line
        # "dlgate.yml @ 1a2b3c4" (read from a revision) reads best as "dlgate.yml:3 @ 1a2b3c4".
        name, sep, rev = file.partition(" @ ")
        where = f"{name}:{line}{sep}{rev}" if line is not None else file
        super().__init__(f"{where}: {message}")


class GitError(DlgateError):
    exit_code = 2


class ShallowCloneError(GitError):
    pass


class HookError(DlgateError):
    """User pipeline code failed: raised (with its traceback), timed out, or crashed."""

    def __init__(self, hook: str, message: str, *, kind: str = "raised", details: str = "") -> None:
        self.hook = hook
        self.kind = kind  # raised | timeout | crashed | bad-return | failed
        self.details = details  # a traceback or the end of a log
        super().__init__(f"{hook}: {message}")


class BaselineError(DlgateError):
    exit_code = 3


class PublishError(DlgateError):
    exit_code = 3
