"""The encoder plug-in API: :class:`Encoder`, the ``ENCODERS`` registry and the weights file.

An encoder maps images ``[B, 3, H, W]`` (the grey radiograph repeated to three channels, normalised with
the encoder's own :class:`~radtex_bench.data.normalization.Normalization`) to

* ``encoder(images) -> [B, out_dim]``: the pooled feature every frozen-encoder protocol reads;
* ``encoder.forward_features(images) -> [B, C, h, w]``: the spatial grid (captioning's memory).

A family (``torchvision``, ``timm``, or a plug-in) is a subclass of :class:`Encoder`; a name is
registered with an :class:`EncoderSpec` saying which family builds it and how. ``Encoder("resnet18")``
builds whichever family registered the name (as ``pathlib.Path`` picks ``PosixPath``). The wrapped model
sits in ``encoder.model`` and keeps its classifier (frozen, never run), so ``encoder.safetensors`` holds
exactly the family's own state-dict keys and loads into the plain model with ``strict=True``; its
metadata says how (``format``, ``model``) and which normalisation the encoder needs.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..data.normalization import IMAGENET, Normalization
from ..errors import ConfigError, DataError, UserError, did_you_mean
from ..registry import Registry


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one registered encoder name."""

    name: str
    #: The :class:`Encoder` subclass that builds it.
    family: type[Encoder]
    #: The family's own model name: ``torchvision.models.<model>()``, ``timm.create_model(<model>)``.
    model: str = ""
    #: Size of the pooled feature (0: known only once built).
    out_dim: int = 0
    #: ``encoder.image_size`` must be a multiple of this (a CNN's total stride, a ViT's patch size).
    stride: int = 32
    #: What ``stride`` is, for the error message.
    stride_reason: str = "the total stride"
    #: State-dict prefixes of the classifier: kept for compatibility with the plain model, never run.
    classifier: tuple[str, ...] = ()
    #: The normalisation of a freshly built encoder (an objective that loads weights may change it).
    normalization: Normalization = IMAGENET
    #: Family-specific build options (timm: ``dynamic_img_size``).
    options: tuple[tuple[str, Any], ...] = ()
    #: torchvision weights enum of the ``imagenet`` objective (``ResNet18_Weights``); "" = none.
    imagenet_weights: str = ""
    #: One line for ``radtex-bench list encoders``.
    description: str = ""
    #: The image size the model is built for (timm's ``input_size``), always accepted; 0 = none.
    native_size: int = 0


#: Resolves ``<prefix>:<rest>`` names (``timm:convnext_small``) that are not registered one by one.
Resolver = Callable[[str], EncoderSpec]

#: timm's / open_clip's prefixes of a Hugging Face Hub model: building one would download it.
HUB_PREFIXES = ("hf-hub", "hf_hub")


def hub_model_message(name: str) -> str:
    """Why ``name`` (``hf-hub:org/model``, ``timm:hf-hub:...``) is refused, and the documented way instead."""
    repo = name.replace("hf_hub:", "hf-hub:").partition("hf-hub:")[2].partition("@")[0]  # org/model[.tag]
    arch = f"timm:{repo[len('timm/') :]}" if repo.startswith("timm/") else "timm:<model_name>"
    return (
        f"'{name}' is a Hugging Face Hub model and would be downloaded (radtex-bench never downloads); save "
        f"its weights to a local file and use encoder.name: {arch} (the architecture) with the checkpoint "
        "objective's params.path: <that file> (docs/encoders.md)"
    )


class EncoderRegistry(Registry[EncoderSpec]):
    """Registered names, plus ``<prefix>:<model>`` names resolved by a family (``timm:<model_name>``)."""

    def __init__(self) -> None:
        super().__init__("encoder")
        self._resolvers: dict[str, Resolver] = {}
        self._families: dict[str, str] = {}
        self._resolved: dict[str, EncoderSpec] = {}

    def register_prefix(self, prefix: str, resolver: Resolver, description: str = "") -> None:
        """``get("<prefix>:<rest>")`` returns ``resolver(rest)`` (a :class:`UserError` if it is unknown).

        ``description``: one line for ``radtex-bench list encoders`` (what ``<rest>`` may name)."""
        self._resolvers[prefix] = resolver
        self._families[prefix] = description

    def families(self) -> dict[str, str]:
        """The open families, ``{prefix: description}`` sorted by prefix (``{"timm": "any timm model ..."}``)."""
        return dict(sorted(self._families.items()))

    def get(self, name: str, where: str = "") -> EncoderSpec:
        prefix, sep, rest = str(name).partition(":")
        if not sep:
            return super().get(name, where)

        def error(message: str) -> UserError:
            # ConfigError when the recipe key is known, so that a --set that wrote it is named
            return ConfigError(where, message) if where else UserError(message)

        if prefix in HUB_PREFIXES and prefix not in self._resolvers:
            raise error(hub_model_message(name))
        if prefix not in self._resolvers:
            raise error(
                f"unknown encoder family '{prefix}:' in '{name}'"
                f"{did_you_mean(prefix, self._resolvers)}; or use a registered name (radtex-bench list encoders)"
            )
        if name not in self._resolved:
            try:
                spec = self._resolvers[prefix](rest)
            except UserError as exc:
                raise error(str(exc)) from None
            self._resolved[name] = spec
        return self._resolved[name]


