"""Dataset kinds: the base, one module per kind, and the registry (``radtex-bench list datasets``).

Importing this package registers the built-in kinds. A plug-in kind subclasses
:class:`~radtex_bench.data.kinds.base.DatasetKind` and registers with :func:`register_dataset`.
"""

from .base import DATASETS, DatasetKind, DatasetOptions, ReportSection, register_dataset
from .spec import DatasetSpec

# Built-ins register themselves on import.
from . import chexpert, manifest, mimic, nih, openi, synthetic  # noqa: E402,F401  isort: skip

__all__ = ["DATASETS", "DatasetKind", "DatasetOptions", "DatasetSpec", "ReportSection", "register_dataset"]
