"""The recipe: YAML in, typed and frozen :class:`Recipe` out, with every default filled in.

``load_recipe`` is the single entry point (the VirTex ``from_config`` idea): it reads YAML with
``yaml.safe_load`` only, applies ``--set`` overrides, imports the recipe's plug-ins, then validates the
whole tree before any work starts. ``dump_recipe`` writes the resolved form saved as ``DIR/recipe.yaml``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from .data.kinds import DatasetSpec
from .data.labels import RADTEX_9
from .errors import ConfigError, ParamError, UserError, did_you_mean
from .evaluation.prompts import PromptSet, check_prompts
from .schema import build, coerce, option, to_plain, type_hints

Precision = Literal["auto", "fp32", "bf16", "fp16"]


def _default_pretrain() -> DatasetSpec:
    return DatasetSpec.from_plain({"kind": "synthetic"}, "data.pretrain")


@dataclass(frozen=True)
class DataConfig:
    pretrain: DatasetSpec = option(default_factory=_default_pretrain, help="dataset to pretrain on")
    evaluate: DatasetSpec | None = option(
        None, help="dataset to evaluate on; null = held-out patients of the pretraining dataset"
    )
    pathologies: tuple[str, ...] = option(RADTEX_9, help="pathologies to pretrain (supervised) and score")
    uncertain: Literal["zeros", "ones", "ignore"] = option("zeros", help="what uncertain (-1) labels become")
    on_bad_image: Literal["error", "skip"] = option("error", help="missing or unreadable image: stop or skip")
    overlap: Literal["exclude", "error"] = option(
        "exclude",
        help="evaluation validation/test images (or their patients) found in pretraining: leave them out "
        "of pretraining, or stop",
    )
    workers: int | None = option(None, ge=0, le=256, help="data-loading processes; null = automatic")

    def __post_init__(self) -> None:
        if not self.pathologies:
            raise ConfigError("pathologies", "needs at least one pathology")
        dupes = sorted({p for p in self.pathologies if self.pathologies.count(p) > 1})
        if dupes:
            raise ConfigError("pathologies", f"listed twice: {', '.join(dupes)}")


@dataclass(frozen=True)
class EncoderConfig:
    name: str = option("resnet18", help="encoder registry key (radtex-bench list encoders)")
    image_size: int = option(224, ge=32, le=4096, help="square input size in pixels")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = option(10, ge=0, le=100_000, help="passes over the pretraining split")
    max_steps: int | None = option(None, ge=1, help="stop after this many optimiser steps (overrides epochs)")
    batch_size: int = option(
        64, ge=2, help="images per step (per process under torchrun); BatchNorm needs at least 2"
    )
    lr: float = option(5e-4, gt=0.0, le=10.0, help="peak learning rate of the heads (AdamW)")
    encoder_lr: float | None = option(
        None, gt=0.0, le=10.0, help="peak learning rate of the encoder; null = lr"
    )
    weight_decay: float = option(0.01, ge=0.0, le=10.0, help="AdamW weight decay (not on biases and norms)")
    warmup_steps: int = option(0, ge=0, help="linear warmup steps, then cosine decay to zero")
    grad_accum: int = option(1, ge=1, le=4096, help="micro-batches accumulated per optimiser step")
    grad_clip: float | None = option(1.0, gt=0.0, help="clip the gradient norm; null = no clipping")
    checkpoint_every: int = option(200, ge=0, help="write last.ckpt every N steps (0 = only at the end)")
    log_every: int = option(10, ge=1, help="write metrics.jsonl every N steps")
    precision: Precision = option("auto", help="auto = bf16 autocast on CUDA, fp32 on CPU")
    compile: bool = option(False, help="torch.compile the objective")


@dataclass(frozen=True)
class ObjectiveSpec:
    name: str = option(help="objective registry key (radtex-bench list objectives)")
    label: str | None = option(None, help="display name, unique in the recipe (defaults to name)")
    params: dict[str, Any] = option(default_factory=dict, help="keyword arguments of the objective")
    train: TrainConfig = option(default_factory=TrainConfig, help="training settings")

    def __post_init__(self) -> None:
        if self.label is None:
            object.__setattr__(self, "label", self.name)
        if not self.label or any(c in self.label for c in "/\\\0") or self.label in (".", ".."):
            raise ConfigError(
                "label", f"{self.label!r} cannot be used as a folder name; use letters, digits, -_."
            )


def _protocol_registry():
    from .evaluation.protocols import PROTOCOLS, load_protocol_entry_points

    load_protocol_entry_points()
    return PROTOCOLS


@dataclass(frozen=True)
class EvaluationConfig:
    """``evaluation:``. Besides the keys below, each protocol has its own section ``evaluation.<name>``
    (e.g. ``finetune: {epochs: 30}``, ``knn: {k: 20}``), validated by the protocol's ``Config``."""

    budgets: tuple[int | str, ...] = option(
        (10, 50, 100, 250),
        ge=2,
        help='labelled training images per cell (>= 2: a positive and a negative), or "f%" of the '
        "labelled training pool (0 < f <= 100)",
    )
    seeds: int = option(3, ge=1, le=1000, help="subsets (and fine-tuning initialisations) per budget")
    protocols: tuple[str, ...] = option(
        ("linear",), help="evaluation protocols (radtex-bench list protocols)"
    )
    pathologies: tuple[str, ...] | None = option(None, help="pathologies scored; null = data.pathologies")
    bootstrap: int = option(
        1000, ge=0, le=100_000, help="bootstrap resamples of test patients (0 = no intervals)"
    )
    confidence: float = option(0.95, gt=0.0, le=0.999)
    batch_size: int = option(128, ge=1, help="images per batch when extracting features")
    prompts: dict[str, PromptSet] | None = option(
        None,
        help="zero-shot prompts {Pathology: {positive: [...], negative: [...]}}; entries replace the "
        "defaults of the pathologies they name; null = the defaults (CheXpert's 14 labels)",
    )
    subsets_from: str | None = option(
        None,
        help="reuse fixed labelled subsets: an earlier run's subsets.json or a CSV seed,budget,image_id",
    )
    resolved_budgets: dict[str, int] | None = option(
        None,
        help="written by the run: the image count each percentage budget resolved to (checked when given)",
    )
    #: Every registered protocol's settings, by name (filled with defaults; not a recipe key itself).
    sections: dict[str, Any] = option(default_factory=dict, internal=True)

    def __post_init__(self) -> None:
        from .evaluation.budgets import check_budget_entries

        budgets, resolved = check_budget_entries(self.budgets, self.resolved_budgets)
        object.__setattr__(self, "budgets", budgets)
        object.__setattr__(self, "resolved_budgets", resolved)
        if not self.protocols:
            raise ConfigError("protocols", "needs at least one protocol")
        if len(set(self.protocols)) != len(self.protocols):
            raise ConfigError("protocols", "each protocol may appear once")

    @classmethod
    def from_plain(cls, value: Any, where: str = "evaluation") -> EvaluationConfig:
        if isinstance(value, EvaluationConfig):
            return value
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(where, f"expected a mapping, got {value!r}")
        registry = _protocol_registry()
        general = {k: v for k, v in value.items() if k not in registry}
        keys = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")]
        for key in general:
            if key not in keys:  # a general key, or the section of a protocol (built in or a plug-in's)
                hint = did_you_mean(str(key), keys + registry.names())
                if "did you mean" not in hint:
                    hint += "; a plug-in protocol's section needs the plug-in's module in `plugins:`"
                raise ConfigError(f"{where}.{key}", f"unknown key{hint}")
        config = build(cls, general, where)
        for i, name in enumerate(config.protocols):
            registry.get(name, where=f"{where}.protocols.{i}")
        sections = {
            name: config._share(build(registry.get(name).Config, value.get(name), f"{where}.{name}"))
            for name in registry.names()
        }
        object.__setattr__(config, "sections", sections)
        return config

    def _share(self, section: Any) -> Any:
        """A section's internal fields named after a general key (``prompts``) receive its value."""
        general = {f.name for f in dataclasses.fields(self)}
        shared = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(section)
            if f.metadata.get("internal") and f.name in general
        }
        return dataclasses.replace(section, **shared) if shared else section

    def to_plain(self) -> dict[str, Any]:
        out = {
            f.name: to_plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "sections"
        }
        for name, section in self.sections.items():  # internal fields are not keys of the section
            fields = dataclasses.fields(section)
            out[name] = {
                f.name: to_plain(getattr(section, f.name)) for f in fields if not f.metadata.get("internal")
            }
        return out

    def section(self, protocol: str) -> Any:
        """The settings of ``protocol`` (``evaluation.<protocol>``)."""
        return self.sections[protocol]