ENCODERS = EncoderRegistry()


def register_encoder(spec: EncoderSpec) -> EncoderSpec:
    """Make ``spec.name`` available to recipes (``encoder.name``); returns ``spec``."""
    if not (isinstance(spec.family, type) and issubclass(spec.family, Encoder)):
        raise UserError(f"cannot register encoder '{spec.name}': its family must be a subclass of Encoder")
    return ENCODERS.register(spec.name)(spec)


def check_image_size(name: str, image_size: int, where: str) -> None:
    """``image_size`` must be a multiple of the encoder's stride (a ViT's patch size), and the encoder
    must take it: some models are built for one size only (timm's BEiT, CaiT, PiT, LeViT), which only a
    forward pass shows (:func:`_probe`)."""
    spec = ENCODERS.get(name)
    if image_size % spec.stride and image_size != spec.native_size:
        lower = image_size // spec.stride * spec.stride
        raise ConfigError(
            where,
            f"{image_size} is not a multiple of {spec.stride} ({stride_text(spec)}); use "
            f"{max(lower, spec.stride)} or {lower + spec.stride}",
        )
    failure = _probe(spec, image_size)
    if failure:
        raise ConfigError(where, failure)


@functools.lru_cache(maxsize=64)
def _probe(spec: EncoderSpec, image_size: int) -> str:
    """Why ``spec``'s encoder cannot encode one ``[1, 3, image_size, image_size]`` image ("" when it can).

    On the meta device first (shapes only: no memory, no arithmetic); an error there is confirmed on the
    CPU, since a few operations have no meta implementation. An encoder that cannot even be built here
    is left to fail where it is built, with its own message.
    """
    failure = ""
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                encoder = spec.family(spec.name).eval()  # one image: BatchNorm on running statistics
        except Exception:  # noqa: BLE001 - the build itself is not what is checked here
            return ""
        images = torch.zeros(1, 3, image_size, image_size, device=device)
        try:
            with torch.no_grad():
                grid = encoder.forward_features(images)  # [1, C, h, w]
                pooled = encoder(images)  # [1, D]
            if grid.ndim != 4 or pooled.shape != (1, encoder.out_dim):
                raise RuntimeError(
                    f"its grid is {tuple(grid.shape)} and its pooled feature {tuple(pooled.shape)}, not "
                    f"[1, C, h, w] and [1, {encoder.out_dim}]"
                )
            return ""
        except Exception as exc:  # noqa: BLE001 - any failure: the model does not take this input
            message = str(exc).strip().splitlines()
            failure = f"{type(exc).__name__}: {message[0] if message else ''}".rstrip(": ")
    native = spec.native_size
    if native and native != image_size:
        fix = f"use encoder.image_size: {native} (the size it is built for)"
    elif native:  # fails at its own size: its outputs are not an image grid and a feature
        fix = "it cannot serve as an encoder here; choose another encoder"
    else:
        fix = "use another encoder.image_size or another encoder"
    return f"{spec.name} fails on a {image_size} px image ({failure}); {fix}"


def stride_text(spec: EncoderSpec) -> str:
    return f"{spec.stride_reason} for {spec.name}"


