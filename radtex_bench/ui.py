"""Console output: rich progress bars (silenced by ``--quiet``) and the ``run.log`` file."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

log = logging.getLogger("radtex_bench")
console = Console(stderr=True, highlight=False)
if not console.is_terminal and "COLUMNS" not in os.environ:
    # A log file (a cluster job's stderr) is not 80 columns wide: a finished progress bar keeps its
    # loss, images/s and times instead of being cut to "13… 0:0…".
    console.width = 160
_state = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = quiet


def is_quiet() -> bool:
    return _state["quiet"]


class _NullProgress:
    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass

    def advance(self, *args: Any, **kwargs: Any) -> None:
        pass

    def remove_task(self, *args: Any, **kwargs: Any) -> None:
        pass


@contextlib.contextmanager
def progress(enabled: bool = True) -> Iterator[Progress | _NullProgress]:
    """A rich progress display with steps, throughput and ETA; a no-op when quiet or disabled."""
    if not enabled or is_quiet():
        yield _NullProgress()
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with bar:
        yield bar


def info(message: str) -> None:
    from rich.text import Text

    log.info(Text.from_markup(message).plain)
    if not is_quiet():
        console.print(message, soft_wrap=True)  # one line per message, as in run.log: greppable


class _ConsoleWarnings(logging.Handler):
    """Each warning as a ``warning: ...`` line on the terminal (``run.log`` keeps them all, with times).

    Silent under ``--quiet``, and in every process of a torchrun job but the first (each logs the same
    warnings to its own log). Errors, and warnings logged with ``extra={"terminal": False}`` (the
    interrupt line), are not printed here: the CLI prints that one line itself.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        #: Warnings kept back while the up-front checks run (None: printed as they come).
        self.held: list[str] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno != logging.WARNING or not getattr(record, "terminal", True):
            return
        if is_quiet() or os.environ.get("RANK", "0") != "0":
            return
        if self.held is not None:
            self.held.append(record.getMessage())
        else:
            self.print(record.getMessage())

    @staticmethod
    def print(message: str) -> None:
        from rich.text import Text

        console.print(Text(f"warning: {message}", style="yellow"), soft_wrap=True)


def _console_warnings() -> _ConsoleWarnings | None:
    return next((h for h in log.handlers if isinstance(h, _ConsoleWarnings)), None)


def show_warnings(hold: bool = False) -> None:
    """Print the ``radtex_bench`` logger's warnings on the terminal (the CLI's choice; a notebook sees
    them through its own logging set-up, or in ``run.log``). Calling it again adds nothing.

    ``hold``: keep them back until :func:`release_warnings` (the work starts, or the command ends):
    a mistake found by the up-front checks is then the one ``error:`` line on the terminal, as the CLI
    promises, and the warnings before it stay in run.log (:func:`discard_warnings`).
    """
    handler = _console_warnings()
    if handler is None:
        handler = _ConsoleWarnings()
        log.addHandler(handler)
    if hold and handler.held is None:
        handler.held = []


def release_warnings() -> None:
    """Print the warnings kept back by ``show_warnings(hold=True)``, and print later ones as they come."""
    handler = _console_warnings()
    if handler is not None and handler.held is not None:
        held, handler.held = handler.held, None
        for message in held:
            handler.print(message)


def discard_warnings() -> None:
    """Drop the warnings kept back (the command stops on an error; run.log has them)."""
    handler = _console_warnings()
    if handler is not None:
        handler.held = None


def attach_log_file(path: Path) -> logging.Handler:
    """Log everything from the ``radtex_bench`` logger to ``path`` (the run's ``run.log``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    log.removeHandler(handler)
    handler.close()


def log_run_end(exc: BaseException) -> None:
    """Record in ``run.log`` why a run (or merge) stopped on ``exc``, before :func:`detach_log_file`.

    A user error, an out-of-memory error or a full disk is the ``error: ...`` line the CLI prints (an
    unplaced out-of-memory error adds its traceback: it tells the stage); an interrupt is the ``interrupted ...``
    line; any other exception is ``internal error: <type>: <message>`` with its traceback. Only the logger
    writes it (the terminal line comes from the CLI, so nothing is printed twice).
    """
    from .errors import Interrupted, UserError, error_line, interrupted_line, is_out_of_memory, resource_line

    if isinstance(exc, UserError):
        log.error(error_line(exc))
    elif isinstance(exc, (Interrupted, KeyboardInterrupt)):
        log.warning(interrupted_line(exc), extra={"terminal": False})  # the CLI prints this line itself
    elif (line := resource_line(exc)) is not None:
        log.error(
            line, exc_info=exc if is_out_of_memory(exc) else None
        )  # memory: the traceback tells the stage
    elif isinstance(exc, Exception):
        log.error(f"internal error: {type(exc).__name__}: {exc}", exc_info=exc)
