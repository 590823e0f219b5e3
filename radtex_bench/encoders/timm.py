"""timm backbones: ViTs, ConvNeXt, EfficientNet, and any timm model as ``timm:<model_name>``.

Short names: ``vit_tiny_patch16``, ``vit_small_patch16``, ``vit_base_patch16`` (timm's
``vit_*_patch16_224``), ``convnext_tiny`` and ``efficientnet_b0``. ``timm:<model_name>`` (optionally
with a pretrained tag, ``timm:vit_small_patch16_224.dino``) names any other model; it is checked when the
recipe is validated.

Grid (``forward_features``): a CNN's last feature map ``[B, C, H/32, W/32]``; a ViT's patch tokens
after the final norm, reshaped to ``[B, C, H/p, W/p]`` (class and register tokens dropped). Pooled
feature (``forward``): what timm's own classifier reads (``forward_head(pre_logits=True)``): the class
token for ViTs (``global_pool='token'``, the ViT standard; a model built with average pooling uses the
mean of its patch tokens), global average pooling for EfficientNet, global average pooling followed by the
head's LayerNorm for ConvNeXt. Parameters only the pooling uses (ConvNeXt's head norm, a ViT's
``fc_norm`` / attention pool) are frozen with the classifier, so every objective trains the same trunk.

ViTs are built with ``dynamic_img_size=True``: any ``encoder.image_size`` that is a multiple of the patch
size works (position embeddings are resampled from timm's 224 px grid), and the state dict keeps timm's
shapes, so ``encoder.safetensors`` loads into ``timm.create_model(<model>)`` with ``strict=True``.
Models are always built with ``pretrained=False``; ImageNet weights (the ``imagenet`` objective) come only
from the local Hugging Face cache (or torch's cache for timm's older URL weights), never downloaded.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.normalization import Normalization
from ..errors import UserError
from .base import ENCODERS, Encoder, EncoderSpec, PretrainedWeights, hub_model_message, register_encoder

#: Parameters that only a timm model's pooling uses (frozen with the classifier).
_POOL_ONLY = ("fc_norm.", "attn_pool.")


def create_model(model: str, **options: Any) -> nn.Module:
    """``timm.create_model(model, pretrained=False)``: never downloads."""
    import timm

    return timm.create_model(model, pretrained=False, **options)


class TimmEncoder(Encoder):
    """A timm model exposing its pre-logits feature and the spatial grid."""

    format = "timm"

    def build_model(self) -> nn.Module:
        return create_model(self.spec.model, **dict(self.spec.options))

    def pooled_dim(self) -> int:
        return int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self._grid(self.model.forward_features(images), images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(images), pre_logits=True)  # [B, D]

    def _grid(self, x: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            if str(getattr(self.model, "output_fmt", "NCHW")).endswith("NHWC"):
                x = x.permute(0, 3, 1, 2)  # [B, C, h, w]
            return x
        # Tokens [B, prefix + h*w, C]: drop the class / register tokens, lay the patches on their grid.
        patches = x[:, int(getattr(self.model, "num_prefix_tokens", 0)) :]  # [B, h*w, C]
        embed = self.model.patch_embed
        if hasattr(embed, "dynamic_feat_size") and not getattr(embed, "strict_img_size", False):
            h, w = embed.dynamic_feat_size(tuple(images.shape[-2:]))
        else:
            h, w = embed.grid_size
        if h * w != patches.shape[1]:
            raise RuntimeError(
                f"{self.name}: {patches.shape[1]} patch tokens do not fill a {h}x{w} grid; this model's "
                "tokens cannot be laid out as a spatial grid"
            )
        return patches.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)  # [B, C, h, w]

    def classifier_prefixes(self) -> tuple[str, ...]:
        names = self.model.pretrained_cfg.get("classifier") or ()
        names = (names,) if isinstance(names, str) else tuple(names)
        return tuple(n + "." for n in names)

    def frozen_prefixes(self) -> tuple[str, ...]:
        heads = self.classifier_prefixes()
        # A classifier nested in a pooling head (ConvNeXt's head.fc under head.norm): the whole head.
        parents = tuple(h.split(".")[0] + "." for h in heads if h.count(".") > 1)
        return heads + parents + _POOL_ONLY

    @classmethod
    def pretrained_weights(cls, spec: EncoderSpec, weights: str) -> PretrainedWeights:
        from timm.models import get_pretrained_cfg, list_pretrained
        from timm.models._registry import split_model_name_tag

        arch, tag = split_model_name_tag(spec.model)
        tag = tag if weights == "DEFAULT" else weights
        tags = [n.split(".", 1)[1] for n in list_pretrained(f"{arch}.*")]
        if not tags:
            return super().pretrained_weights(spec, weights)
        if tag and tag not in tags:
            raise UserError(
                f"imagenet weights '{tag}' do not exist for {spec.name} (timm {arch}); choose one of "
                f"{', '.join(['DEFAULT', *tags])}"
            )
        cfg = get_pretrained_cfg(f"{arch}.{tag}" if tag else arch)
        model = f"{arch}.{cfg.tag}" if cfg.tag else arch
        if cfg.hf_hub_id:
            return _hub_weights(cfg, model)
        if cfg.url:
            url = cfg.url
            path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
            hint = f"download {path.name} ({url}) and place it in {path.parent} (the $TORCH_HOME/hub/checkpoints folder)"
            return PretrainedWeights(path, url, hint, model)
        return super().pretrained_weights(spec, weights)

    def load_pretrained(self, weights: PretrainedWeights) -> None:
        import timm

        # The file override makes timm read that local file and nothing else (no hub, no URL).
        overlay = {"file": str(weights.path), "source": None, "custom_load": False}
        try:
            pretrained = timm.create_model(
                weights.model,
                pretrained=True,
                pretrained_cfg_overlay=overlay,
                num_classes=self.model.num_classes,
                **dict(self.spec.options),
            )
        except Exception as exc:
            raise UserError(
                f"cannot load {weights.path} into timm {weights.model}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}; fetch the file again"
            ) from None
        self.load_export_state_dict(pretrained.state_dict())
        cfg = pretrained.pretrained_cfg
        self.normalization = Normalization(tuple(cfg["mean"]), tuple(cfg["std"]))


def hub_cache() -> Path:
    """The Hugging Face hub cache timm reads from (``HF_HUB_CACHE``, default ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _hub_weights(cfg: Any, model: str) -> PretrainedWeights:
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = cfg.hf_hub_id.partition("@")
    files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    cache = hub_cache()
    for name in files:
        found = try_to_load_from_cache(repo, name, cache_dir=cache, revision=revision or None)
        if isinstance(found, str):
            return PretrainedWeights(Path(found), f"hf-hub:{repo}", "", model)
    folder = cache / f"models--{repo.replace('/', '--')}"
    hint = (
        f"the Hugging Face cache {cache} has no {files[0]} of {repo} ({folder} is missing or incomplete); "
        f"on a machine with internet run `hf download {repo} {files[0]}` and copy {folder.name} into {cache} "
        "(HF_HUB_CACHE or HF_HOME choose the folder)"
    )
    return PretrainedWeights(folder / files[0], f"hf-hub:{repo}", hint, model)


def _stride(model: nn.Module) -> tuple[int, str]:
    """What ``encoder.image_size`` must be a multiple of: the patch size and the last stage's reduction
    (a ViT's are equal; a hierarchical model such as Swin reduces further)."""
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    patch = (patch, patch) if isinstance(patch, int) else tuple(patch or (1,))
    info = getattr(model, "feature_info", None)
    reduction = int(info[-1]["reduction"]) if info else 1
    stride = math.lcm(*patch, reduction)
    if stride == 1:
        return 32, "the total stride"
    return stride, "the patch size" if stride == math.lcm(*patch) else "the total stride"


def resolve_timm(model: str) -> EncoderSpec:
    """The spec of ``timm:<model>``: checks the name and reads the patch size / stride and feature size
    from a model built on the meta device (no memory, no weights)."""
    import timm

    if model.startswith(("hf-hub:", "hf_hub:")):
        raise UserError(hub_model_message(f"timm:{model}"))
    if model.startswith("local-dir:"):
        raise UserError(
            f"timm:{model}: timm's local-dir: models are not supported; use timm:<model_name> and load the "
            "folder's weights file with the checkpoint objective's params.path (docs/encoders.md)"
        )
    if not model or not timm.is_model(model):
        arch = model.split(".")[0]
        close = difflib.get_close_matches(arch, timm.list_models(), n=1, cutoff=0.6)
        family = re.match(r"[a-z]*", arch).group(0)  # "resnet" of "resnet10tt": list that family
        raise UserError(
            f"unknown timm model '{model}'"
            + (f"; did you mean 'timm:{close[0]}'?" if close else "")
            + f" (the names: python -c \"import timm; print(timm.list_models('{family}*'))\")"
        )
    built, options = None, ()
    for device in ("meta", "cpu"):  # a few models cannot be built on the meta device
        for opts in ((("dynamic_img_size", True),), ()):
            try:
                with torch.device(device):
                    built = create_model(model, **dict(opts))
                options = opts
                break
            except TypeError:  # not a ViT: no dynamic_img_size
                continue
            except RuntimeError as exc:
                if device == "cpu":
                    raise UserError(f"timm:{model} cannot be built: {str(exc).splitlines()[0]}") from None
                break
        if built is not None:
            break
    if built is None:
        raise UserError(f"timm:{model} cannot be built with timm {timm.__version__}")
    stride, reason = _stride(built)
    out_dim = int(getattr(built, "head_hidden_size", None) or built.num_features)
    size = (getattr(built, "pretrained_cfg", None) or {}).get("input_size")
    return EncoderSpec(
        f"timm:{model}",
        TimmEncoder,
        model=model,
        out_dim=out_dim,
        stride=stride,
        stride_reason=reason,
        options=options,
        description="timm model",
        native_size=int(size[-1]) if size else 0,
    )


ENCODERS.register_prefix(
    "timm",
    resolve_timm,
    "any timm model by name (timm:convnext_small, timm:vit_small_patch16_224.dino); features: its own width",
)

_VIT = (("dynamic_img_size", True),)
for _name, _model, _dim, _stride_px, _options, _what in [
    ("vit_tiny_patch16", "vit_tiny_patch16_224", 192, 16, _VIT, "timm ViT-Ti/16; pooled: class token"),
    ("vit_small_patch16", "vit_small_patch16_224", 384, 16, _VIT, "timm ViT-S/16; pooled: class token"),
    ("vit_base_patch16", "vit_base_patch16_224", 768, 16, _VIT, "timm ViT-B/16; pooled: class token"),
    ("convnext_tiny", "convnext_tiny", 768, 32, (), "timm ConvNeXt-T; pooled: mean + head norm"),
    ("efficientnet_b0", "efficientnet_b0", 1280, 32, (), "timm EfficientNet-B0; pooled: spatial mean"),
]:
    register_encoder(
        EncoderSpec(
            _name,
            TimmEncoder,
            model=_model,
            out_dim=_dim,
            stride=_stride_px,
            stride_reason="the patch size" if _options else "the total stride",
            options=_options,
            description=_what,
        )
    )