class Encoder(nn.Module):
    """Base class of encoder families (see the module docstring).

    A family implements :meth:`build_model` and :meth:`forward_features`; the default :meth:`forward`
    averages the grid over its positions (override it for another pooling rule). ``normalization`` is
    the input normalisation the weights need; it is written into and read from the weights' metadata.
    Optionally a family implements :meth:`pretrained_weights` / :meth:`load_pretrained` for the
    ``imagenet`` objective.
    """

    #: The ``format`` written into the weights' metadata: whose state-dict keys the file holds.
    format: ClassVar[str] = "custom"

    def __new__(cls, *args: Any, **kwargs: Any) -> Encoder:
        # ``Encoder(name)`` builds the registered family; a family class (or a copy) builds itself.
        if cls is Encoder and (args or "name" in kwargs):
            cls = ENCODERS.get(args[0] if args else kwargs["name"]).family
        return super().__new__(cls)

    def __init__(self, name: str):
        super().__init__()
        self.spec = ENCODERS.get(name)
        self.name = name
        self.normalization: Normalization = self.spec.normalization
        self.model = self.build_model()
        self.out_dim = self.spec.out_dim or self.pooled_dim()
        # Parameters the pooled feature or the grid never reach (the classifier) get no gradient;
        # freezing them keeps DDP from waiting for it.
        frozen = self.frozen_prefixes()
        for key, p in self.model.named_parameters():
            if frozen and key.startswith(frozen):
                p.requires_grad_(False)

    # -- what a family implements ------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        """The family's plain model (randomly initialised; nothing is downloaded)."""
        raise NotImplementedError

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> the spatial grid ``[B, C, H/stride, W/stride]``."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grid = self.forward_features(images)  # [B, C, h, w]
        return grid.mean(dim=(2, 3))  # [B, C]

    def pooled_dim(self) -> int:
        """``out_dim`` when the spec does not give it."""
        raise NotImplementedError(f"encoder '{self.name}': give out_dim in its EncoderSpec")

    def classifier_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes (``"fc."``) of the classifier: frozen, and kept from this model when a
        loaded state lacks it or has another number of classes."""
        return tuple(p.rstrip(".") + "." for p in self.spec.classifier)

    def frozen_prefixes(self) -> tuple[str, ...]:
        """Parameters never trained: the classifier, plus any a family's pooling alone uses."""
        return self.classifier_prefixes()

    @classmethod
    def pretrained_weights(cls, spec: EncoderSpec, weights: str) -> PretrainedWeights:
        """Where the ``imagenet`` objective's weights must be (checked before any work)."""
        raise UserError(f"encoder '{spec.name}' has no ImageNet weights; drop the imagenet objective")

    def load_pretrained(self, weights: PretrainedWeights) -> None:
        """Load the file named by :meth:`pretrained_weights` and set the matching normalisation."""
        raise NotImplementedError

    # -- the weights file --------------------------------------------------------------------------

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The plain model's state dict (the family's own keys), on the CPU: what the file holds."""
        return {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}

    def load_export_state_dict(self, state: Mapping[str, torch.Tensor], strict: bool = True) -> None:
        """Load the family's own keys; the classifier is kept from this model when ``state`` lacks it
        or holds another number of classes (weights exported as a backbone only)."""
        heads = self.classifier_prefixes()
        merged = dict(state)
        if heads:
            for key, value in self.model.state_dict().items():
                if key.startswith(heads) and (key not in merged or merged[key].shape != value.shape):
                    merged[key] = value
        self.model.load_state_dict(merged, strict=strict)

    def metadata(self) -> dict[str, str]:
        """What the weights' metadata says about the encoder: name, key format, model, normalisation."""
        return {
            "encoder": self.name,
            "format": self.format,
            "model": self.spec.model,
            "normalization": self.normalization.to_json(),
        }


@dataclass(frozen=True)
class PretrainedWeights:
    """A family's published weights: where the file must be, and how to get it there offline."""

    path: Path
    #: Names the weights in messages (a URL, a Hugging Face repository).
    source: str
    #: What to do when the file is missing (one sentence).
    hint: str
    #: Family-specific (timm: the model name with its pretrained tag).
    model: str = ""


def build_encoder(name: str) -> Encoder:
    """A randomly initialised encoder of a registered name (or ``timm:<model_name>``)."""
    return Encoder(name)


def save_encoder(encoder: Encoder, path: Path, metadata: dict[str, str] | None = None) -> str:
    """Write ``encoder.safetensors`` atomically and byte-reproducibly; return the SHA-256 of the file.

    Equal weights and metadata give identical bytes (the header is canonicalised by
    :func:`radtex_bench.io.canonical_safetensors`: the writer's metadata key order varies), so the
    feature cache keyed by this hash is hit by a rerun or a resumed run. The metadata holds
    :meth:`Encoder.metadata` (name, ``format``, ``model``, ``normalization``) and ``metadata``.
    """
    from safetensors.torch import save

    from ..io import atomic_path, canonical_safetensors

    meta = {**encoder.metadata(), **(metadata or {})}
    data = canonical_safetensors(save(encoder.export_state_dict(), metadata=meta))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of an ``encoder.safetensors`` (a :class:`DataError` when missing or unreadable)."""
    from safetensors import safe_open

    if not path.exists():
        raise DataError(f"encoder weights not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:
        raise DataError(f"{path} is not a readable safetensors file ({exc}); write it again") from None


def load_encoder(path: Path, name: str | None = None) -> Encoder:
    """The encoder saved in ``path``, with the normalisation its metadata names (ImageNet if none)."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    name = name or meta.get("encoder")
    if not name:
        raise UserError(f"{path}: no encoder name in the metadata; pass the encoder name explicitly")
    if ":" not in name and name not in ENCODERS:
        raise UserError(
            f"{path} holds a '{name}' encoder, which is not registered here (if a plug-in registers it, "
            f"import that module first, as a recipe's plugins: does){did_you_mean(name, ENCODERS.names())}"
        )
    encoder = Encoder(name)
    try:
        encoder.load_export_state_dict(load_file(str(path)))
    except RuntimeError as exc:
        raise UserError(
            f"{path} does not hold {name} weights ({str(exc).splitlines()[0]}); check the encoder name"
        ) from None
    if meta.get("normalization"):
        encoder.normalization = Normalization.from_json(meta["normalization"])
    return encoder


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