def _tracker_registry():
    from .tracking import TRACKERS, load_tracker_entry_points

    load_tracker_entry_points()
    return TRACKERS


@dataclass(frozen=True)
class LoggingConfig:
    """``logging:``: experiment trackers, each off by default (radtex_bench/tracking/).

    Each key is a tracker (``tensorboard``, ``wandb``, ``mlflow``, plug-ins): ``true`` or a mapping of
    its settings (``{}`` = defaults) switches it on, ``false`` or null leaves it off. recipe.yaml
    records every tracker, ``false`` or its settings with defaults filled in. Trackers never change a
    result, so the section may differ between a run and its ``--resume`` or between merged folders.
    """

    #: The enabled trackers' validated settings, by name (not a recipe key itself).
    trackers: dict[str, Any] = option(default_factory=dict, internal=True)

    @classmethod
    def from_plain(cls, value: Any, where: str = "logging") -> LoggingConfig:
        if isinstance(value, LoggingConfig):
            return value
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(where, f"expected a mapping such as {{tensorboard: true}}, got {value!r}")
        registry = _tracker_registry()
        enabled = {}
        for name, section in value.items():
            if name not in registry:
                raise ConfigError(
                    f"{where}.{name}", f"unknown tracker{did_you_mean(str(name), registry.names())}"
                )
            if section is None or section is False:
                continue
            if section is True:
                section = {}
            if not isinstance(section, Mapping):
                raise ConfigError(
                    f"{where}.{name}", f"expected true, false or a mapping of its settings, got {section!r}"
                )
            enabled[str(name)] = build(registry.get(name).Config, section, f"{where}.{name}")
        return cls(trackers={n: enabled[n] for n in sorted(enabled)})

    def to_plain(self) -> dict[str, Any]:
        names = sorted(set(_tracker_registry().names()) | set(self.trackers))
        return {n: to_plain(self.trackers[n]) if n in self.trackers else False for n in names}


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str = option(help="name of the comparison (used in the default output folder)")
    seed: int = option(0, ge=0, le=2**31 - 1, help="fixes every random choice on the CPU")
    data: DataConfig = option(default_factory=DataConfig)
    encoder: EncoderConfig = option(default_factory=EncoderConfig)
    objectives: tuple[ObjectiveSpec, ...] = option(help="the objectives to compare")
    evaluation: EvaluationConfig = option(default_factory=lambda: EvaluationConfig.from_plain({}))
    logging: LoggingConfig = option(
        default_factory=lambda: LoggingConfig.from_plain({}),
        help="experiment trackers: tensorboard / wandb / mlflow, each an optional extra, off by default",
    )
    plugins: tuple[str, ...] = option(
        (), help="importable modules that register objectives, encoders, dataset kinds, protocols or trackers"
    )

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/\\\0"):
            raise ConfigError("name", "must be a non-empty name without slashes")
        if not self.objectives:
            raise ConfigError("objectives", "needs at least one objective")
        seen: dict[str, int] = {}
        for i, spec in enumerate(self.objectives):
            if spec.label in seen:
                raise ConfigError(
                    f"objectives.{i}.label",
                    f"'{spec.label}' is already used by objectives.{seen[spec.label]}; give each entry a unique label",
                )
            seen[spec.label] = i
        sections = self.evaluation.sections
        uses_prompts = any(
            name in sections and "prompts" in {f.name for f in dataclasses.fields(sections[name])}
            for name in self.evaluation.protocols
        )
        check_prompts(self.evaluation.prompts, self.eval_pathologies, uses_prompts, "evaluation.prompts")

    @property
    def eval_pathologies(self) -> tuple[str, ...]:
        return self.evaluation.pathologies or self.data.pathologies

    def to_plain(self) -> dict[str, Any]:
        return {f.name: to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


# ---------------------------------------------------------------------------------------------------
# Loading


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"recipe not found: {path}; check the path (recipes live in recipes/)") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder; pass the recipe's .yaml file") from None
    except UnicodeDecodeError:
        raise UserError(f"cannot read recipe {path}: it is not UTF-8 text; save the file as UTF-8") from None
    except OSError as exc:
        raise UserError(f"cannot read recipe {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: invalid YAML{where}: {problem}; fix the syntax") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.0.c=value`` -> (["a", "b", "0", "c"], value parsed as YAML)."""
    if "=" not in text:
        raise UserError(f"--set {text}: expected dotted.key=value, e.g. --set evaluation.seeds=5")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"--set {text}: empty key; expected dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        if raw.strip().startswith(("[", "{")):  # meant as a list or mapping: say so, not "got a string"
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise UserError(
                f"--set {text}: the value is not valid YAML ({problem}); write a list as [a, b] and a "
                "mapping as {k: v}, and quote the whole argument for the shell"
            ) from None
        value = raw  # not YAML: take it as a plain string
    return key.split("."), value


def apply_override(raw: dict[str, Any], parts: Sequence[str], value: Any, text: str | None = None) -> None:
    """Write ``value`` at the key ``parts`` of ``raw``; ``text`` (the ``--set`` argument) names errors."""
    label = text or ".".join(parts)
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"--set {label}: {where} is not an index of a list with {len(node)} entries")
            index = int(part)
            if last:
                node[index] = value
            else:
                if node[index] is None:
                    node[index] = {}
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise UserError(f"--set {label}: {'.'.join(parts[:depth])} is not a mapping or list")


def objective_parameters(cls: type) -> tuple[list[inspect.Parameter], dict[str, Any], bool]:
    """An objective's parameters: the keyword arguments of its ``__init__`` and, where that passes
    ``**kwargs`` on, of its bases' (subclass first), with their type hints; and whether it accepts any
    keyword (a ``**kwargs`` that reaches the :class:`Objective` base itself)."""
    from .objectives.base import Objective

    accepted: list[inspect.Parameter] = []
    hints: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is Objective:
            return accepted, hints, True
        values = list(inspect.signature(init).parameters.values())[2:]  # skip self, encoder
        try:
            own_hints = type_hints(init)
        except Exception:
            own_hints = {}
        for p in values:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in hints:
                accepted.append(p)
                hints[p.name] = own_hints.get(p.name)
        if not any(p.kind is p.VAR_KEYWORD for p in values):
            return accepted, hints, False
    return accepted, hints, True


def _hint_from_default(default: Any) -> Any:
    """The type a plug-in's unannotated parameter has by its default, so ``alpha=0.5`` still refuses
    ``alpha: abc``: a bool, float or string default gives its type; an int default ``int | float`` (a
    ``scale=1`` is often a float); ``None`` or any other default, no check."""
    kind = type(default)
    if kind is int:
        return int | float
    return kind if kind in (bool, float, str) else None


def resolve_params(cls: type, params: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate an objective's ``params`` against its ``__init__`` signature (and its bases', where
    ``**kwargs`` passes them on) and fill the defaults."""
    accepted, hints, takes_any = objective_parameters(cls)
    names = {p.name for p in accepted}
    for key in params:
        if key not in names and not takes_any:
            hint = did_you_mean(key, names) if names else "; this objective takes no parameters"
            raise ConfigError(f"{where}.{key}", f"unknown parameter of this objective{hint}")
    out: dict[str, Any] = {}
    for p in accepted:
        if p.name in params:
            value = params[p.name]
            hint = hints.get(p.name) or _hint_from_default(p.default)
            if hint is not None:
                try:
                    value = coerce(value, hint, f"{where}.{p.name}")
                except TypeError:
                    pass  # an annotation our schema does not know: pass the value through
            out[p.name] = list(value) if isinstance(value, tuple) else value
        elif p.default is not inspect.Parameter.empty:
            out[p.name] = p.default
        else:
            raise ConfigError(f"{where}.{p.name}", "required parameter of this objective is missing")
    for key, value in params.items():
        out.setdefault(key, value)
    return out


