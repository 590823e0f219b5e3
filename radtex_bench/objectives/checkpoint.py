"""``checkpoint``: a published encoder from a local file, scored as it is; no pretraining run.

The recipe's ``encoder.name`` says which architecture the file holds (``resnet50``, ``vit_base_patch16``,
``timm:<model>``). The file (``.pt``, ``.pth``, ``.ckpt``, ``.bin``: ``torch.load(weights_only=True)`` only;
or ``.safetensors``) may be a bare state dict or a whole training state, whose ``state_dict``, ``model``
or ``module`` entry is unwrapped; other nested entries read as dotted keys (``teacher.backbone.…``).

Keys are mapped to the encoder's own (torchvision's or timm's) in two steps: ``prefix`` is stripped from
every key that has it (keys without it are ignored: most published checkpoints wrap the backbone, e.g.
``module.``, ``img_encoder_q.model.``, ``visual.``), then ``key_map`` renames a key or a key prefix
(``{old: new}``, matched at a dot; ``new: null`` drops the key). With ``strict: true`` (the default) every
remaining key must be one of the encoder's and every encoder key must be found, except the classifier
(kept from the fresh encoder when the file has none or another number of classes) and BatchNorm's
``num_batches_tracked`` counters. A first convolution trained on one grey channel (torchxrayvision) is
repeated over the three identical channels and divided by 3, which gives the same output.

Every check that needs only the file (it exists, loads, its keys and shapes match) runs in
:meth:`CheckpointInit.preflight`, before any work; an error lists a few unmatched and missing keys and
suggests the prefix that matches most keys. ``normalization`` is what the encoder was trained with
(``imagenet``, ``xrv`` or ``{mean, std}``) and goes into the weights' metadata, so every protocol feeds
the encoder what it expects. The loaded encoder is written to ``pretrain/<label>/encoder.safetensors``
and evaluated like every other.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.normalization import IMAGENET, Normalization
from ..encoders import build_encoder
from ..errors import ParamError, UserError
from .base import Objective, SetupContext, register_objective

log = logging.getLogger("radtex_bench")

SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
#: Entries of a whole training state that hold the weights, unwrapped in this order.
CONTAINERS = ("state_dict", "model", "module")
#: How many unmatched / missing keys an error lists.
SHOWN = 4


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint file as ``{dotted key: tensor}`` (see the module docstring)."""
    if not path.is_file():
        raise UserError(f"objective checkpoint: params.path {path} does not exist; check the path")
    if path.suffix not in SUFFIXES:
        raise UserError(
            f"objective checkpoint: params.path {path} is not a checkpoint file; use one of {', '.join(SUFFIXES)}"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: Any = load_file(str(path))
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(
            f"objective checkpoint: cannot load {path} with torch.load(weights_only=True) "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); re-save only the "
            "weights, e.g. torch.save(ckpt['state_dict'], 'weights.pt')"
        ) from None
    while isinstance(raw, Mapping) and not any(torch.is_tensor(v) for v in raw.values()):
        inner = next((raw[k] for k in CONTAINERS if isinstance(raw.get(k), Mapping)), None)
        if inner is None:
            break
        raw = inner
    state = _flatten(raw)
    if not state:
        raise UserError(f"objective checkpoint: {path} holds no tensors; is it a model checkpoint?")
    return state


def _flatten(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if torch.is_tensor(obj):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    return out


def map_keys(
    state: Mapping[str, torch.Tensor], prefix: str, key_map: Mapping[str, str | None]
) -> dict[str, torch.Tensor]:
    """Strip ``prefix`` (keys without it are dropped), then rename by ``key_map`` (longest match first)."""
    out: dict[str, torch.Tensor] = {}
    renames = sorted(key_map.items(), key=lambda kv: -len(kv[0]))
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix) :]
        for old, new in renames:
            if key == old or key.startswith(old + "."):
                key = None if new is None or new == "" else new + key[len(old) :]
                break
        if key is not None:
            out[key] = value
    return out


def adapt_first_conv(value: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """A one-channel convolution weight ``[O, 1, k, k]`` for our three identical grey channels, else None."""
    if value.ndim == 4 and len(shape) == 4 and value.shape[1] == 1 and shape[1] == 3:
        if value.shape[0] == shape[0] and value.shape[2:] == shape[2:]:
            return value.repeat(1, 3, 1, 1) / 3
    return None


def suggest_prefix(keys: list[str], expected: set[str]) -> tuple[str, int] | None:
    """The prefix whose removal turns most checkpoint keys into encoder keys, with that count."""
    votes: Counter[str] = Counter()
    for key in keys:
        for i, char in enumerate(key):
            if char == "." and key[i + 1 :] in expected:
                votes[key[: i + 1]] += 1
        if key in expected:
            votes[""] += 1
    return votes.most_common(1)[0] if votes else None


class KeyReport:
    """How a mapped checkpoint fits an encoder's state dict."""

    def __init__(
        self, state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], heads: tuple[str, ...]
    ):
        def optional(key: str) -> bool:
            return key.endswith("num_batches_tracked") or bool(heads and key.startswith(heads))

        self.unmatched = sorted(k for k in state if k not in own)
        self.missing = sorted(k for k in own if k not in state and not optional(k))
        self.mismatched = sorted(
            f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
            for k in state
            if k in own
            and state[k].shape != own[k].shape
            and not optional(k)
            and adapt_first_conv(state[k], own[k].shape) is None
        )
        self.matched = sum(1 for k in state if k in own)


