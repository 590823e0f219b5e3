"""Evaluation protocols: the base, one module per protocol, and the registry (``radtex-bench list protocols``)."""

from ...registry import load_entry_points
from .base import PROTOCOLS, Cell, CellTask, EncoderUnderTest, Protocol, register_protocol

# Built-ins register themselves on import.
from . import finetune, generation, knn, linear, retrieval, zeroshot  # noqa: E402,F401  isort: skip

ENTRY_POINT_GROUP = "radtex_bench.protocols"


def load_protocol_entry_points() -> None:
    """Protocols declared by installed packages (plug-ins listed in a recipe register on import)."""
    load_entry_points(ENTRY_POINT_GROUP, PROTOCOLS)


__all__ = [
    "PROTOCOLS",
    "Cell",
    "CellTask",
    "EncoderUnderTest",
    "Protocol",
    "register_protocol",
    "load_protocol_entry_points",
]