def resolve(raw: Any, source: str | None = None) -> Recipe:
    """Validate plain recipe data (already overridden) into a :class:`Recipe`."""
    from .objectives import BATCH_KEYS, OBJECTIVES, load_plugins

    try:
        if not isinstance(raw, Mapping):
            raise ConfigError("", "a recipe must be a YAML mapping with at least `name` and `objectives`")
        plugins = raw.get("plugins") or []
        plugins = coerce(plugins, tuple[str, ...], "plugins")
        load_plugins(plugins)
        recipe = build(Recipe, raw)
        objectives = []
        for i, spec in enumerate(recipe.objectives):
            cls = OBJECTIVES.get(spec.name, where=f"objectives.{i}.name")
            unknown = set(cls.needs) - BATCH_KEYS
            if unknown:
                raise ConfigError(
                    f"objectives.{i}.name",
                    f"objective '{spec.name}' declares needs {sorted(unknown)}; allowed: {sorted(BATCH_KEYS)} "
                    "(fix the plug-in's `needs`)",
                )
            params = resolve_params(cls, spec.params, f"objectives.{i}.params")
            try:
                cls.check_params(params)
            except ParamError as exc:
                raise ConfigError(f"objectives.{i}.params.{exc.key}", exc.message) from None
            objectives.append(dataclasses.replace(spec, params=params))
        recipe = dataclasses.replace(recipe, objectives=tuple(objectives))
        from .encoders import ENCODERS, check_image_size

        ENCODERS.get(recipe.encoder.name, where="encoder.name")
        check_image_size(recipe.encoder.name, recipe.encoder.image_size, "encoder.image_size")
        return recipe
    except ConfigError as exc:
        if source and not exc.source:
            raise ConfigError(exc.where, exc.message, source) from None
        raise
    except UserError as exc:
        if source and not str(exc).startswith(source):
            raise UserError(f"{source}: {exc}") from None
        raise