def _examples(keys: list[str]) -> str:
    more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


@register_objective("checkpoint")
class CheckpointInit(Objective):
    """A published encoder from a local checkpoint file, scored as it is (no pretraining run)."""

    needs: set[str] = set()
    pretrains = False

    def __init__(
        self,
        encoder: nn.Module,
        path: str,
        prefix: str = "",
        key_map: dict[str, str | None] | None = None,
        strict: bool = True,
        normalization: Normalization = IMAGENET,
    ):
        super().__init__(encoder)
        self.path = Path(path).expanduser()
        self.prefix = prefix
        self.key_map = dict(key_map or {})
        self.strict = strict
        self.weights_normalization = Normalization.parse(normalization, "params.normalization")

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        if not str(params["path"]).strip():
            raise ParamError("path", "is empty; give the checkpoint file (.pt, .pth, .ckpt, .safetensors)")
        for old in params.get("key_map") or {}:
            if not old:
                raise ParamError("key_map", "has an empty key; write the key (or key prefix) to rename")

    @classmethod
    def preflight(cls, encoder_name: str, params: dict[str, Any]) -> None:
        """The file exists, loads and its keys fit ``encoder_name``: checked before any work."""
        path = Path(params["path"]).expanduser()
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            encoder = build_encoder(encoder_name)
        fit_checkpoint(
            path, encoder, params.get("prefix", ""), params.get("key_map") or {}, params.get("strict", True)
        )

    def setup(self, context: SetupContext) -> None:
        state = fit_checkpoint(self.path, self.encoder, self.prefix, self.key_map, self.strict)
        self.encoder.load_export_state_dict(state, strict=self.strict)
        self.encoder.normalization = self.weights_normalization

    def forward(self, batch):  # pragma: no cover - never trained
        raise RuntimeError("the checkpoint objective is not trained")


def fit_checkpoint(
    path: Path, encoder: Any, prefix: str, key_map: Mapping[str, str | None], strict: bool
) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under ``encoder``'s own keys, ready for ``load_export_state_dict``.

    Raises a :class:`UserError` listing a few unmatched / missing / mis-shaped keys and the prefix that
    would match most keys. ``strict: false`` tolerates unmatched and missing keys (missing ones keep their
    initial values) but not an empty match or another shape.
    """
    raw = read_checkpoint(path)
    state = map_keys(raw, prefix, key_map)
    own = encoder.model.state_dict()
    report = KeyReport(state, own, encoder.classifier_prefixes())
    where = f"objective checkpoint: {path}"
    name = getattr(encoder, "name", type(encoder).__name__)
    if report.mismatched:
        raise UserError(
            f"{where}: {len(report.mismatched)} tensor(s) have another shape than {name}'s: "
            f"{_examples(report.mismatched)}; check encoder.name (the architecture the file holds)"
        )
    if report.matched == 0 or (strict and (report.unmatched or report.missing)):
        problems = []
        if report.unmatched:
            problems.append(f"{len(report.unmatched)} unmatched key(s): {_examples(report.unmatched)}")
        if report.missing:
            problems.append(f"{len(report.missing)} missing key(s): {_examples(report.missing)}")
        best = suggest_prefix(list(raw), set(own))
        if best and best[0] != prefix:
            hint = f"set params.prefix: '{best[0]}' (it matches {best[1]} of {len(own)} encoder keys)"
        else:
            starts = sorted({k.split(".")[0] + "." for k in raw})[:SHOWN]
            hint = (
                f"the file's keys start with {', '.join(starts)}; set params.prefix to the backbone's, rename "
                "the rest with params.key_map (new: null drops a key), use strict: false, or check encoder.name"
            )
        raise UserError(
            f"{where}: keys after removing prefix '{prefix}' do not match {name} ({encoder.format} keys): "
            f"{'; '.join(problems) or 'no key of the file matches'}; {hint}"
        )
    if report.unmatched or report.missing:
        log.warning(
            "%s: strict: false, %d checkpoint key(s) ignored, %d encoder key(s) keep their initial values",
            where,
            len(report.unmatched),
            len(report.missing),
        )
    out = {}
    for key, value in state.items():
        if key in own:
            adapted = adapt_first_conv(value, own[key].shape) if value.shape != own[key].shape else None
            out[key] = value if adapted is None else adapted
    # BatchNorm counters are not weights; checkpoints often lack them.
    out.update({k: v for k, v in own.items() if k not in out and k.endswith("num_batches_tracked")})
    return out
