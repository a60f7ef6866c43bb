"""The command line: `dlgate run | baseline | release | action | serve | worker`.

`main(argv) -> int` runs in-process (tests call it directly); exit codes are `ExitCode`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import enum
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from dlgate import __version__, gate, render
from dlgate.errors import DlgateError, UsageError
from dlgate.report import STAGES, Report


class ExitCode(enum.IntEnum):
    PASSED = 0  # the gate passed
    REFUSED = 1  # the gate refused (a check failed or errored)
    USAGE = 2  # bad command line or configuration
    INTERNAL = 3  # dlgate itself broke


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage().rstrip()}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dlgate", description="A merge gate for deep-learning pipelines.")
    p.add_argument("--version", action="version", version=f"dlgate {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--repo", type=Path, default=Path("."), help="the git repository")
        sp.add_argument("--config", type=Path, help="a dlgate.yml to use instead of the base's")
        sp.add_argument(
            "--stage",
            action="append",
            choices=STAGES,
            default=[],
            help="run only this stage (repeatable)",
        )
        sp.add_argument("--json", type=Path, help="write the JSON report here")
        sp.add_argument("--markdown", type=Path, help="write the Markdown report here")
        sp.add_argument("--out", type=Path, help="folder for reports and artifacts")
        sp.add_argument(
            "--tracking-uri",
            help="MLflow tracking URI (default: "
            "$MLFLOW_TRACKING_URI, else SQLite in <repo>/.dlgate/)",
        )
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
        sp.add_argument("-v", "--verbose", action="store_true", help="show passing checks too")

    run = sub.add_parser("run", help="gate HEAD against BASE")
    common(run)
    run.add_argument("--base", required=True, help="the target branch or commit")
    run.add_argument("--head", default="HEAD", help="the commit to gate (default HEAD)")
    run.add_argument("--kind", choices=("pr", "merge_group"), default="pr")
    run.add_argument("--pr", type=int, help="the pull request number, recorded with the run")
    run.add_argument("--record", action="store_true", help="also record this run in MLflow")

    base = sub.add_parser("baseline", help="record a main-branch baseline")
    common(base)
    base.add_argument("--rev", default="HEAD")
    base.add_argument("--ref", default="main", help="the branch the commit is on")

    rel = sub.add_parser("release", help="record a release and compare with the previous one")
    common(rel)
    rel.add_argument("--tag", required=True)

    sub.add_parser("action", help="run as the GitHub Action step (reads GITHUB_* variables)")
    serve = sub.add_parser("serve", help="start the webhook service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    sub.add_parser("worker", help="run the webhook service's job worker (settings from env)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as exc:  # --help and --version exit from argparse; main returns
            return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
        return _dispatch(args)
    except DlgateError as exc:
        print(f"dlgate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("dlgate: interrupted", file=sys.stderr)
        return ExitCode.INTERNAL
    except Exception as exc:  # the one boundary where anything unexpected becomes exit 3
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(
            f"dlgate: internal error: {type(exc).__name__}: {exc}; please report it",
            file=sys.stderr,
        )
        return ExitCode.INTERNAL


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "action":
        from dlgate.action import main as action_main

        return action_main()
    if args.command == "worker":
        from dlgate.service.worker import main as worker_main

        return worker_main([])
    if args.command == "serve":
        from dlgate.service.app import serve

        return serve(args.host, args.port)
    common = {
        "repo": args.repo,
        "config_file": args.config,
        "stages": tuple(args.stage),
        "out": args.out,
        "tracking_uri": args.tracking_uri,
    }
    if args.command == "run":
        request = gate.Request(
            head=args.head,
            base=args.base,
            kind=args.kind,
            pr=args.pr,
            record=args.record or None,
            **common,
        )
    elif args.command == "baseline":
        request = gate.Request(head=args.rev, kind="baseline", ref=args.ref, **common)
    else:
        from dlgate.release import release

        return release(args.repo, args.tag, common, _progress(args.quiet), _finish(args))
    report = gate.run(request, _progress(args.quiet))
    return _finish(args)(report)


def _progress(quiet: bool) -> Callable[[str], None]:
    start = time.perf_counter()

    def say(message: str) -> None:
        if not quiet:
            print(f"[{time.perf_counter() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    return say


def _finish(args: argparse.Namespace) -> Callable[[Report], int]:
    def finish(report: Report) -> int:
        write_views(report, json_path=args.json, markdown_path=args.markdown)
        color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        sys.stdout.write(render.terminal(report, color=color, verbose=args.verbose))
        return ExitCode.PASSED if report.passed else ExitCode.REFUSED

    return finish


def write_views(report: Report, *, json_path: Path | None, markdown_path: Path | None) -> None:
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(report.to_json(), encoding="utf-8")
    if markdown_path:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(render.markdown(report), encoding="utf-8")


def run_main() -> None:
    """The console script: `main`, then a quick exit.

    By the time `main` returns, every result is on disk and every process the run started has
    ended (`Context.close`). What remains is the interpreter's teardown of the ~2,500 modules
    MLflow, onnxruntime and matplotlib load: most of a second spent freeing memory the
    operating system takes back anyway. Exit does everything else as usual: it waits for
    threads that are not daemons (and thread pools' queued work), runs the exit handlers and
    flushes the output; only the teardown is skipped."""
    code = main()
    wait_for_threads = vars(threading).get("_shutdown")  # what exit calls first; private
    if callable(wait_for_threads):
        wait_for_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: `dlgate run | head`
            stream.flush()
    os._exit(code)