def exclude_objectives(raw: dict[str, Any], labels: Sequence[str], source: str) -> None:
    """Drop recipe entries by label (or name when unlabelled): ``--exclude imagenet``."""
    if not labels:
        return
    entries = raw.get("objectives")
    if not isinstance(entries, list):
        return
    known = [str(e.get("label") or e.get("name")) for e in entries if isinstance(e, dict)]
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise UserError(
            f"--exclude {unknown[0]}: no objective with that label in {source}"
            f"{did_you_mean(unknown[0], known)}"
        )
    raw["objectives"] = [
        e for e in entries if not (isinstance(e, dict) and str(e.get("label") or e.get("name")) in labels)
    ]


def check_only(recipe: Recipe, only: Sequence[str]) -> tuple[str, ...]:
    """``--only`` labels, checked against the recipe and put in its order (duplicates dropped).

    Unlike ``--exclude``, ``--only`` does not edit the recipe: recipe.yaml keeps every objective, so
    the folder knows the comparison it is part of (``radtex-bench merge`` rebuilds it).
    """
    labels = [spec.label for spec in recipe.objectives]
    for label in only:
        if label not in labels:
            raise UserError(
                f"--only {label}: no objective with that label in the recipe{did_you_mean(label, labels)}"
            )
    return tuple(x for x in labels if x in only)


