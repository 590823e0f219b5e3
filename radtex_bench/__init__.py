"""radtex-bench: which pretraining objective gives the best radiograph encoder when labels are few?

Public API::

    from radtex_bench import Objective, register_objective   # write your own objective
    from radtex_bench import Protocol, register_protocol     # ... or your own evaluation protocol
    from radtex_bench import load_recipe, run                # run a comparison from Python
    from radtex_bench import merge                           # combine one-objective-per-job folders
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Objective": ("radtex_bench.objectives.base", "Objective"),
    "register_objective": ("radtex_bench.objectives.base", "register_objective"),
    "SetupContext": ("radtex_bench.objectives.base", "SetupContext"),
    "OBJECTIVES": ("radtex_bench.objectives", "OBJECTIVES"),
    "register_dataset": ("radtex_bench.data.kinds", "register_dataset"),
    "DatasetKind": ("radtex_bench.data.kinds", "DatasetKind"),
    "register_encoder": ("radtex_bench.encoders", "register_encoder"),
    "Encoder": ("radtex_bench.encoders", "Encoder"),
    "load_encoder": ("radtex_bench.encoders", "load_encoder"),
    "load_recipe": ("radtex_bench.config", "load_recipe"),
    "recipe_from_dict": ("radtex_bench.config", "recipe_from_dict"),
    "Recipe": ("radtex_bench.config", "Recipe"),
    "run": ("radtex_bench.api", "run"),
    "merge": ("radtex_bench.api", "merge"),
    "summary_table": ("radtex_bench.api", "summary_table"),
    "UserError": ("radtex_bench.errors", "UserError"),
    "ParamError": ("radtex_bench.errors", "ParamError"),
    "Range": ("radtex_bench.schema", "Range"),
    "Protocol": ("radtex_bench.evaluation.protocols", "Protocol"),
    "register_protocol": ("radtex_bench.evaluation.protocols", "register_protocol"),
    "Cell": ("radtex_bench.evaluation.protocols", "Cell"),
    "CellTask": ("radtex_bench.evaluation.protocols", "CellTask"),
    "XrayAugment": ("radtex_bench.data.augment", "XrayAugment"),
}


def __getattr__(name: str) -> Any:
    # Lazy: `import radtex_bench` stays cheap (torch is imported only when needed).
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'radtex_bench' has no attribute {name!r}")


__all__ = sorted(_LAZY)
