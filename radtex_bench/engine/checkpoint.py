"""``last.ckpt``: everything needed to continue a run exactly, written atomically.

Holds the objective (encoder + heads), optimiser, scheduler, grad scaler, the RNG state of every
source (Python, NumPy, torch CPU and CUDA) and the data position (epoch, batch). Loaded with
``torch.load(weights_only=True)``: a checkpoint cannot run code.
"""

from __future__ import annotations

import pickle
import random
import sys
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..io import atomic_path

FORMAT_VERSION = 1


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x: Any) -> Any:
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    # Through a file object: given a path, torch.save names the archive's root folder after the (random)
    # temporary file, and equal checkpoints would differ in their bytes.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(_canonical({"format": FORMAT_VERSION, **payload}), f)


def _canonical(x: Any) -> Any:
    """``x`` with fresh containers and interned strings, so that equal state pickles to equal bytes.

    Pickle writes an object it has already written as a back-reference: its bytes depend on which equal
    strings and containers are the *same object*. State read back from a checkpoint (a resumed run's
    optimiser groups) shares them differently from state built in the process, so a resumed run's
    ``last.ckpt`` would differ from an uninterrupted one's. Tensors keep their identity (tied weights
    stay one tensor); a state dict keeps its type and ``_metadata`` (module versions read on load).
    """
    if isinstance(x, dict):
        out = type(x)() if type(x) in (dict, OrderedDict) else {}
        for key, value in x.items():
            out[_canonical(key)] = _canonical(value)
        metadata = getattr(x, "_metadata", None)
        if metadata is not None:
            out._metadata = _canonical(metadata)
        return out
    if isinstance(x, list):
        return [_canonical(v) for v in x]
    if isinstance(x, tuple) and not hasattr(x, "_fields"):
        return tuple(_canonical(v) for v in x)
    if type(x) is str:
        return sys.intern(x)
    return x


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it will refuse anyway
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"cannot load checkpoint {path}: it holds objects other than tensors and plain data, and was refused "
            "(checkpoints are loaded with weights_only=True so they cannot run code); delete it to restart that "
            "objective"
        ) from None
    except Exception as exc:
        raise UserError(
            f"cannot load checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}; it is "
            "corrupt or incomplete; delete it to restart that objective"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise UserError(
            f"{path} is not a radtex-bench checkpoint of format {FORMAT_VERSION}; delete it to restart"
        )
    return state