def _resolve_overridden(raw: dict[str, Any], overrides: Sequence[str], source: str | None) -> Recipe:
    """:func:`resolve` after ``--set``; an error in a key a ``--set`` wrote names that ``--set``, not the
    recipe file (where the user would look for the key in vain)."""
    try:
        return resolve(raw, source=source)
    except ConfigError as exc:
        raise naming_override(exc, overrides) from None


def naming_override(exc: ConfigError, overrides: Sequence[str]) -> ConfigError:
    """``exc`` re-addressed to the ``--set`` that wrote its key (``error: --set K=V: K: ...``), or
    ``exc`` itself when no ``--set`` did. Also for checks after validation (a protocol's preflight)."""
    for text in reversed(overrides):  # the last --set of a key is the one that took effect
        key = text.partition("=")[0].strip()
        # The key itself, a key inside what it wrote, or the unknown section it wrote into.
        if exc.where and (
            exc.where == key or exc.where.startswith(key + ".") or key.startswith(exc.where + ".")
        ):
            return ConfigError(exc.where, exc.message, f"--set {text}")
    return exc


def load_recipe(path: str | Path, overrides: Sequence[str] = (), exclude: Sequence[str] = ()) -> Recipe:
    path = Path(path)
    raw = read_yaml(path)
    if raw is None:
        raise UserError(f"{path}: the recipe is empty; start from recipes/captioning_vs_clip.yaml")
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a recipe must be a YAML mapping with at least `name` and `objectives`")
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(raw, parts, value, text)
    exclude_objectives(raw, exclude, str(path))
    return _resolve_overridden(raw, overrides, str(path))


def recipe_from_dict(
    raw: Mapping[str, Any], overrides: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Recipe:
    """Build a recipe from a dict (notebooks, tests); same validation as a file."""
    import copy

    if not isinstance(raw, Mapping):
        raise UserError(
            f"a recipe must be a mapping (a dict in the recipe format), got {type(raw).__name__}; for YAML "
            "text use yaml.safe_load first, for a file load_recipe"
        )
    raw = copy.deepcopy(dict(raw))
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(raw, parts, value, text)
    exclude_objectives(raw, exclude, "the recipe")
    return _resolve_overridden(raw, overrides, None)


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_plain(), sort_keys=False, default_flow_style=None, width=100)
