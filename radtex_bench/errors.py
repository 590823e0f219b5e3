"""Errors that are part of the interface.

A :class:`UserError` is a mistake the user can fix (bad recipe, missing data, unknown name, weights
not available offline). The CLI prints it as one ``error: ...`` line and exits with code 2, without a
traceback. Anything else is an internal error (exit code 1).
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable


class UserError(Exception):
    """A problem the user can fix. The message must say what is wrong, where, and how to fix it."""

    exit_code = 2


class ConfigError(UserError):
    """A recipe that does not validate. ``where`` is the key path (``objectives.0.train.epochs``)."""

    def __init__(self, where: str, message: str, source: str | None = None):
        self.where = where
        self.message = message
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{where}: {message}" if where else f"{prefix}{message}")


class ParamError(UserError):
    """An objective's ``params`` that do not fit together, raised by ``Objective.check_params``.

    ``key`` is the parameter's name; validation reports it as ``objectives.<i>.params.<key>``.
    """

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"params.{key}: {message}")


class DataError(UserError):
    """Missing, unreadable or inconsistent data."""


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a close match exists, else a list of the known names."""
    options = sorted(set(options))
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    if len(options) <= 20:
        return "; known: " + ", ".join(options)
    return ""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocator giving up: ``torch.OutOfMemoryError`` (CUDA), the CPU (or MPS)
    allocator's ``RuntimeError`` ("DefaultCPUAllocator: can't allocate memory"), or ``MemoryError``.
    Callers turn it into a :class:`UserError` naming the stage and the sizes to lower."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def disk_full(exc: BaseException) -> OSError | None:
    """The "no space left" / "quota exceeded" ``OSError`` behind ``exc``, or ``None``.

    Writers wrap it: ``torch.save`` raises ``RuntimeError: [enforce fail at inline_container.cc]`` with
    the ``OSError`` only as its context, so the cause and context chain is searched.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return current
        current = current.__cause__ or current.__context__
    return None


def disk_full_line(exc: BaseException) -> str:
    """The ``error: ...`` line of a full disk that no write turned into a :class:`UserError`."""
    cause = disk_full(exc)
    where = f" writing {cause.filename}" if cause is not None and cause.filename else ""
    return (
        f"error: no space left on the device{where}; free some (each pretraining keeps last.ckpt and "
        "encoder.safetensors) and rerun with --resume"
    )


def resource_line(exc: BaseException) -> str | None:
    """The ``error: ...`` line of running out of memory or disk that no stage turned into a
    :class:`UserError` (the user fixes it with smaller settings or more space: exit code 2), or ``None``
    for any other exception. The CLI prints it and ``run.log`` records it."""
    if is_out_of_memory(exc):
        return out_of_memory_line(exc)
    if disk_full(exc):
        return disk_full_line(exc)
    return None


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; work stopped at a safe point after writing a checkpoint."""


def error_line(exc: UserError) -> str:
    """The one ``error: ...`` line of a user error, as the CLI prints it and ``run.log`` records it."""
    return "error: " + " ".join(str(exc).split("\n"))


def out_of_memory_line(exc: BaseException) -> str:
    """The ``error: ...`` line of an out-of-memory error that no stage turned into a :class:`UserError`."""
    return (
        f"error: out of memory ({type(exc).__name__}); lower the batch size or the model and image sizes, or "
        "use a device with more memory"
    )


def interrupted_line(exc: BaseException) -> str:
    """The line of a run stopped by Ctrl-C / SIGTERM (``exc``: :class:`Interrupted` or KeyboardInterrupt)."""
    reason = f" by {exc}" if isinstance(exc, Interrupted) else ""
    return f"interrupted{reason}: finished work and the last checkpoint are kept; rerun with --resume"
