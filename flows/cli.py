"""The `varyflow` command. Each layer registers its own subcommands; this module only dispatches and
turns expected failures into one clear line and a nonzero exit (a traceback only with --debug)."""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from typing import Callable, Iterator, Sequence

# Prefect phones home unless told not to; varyflow never does.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


class CliError(Exception):
    """An error whose message is already the one line the user should read."""


def _registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    from storage import cli as storage_cli

    regs = [storage_cli.register]
    for module in ("training.cli", "flows.commands"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        regs.append(mod.register)
    return regs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="varyflow", description="varyflow: render Vary training data, train, and trace lineage.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in _registrars():
        register(sub)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    from storage.errors import StorageError

    errors: list[type[BaseException]] = [CliError, StorageError, FileNotFoundError, PermissionError, ValueError]
    try:
        from generators.base import GeneratorError

        errors.append(GeneratorError)
    except ImportError:
        pass
    try:
        from training.errors import TrainingError  # type: ignore[import-not-found]

        errors.append(TrainingError)
    except ImportError:
        pass
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = build_parser()
    # --debug is accepted anywhere on the line, before or after the subcommand.
    args = parser.parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    with _terminate_like_interrupt():
        return _run(args, debug)


def _run(args: argparse.Namespace, debug: bool) -> int:
    try:
        rc = args.func(args)
        sys.stdout.flush()  # a closed pipe (`--json | head`) surfaces here, not at interpreter exit
    except BrokenPipeError:
        # The reader went away (`| head`): what it wanted it has; say nothing, like other Unix tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
    except KeyboardInterrupt:
        _stop_workers()
        print("varyflow: interrupted", file=sys.stderr)
        return 130
    except _expected_errors() as e:
        if debug:
            raise
        print(f"varyflow: error: {one_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # anything else is still one line unless --debug
        if debug:
            raise
        print(f"varyflow: error: {type(e).__name__}: {one_line(e)} (rerun with --debug for a traceback)", file=sys.stderr)
        return 1
    return int(rc or 0)


@contextlib.contextmanager
def _terminate_like_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler, `kill`) ends a command the way Ctrl-C does, so the render workers close their
    browsers and TeX runs instead of leaving them behind. The previous handler is back afterwards."""
    import signal
    import threading

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _stop_workers() -> None:
    """Stop the render pool, if this command started one, without waiting for its shards."""
    runners = sys.modules.get("flows.runners")
    if runners is not None:
        runners.shutdown_local_pool(kill=True)


class _NoTracebackFormatter(logging.Formatter):
    """Wraps a console formatter so log records print without their traceback; other handlers (the
    Prefect API's, which feeds the UI) still see the full record."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = saved


def hide_console_tracebacks() -> None:
    """Keep the terminal to one line per error (tracebacks only with --debug). Call after Prefect has
    configured its loggers, i.e. after importing it."""
    loggers = [logging.getLogger()] + [logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict)
                                       if n.startswith("prefect")]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler.formatter, _NoTracebackFormatter):
                handler.setFormatter(_NoTracebackFormatter(handler.formatter))


def one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    # Run the imported module, not __main__, so `flows.cli.CliError` raised by subcommands is the class caught here.
    from flows.cli import main as _main

    sys.exit(_main())
