"""Every parameter's valid range is in the docs, exactly as the code defines it (issue 11, item 6).

What is checked:

* every registered objective's parameters (``objective_parameters``: its ``__init__`` and the bases'
  it passes ``**kwargs`` on to) against the tables of docs/objectives.md;
* every recipe key (the dataclasses of ``config.py``, the keys every dataset block accepts, each
  dataset kind's own ``Options``, each protocol's ``Config``, each tracker's ``Config``) against the
  tables of docs/recipes.md, and docs/datasets.md for the dataset keys.

The expected text is ``radtex_bench.schema.range_text`` of the field or type hint (``≥ 1``, ``(0, 1]``,
``3–4096``, ``true/false``, ``linear | mlp``, ``text or null``, ...), so a range changed in the code
without the docs fails here, and so does a docs row changed without the code.

Matching rule:

* A *section* is a Markdown heading and the text up to the next heading of any level (fenced code is
  skipped, so ``# comment`` lines in examples are not headings). A key's sections are those whose
  heading contains its marker: the objective's name in backticks (`` `moco` ``), or the key path of a
  recipe block (`` `data` ``, `` `objectives.N.train` ``, `` `evaluation.finetune` ``,
  `` `logging.wandb` ``; ``Top level`` for the recipe itself; each dataset kind's name for its own keys).
* Only tables with a ``range`` column count. A row documents every name written in backticks in its
  first cell (`` `projection_dim`, `hidden_dim` ``): names that share a row share its range; names
  with different ranges need rows of their own.
* Scoping: a name is looked up in the section's own text; if no row there names it, in the enclosing
  section's, and so on up (a table of the view augmentation in "Image-only methods from lightly" serves
  ``#### `moco` ``). The innermost section with a row decides; every such row must match, so a stale
  second row fails too. At least one row must exist.
* A cell matches when, after removing backticks, unescaping ``\\|`` and collapsing whitespace, it
  equals the expected text or starts with it followed by ``,``, ``;``, ``:`` or `` (``. What follows is
  free words: rules between parameters ("≥ 1, divides `width`") and details the type cannot say.
* A dataset kind's key that it inherits unchanged from ``DatasetOptions`` is checked once, in the
  table of keys every block accepts (in recipes.md and in datasets.md).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest

from radtex_bench import config
from radtex_bench.config import objective_parameters
from radtex_bench.data.kinds import DATASETS, DatasetOptions, DatasetSpec
from radtex_bench.evaluation.protocols import PROTOCOLS
from radtex_bench.objectives import OBJECTIVES
from radtex_bench.schema import Range, option, range_text, ranges_of
from radtex_bench.tracking import TRACKERS

DOCS = Path(__file__).resolve().parents[1] / "docs"
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


@dataclass
class Section:
    heading: str
    level: int
    parent: Section | None
    rows: list[tuple[list[str], str]] = field(default_factory=list)  # (names, raw range cell)


def parse_sections(path: Path) -> list[Section]:
    """Sections of a Markdown file, each with the rows of its own range tables."""
    sections: list[Section] = []
    stack: list[Section] = []
    current = Section(path.name, 0, None)
    sections.append(current)
    lines = path.read_text(encoding="utf-8").splitlines()
    in_code = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_code = not in_code
            i += 1
            continue
        match = None if in_code else _HEADING.match(line)
        if match:
            level = len(match.group(1))
            while stack and stack[-1].level >= level:
                stack.pop()
            current = Section(match.group(2).strip(), level, stack[-1] if stack else sections[0])
            stack.append(current)
            sections.append(current)
            i += 1
            continue
        if (
            not in_code
            and line.startswith("|")
            and i + 1 < len(lines)
            and re.match(r"^\|[\s:|-]+$", lines[i + 1])
        ):
            header = [c.strip().lower() for c in _cells(line)]
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                if "range" in header:
                    cells = _cells(lines[i])
                    names = re.findall(r"`([^`]+)`", cells[0]) if cells else []
                    column = header.index("range")
                    if names and column < len(cells):
                        current.rows.append((names, cells[column]))
                i += 1
            continue
        i += 1
    return sections


def _cells(line: str) -> list[str]:
    return [c.strip() for c in _CELL_SPLIT.split(line.strip().strip("|"))]


def normalise(cell: str) -> str:
    return " ".join(cell.replace("\\|", "|").replace("`", "").split())


def matches(cell: str, expected: str) -> bool:
    text, want = normalise(cell), normalise(expected)
    if not text.startswith(want):
        return False
    rest = text[len(want) :]
    return rest == "" or rest[0] in ",;:" or rest.startswith(" (")


def documented_ranges(sections: list[Section], marker: str, name: str) -> list[str] | None:
    """The range cells that document ``name`` for the sections headed by ``marker`` (see the module
    docstring's scoping rule); ``None`` when no heading carries the marker."""
    headed = [s for s in sections if marker in s.heading]
    if not headed:
        return None
    found: list[str] = []
    for section in headed:
        node: Section | None = section
        while node is not None:
            cells = [cell for names, cell in node.rows if name in names]
            if cells:
                found.extend(cells)
                break
            node = node.parent
    return found


def problems(doc: str, marker: str, expected: dict[str, str], what: str) -> list[str]:
    """One line per key of ``expected`` (name -> range text) that ``doc`` does not document so."""
    sections = parse_sections(DOCS / doc)
    out = []
    for name, want in expected.items():
        cells = documented_ranges(sections, marker, name)
        if cells is None:
            out.append(f"{doc}: no heading contains {marker!r} (needed for {what})")
            break
        if not cells:
            out.append(f"{doc} [{marker}]: {what} `{name}` has no row in a table with a range column")
        for cell in cells:
            if not matches(cell, want):
                out.append(
                    f"{doc} [{marker}]: {what} `{name}`: range cell {normalise(cell)!r}, code says {want!r}"
                )
    return out


def fields_of(cls: type) -> dict[str, str]:
    """Recipe keys of a config dataclass and their range text (internal fields are not keys)."""
    return {
        f.name: range_text(cls, f.name)
        for f in dataclasses.fields(cls)
        if f.init and not f.metadata.get("internal")
    }


def objective_ranges(name: str) -> dict[str, str]:
    accepted, hints, _ = objective_parameters(OBJECTIVES.get(name))
    missing = [p.name for p in accepted if hints.get(p.name) is None]
    assert not missing, f"objective {name}: parameters without a type hint cannot be range-checked: {missing}"
    return {p.name: range_text(hints[p.name]) for p in accepted}


# The recipe's own blocks: (dataclass, docs file, heading marker). Protocols, trackers and dataset kinds
# come from their registries below.
RECIPE_BLOCKS = [
    (config.Recipe, "recipes.md", "Top level"),
    (config.DataConfig, "recipes.md", "`data`"),
    (DatasetOptions, "recipes.md", "`data.pretrain`"),
    (DatasetOptions, "datasets.md", "Keys every dataset block accepts"),
    (config.EncoderConfig, "recipes.md", "`encoder`"),
    (config.ObjectiveSpec, "recipes.md", "`objectives`"),
    (config.TrainConfig, "recipes.md", "`objectives.N.train`"),
    (config.EvaluationConfig, "recipes.md", "`evaluation`"),
    (config.LoggingConfig, "recipes.md", "`logging`"),
]


def test_every_objective_parameter_has_its_range_in_objectives_md():
    assert len(OBJECTIVES.names()) >= 18
    out = []
    for name in OBJECTIVES.names():
        out += problems("objectives.md", f"`{name}`", objective_ranges(name), f"objective {name}: param")
    assert not out, "docs/objectives.md disagrees with the code:\n" + "\n".join(out)


def test_every_recipe_key_has_its_range_in_the_docs():
    out = []
    for cls, doc, marker in RECIPE_BLOCKS:
        out += problems(doc, marker, fields_of(cls), f"{cls.__name__} key")
    for name in PROTOCOLS.names():
        keys = fields_of(PROTOCOLS.get(name).Config)
        if keys:
            out += problems("recipes.md", f"`evaluation.{name}`", keys, f"evaluation.{name} key")
    for name in TRACKERS.names():
        keys = fields_of(TRACKERS.get(name).Config)
        if keys:
            out += problems("recipes.md", f"`logging.{name}`", keys, f"logging.{name} key")
    common = fields_of(DatasetOptions)
    for kind in DATASETS.names():
        own = {k: v for k, v in fields_of(DATASETS.get(kind).Options).items() if common.get(k) != v}
        if not own:
            continue
        # A kind's own keys live in docs/recipes.md (synthetic) or docs/datasets.md (the others).
        found = {
            doc: problems(doc, f"`{kind}`", own, f"dataset kind {kind}: key")
            for doc in ("recipes.md", "datasets.md")
        }
        headed = [doc for doc, lines in found.items() if not any("no heading contains" in x for x in lines)]
        assert headed, f"dataset kind {kind}: no section of recipes.md or datasets.md is headed `{kind}`"
        for doc in headed:
            out += found[doc]
    assert not out, "the docs disagree with the code:\n" + "\n".join(out)


def _nested_dataclasses(cls: type, seen: set[type]) -> set[type]:
    """Every dataclass a recipe key of ``cls`` holds (through ``X | None``, ``Annotated`` and lists)."""

    def walk(tp: Any) -> None:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            walk(typing.get_args(tp)[0])
        elif origin in (typing.Union, types.UnionType, tuple, list):
            for arg in typing.get_args(tp):
                walk(arg)
        elif dataclasses.is_dataclass(tp) and tp not in seen:
            seen.add(tp)
            _nested_dataclasses(tp, seen)

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("internal"):
            walk(hints[f.name])
    return seen


def test_the_checked_blocks_cover_the_whole_recipe():
    """A new nested block in the recipe must be added to RECIPE_BLOCKS (and documented)."""
    covered = {cls for cls, _, _ in RECIPE_BLOCKS} | {DatasetSpec}  # DatasetSpec = DatasetOptions + a kind's
    reached = _nested_dataclasses(config.Recipe, {config.Recipe})
    assert reached - covered == set()


def test_a_range_changed_in_the_code_alone_is_caught():
    """The check itself: a different expected range (as if the code had changed) is reported."""
    assert problems("objectives.md", "`captioning`", {"width": "≥ 8"}, "p") == []
    changed = problems("objectives.md", "`captioning`", {"width": "≥ 16"}, "p")
    assert changed == ["objectives.md [`captioning`]: p `width`: range cell '≥ 8', code says '≥ 16'"]
    # shared augmentation table, reached from `#### moco` through its enclosing section
    assert problems("objectives.md", "`moco`", {"rotation": "[0, 180]"}, "p") == []
    assert problems("objectives.md", "`moco`", {"rotation": "[0, 90]"}, "p")
    # a prefix is not a match: `≥ 1 or null` is not `≥ 1`, `≥ 10` is not `≥ 1`
    assert not matches("≥ 1 or `null`", "≥ 1")
    assert not matches("≥ 10", "≥ 1")
    assert matches("≥ 1, divides `width`", "≥ 1")
    assert matches("`linear` \\| `mlp`", "linear | mlp")
    assert problems("recipes.md", "`objectives.N.train`", {"nonexistent": "≥ 1"}, "k")


@dataclass(frozen=True)
class _Example:
    count: int = option(1, ge=1)
    size: int = option(64, ge=16, le=1024)
    big: int = option(0, ge=0, le=2**31 - 1)
    rate: float = option(0.1, gt=0.0, le=10.0)
    share: float = option(0.0, ge=0.0, lt=1.0)
    steps: int | None = option(None, ge=1)
    fractions: tuple[float, ...] = option((0.5, 0.5), ge=0.0)
    flag: bool = option(False)
    mode: Literal["a", "b"] = option("a")
    path: str | None = option(None)
    free: float = option(0.0)


@pytest.mark.parametrize(
    "key, text",
    [
        ("count", "≥ 1"),
        ("size", "16–1024"),
        ("big", "0–2,147,483,647"),
        ("rate", "(0, 10]"),
        ("share", "[0, 1)"),
        ("steps", "≥ 1 or null"),
        ("fractions", "list of numbers ≥ 0"),
        ("flag", "true/false"),
        ("mode", "a | b"),
        ("path", "text or null"),
        ("free", "any"),
    ],
)
def test_range_text_of_a_field(key, text):
    assert range_text(_Example, key) == text


def test_range_text_of_a_type_hint():
    assert range_text(Annotated[int, Range(gt=0, lt=10)]) == "1–9"  # integers: the next one inside
    assert range_text(Annotated[float, Range(gt=0.0)]) == "> 0"
    assert range_text(Annotated[float, Range(ge=-100.0, le=100.0)]) == "[-100, 100]"
    assert range_text(Annotated[tuple[float, float], Range(gt=0.0, le=1.0)]) == "pair of numbers in (0, 1]"
    assert range_text(Annotated[int, Range(ge=1)] | None) == "≥ 1 or null"
    assert range_text(Literal["linear", "mlp"]) == "linear | mlp"
    assert range_text(dict[str, Any]) == "mapping"
    assert Range(gt=0.0, le=1.0).describe() == "(0, 1]"


# ---------------------------------------------------------------------------------------------------
# The ranges the docs show are the ones validation enforces: a value just outside each bound is refused
# before any work with an error naming the key path.


def _bounds(hint: Any, meta: dict | None = None) -> Range:
    """A field's ``option`` bounds, or a hint's ``Range`` metadata (through ``X | None``)."""
    bounds = {k: (meta or {}).get(k) for k in ("ge", "gt", "le", "lt")}
    for r in ranges_of(hint):
        bounds.update({k: v for k, v in dataclasses.asdict(r).items() if v is not None})
    return Range(**bounds)


def _is_list(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _is_list(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(hint))
    return origin in (tuple, list)


def _outside(hint: Any, bounds: Range) -> list[Any]:
    """Values just outside each bound (as a 2-list where the key holds a list)."""
    values = []
    if bounds.ge is not None:
        values.append(bounds.ge - 1)
    if bounds.gt is not None:
        values.append(bounds.gt)
    if bounds.le is not None:
        values.append(bounds.le + 1)
    if bounds.lt is not None:
        values.append(bounds.lt)
    return [[v, v] if _is_list(hint) else v for v in values]


def _objective_cases():
    for name in OBJECTIVES.names():
        accepted, hints, _ = objective_parameters(OBJECTIVES.get(name))
        for p in accepted:
            for value in _outside(hints[p.name], _bounds(hints[p.name])):
                yield pytest.param(name, p.name, value, id=f"{name}.{p.name}={value}")


@pytest.mark.parametrize("objective, key, value", list(_objective_cases()))
def test_an_objective_parameter_outside_its_range_is_refused(objective, key, value):
    from radtex_bench.config import recipe_from_dict
    from radtex_bench.errors import ConfigError

    params = {"path": "w.pt"} if objective == "checkpoint" else {}
    raw = {"name": "r", "objectives": [{"name": objective, "params": {**params, key: value}}]}
    with pytest.raises(ConfigError) as caught:
        recipe_from_dict(raw)
    assert caught.value.where.startswith(f"objectives.0.params.{key}"), str(caught.value)


def _recipe_key_cases():
    blocks: list[tuple[type, str, dict]] = [
        (config.Recipe, "", {}),
        (config.DataConfig, "data", {}),
        (config.EncoderConfig, "encoder", {}),
        (config.TrainConfig, "objectives.0.train", {}),
        (config.EvaluationConfig, "evaluation", {}),
    ]
    for kind in DATASETS.names():
        blocks.append((DATASETS.get(kind).Options, "data.pretrain", {"kind": kind, "root": "/nonexistent"}))
    for name in PROTOCOLS.names():
        blocks.append((PROTOCOLS.get(name).Config, f"evaluation.{name}", {}))
    for name in TRACKERS.names():
        blocks.append((TRACKERS.get(name).Config, f"logging.{name}", {}))
    seen = set()
    for cls, path, block in blocks:
        hints = typing.get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal") or not f.init:
                continue
            for value in _outside(hints[f.name], _bounds(hints[f.name], dict(f.metadata))):
                key = f"{path}.{f.name}" if path else f.name
                if (key, str(value), block.get("kind")) in seen:
                    continue
                seen.add((key, str(value), block.get("kind")))
                yield pytest.param(key, value, block, id=f"{block.get('kind', '')}:{key}={value}")


@pytest.mark.parametrize("key, value, block", list(_recipe_key_cases()))
def test_a_recipe_key_outside_its_range_is_refused(key, value, block):
    from radtex_bench.config import recipe_from_dict
    from radtex_bench.errors import ConfigError

    raw = {"name": "r", "objectives": [{"name": "random"}]}
    if block:
        raw["data"] = {"pretrain": dict(block)}
    with pytest.raises(ConfigError) as caught:
        recipe_from_dict(raw, overrides=[f"{key}={value}"])
    assert caught.value.where.startswith(key), str(caught.value)


def test_out_of_range_values_exit_2_before_any_work(tmp_path, capsys):
    """End to end: statistics written in 0-255 units, and a parameter `random` does not have."""
    import yaml

    from radtex_bench.cli import main

    cases = {
        "objectives.0.params.normalization.mean.0": {
            "name": "checkpoint",
            "params": {"path": "w.pt", "normalization": {"mean": [123.675], "std": [58.395]}},
        },
        "objectives.0.params.seed": {"name": "random", "params": {"seed": 3}},
    }
    for where, objective in cases.items():
        recipe = tmp_path / "r.yaml"
        recipe.write_text(yaml.safe_dump({"name": "r", "objectives": [objective]}))
        out = tmp_path / "out"
        assert main(["--quiet", "run", str(recipe), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and where in err[0], err
        assert not out.exists()
