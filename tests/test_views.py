"""Your own CSV works with the defaults (issue 11, kind 9): the view filter (`views: [PA, AP]` by default)
applies where views exist; a dataset without view information is not filtered; `?` / `unknown` / `n/a`
/ blank are "no view", not view names; images without a view in a dataset that has views are left
out with a warning naming the count (or kept when `views` lists `unknown`)."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from conftest import write_manifest, write_tiny_recipe

from radtex_bench.cli import main
from radtex_bench.data.columns import normalise_views
from radtex_bench.data.kinds import DatasetSpec
from radtex_bench.data.loading import load_table
from radtex_bench.data.summary import summarise
from radtex_bench.errors import DataError


def _manifest(tmp_path, views: list[str] | None):
    """40 images (2 per patient); ``views``: the view column, cycled over the rows; ``None``: no column."""
    root = tmp_path / "ds"
    path = write_manifest(root, n=40)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if views is None:
        frame = frame.drop(columns="view")
    else:
        frame["view"] = [views[i % len(views)] for i in range(len(frame))]
    frame.to_csv(path, index=False)
    return root


def _load(root, **options):
    return load_table(
        DatasetSpec.from_plain({"kind": "manifest", "root": str(root), **options}, "data.pretrain")
    )


def test_no_view_spellings_are_no_view():
    values = ["?", "unknown", "Unknown", "n/a", "N/A", "NA", "", " ", "-", None, float("nan"), "none"]
    assert normalise_views(values).tolist() == [""] * len(values)
    assert normalise_views(["pa", " ap ", "LL", "rl", "Lateral", "AP AXIAL"]).tolist() == [
        "PA",
        "AP",
        "LATERAL",
        "LATERAL",
        "LATERAL",
        "AP AXIAL",
    ]


def test_frontal_views_with_a_position_word_are_their_base_view():
    values = ["AP SUPINE", "AP Supine", "SUPINE AP", "AP ERECT", "PA ERECT", "AP UPRIGHT", "AP PORTABLE"]
    values += ["PORTABLE AP", "ap semi-erect", "Lateral upright"]
    assert normalise_views(values).tolist() == ["AP"] * 4 + ["PA"] + ["AP"] * 4 + ["LATERAL"]
    # Another projection or beam keeps its own name (MIMIC-CXR's ViewPosition values).
    others = ["AP AXIAL", "AP LLD", "AP RLD", "PA LLD", "PA RLD", "LAO", "RAO", "LPO", "SWIMMERS", "PORTABLE"]
    assert normalise_views(others).tolist() == others
    assert normalise_views(["XTABLE LATERAL", "LL"]).tolist() == ["LATERAL", "LATERAL"]


def test_every_view_value_the_filter_leaves_out_is_counted_in_one_warning(tmp_path, caplog):
    """The user's case: `AP Supine` images vanished without a word; now they are AP, and what the filter
    still leaves out is named with its count."""
    # 8 rows each: AP Supine, PA, AP LLD, LATERAL, "".
    root = _manifest(tmp_path, ["AP Supine", "PA", "AP LLD", "LATERAL", ""])
    with caplog.at_level(logging.WARNING, logger="radtex_bench"):
        table = _load(root)
    assert len(table) == 16 and sorted(set(table.frame["view"])) == ["AP", "PA"]
    warnings = [r.getMessage() for r in caplog.records if "view filter" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].endswith(
        "24 of 40 images left out by the view filter `data.pretrain.views: ['PA', 'AP']` (AP LLD 8, LATERAL "
        "8, no view 8); add their views to `data.pretrain.views` to keep them (`unknown` for those without "
        "a view), or set `data.pretrain.views: null` to keep every image"
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="radtex_bench"):
        assert len(_load(root, views=["PA", "AP", "AP LLD", "LATERAL"])) == 32
    assert "(no view 8); add their views" in caplog.text and "unknown" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="radtex_bench"):
        assert len(_load(root, views=["AP", "PA", "AP LLD", "LL", "unknown"])) == 40
    assert "view filter" not in caplog.text  # nothing left out, nothing said


@pytest.mark.parametrize("views", [None, [""], ["?", "unknown", "n/a", ""]])
def test_a_dataset_without_view_information_is_not_filtered(tmp_path, caplog, views):
    root = _manifest(tmp_path, views)
    with caplog.at_level(logging.INFO, logger="radtex_bench"):
        table = _load(root)  # the default views: [PA, AP]
    assert len(table) == 40
    assert "carries no view information" in caplog.text and "['PA', 'AP']" in caplog.text
    assert summarise("manifest", str(root))["views"] == {}


def test_images_without_a_view_among_views_are_left_out_with_a_count(tmp_path, caplog):
    # Cycling 5 values over 40 rows: 8 each of PA, AP, LATERAL, "?", "unknown".
    root = _manifest(tmp_path, ["PA", "AP", "LATERAL", "?", "unknown"])
    with caplog.at_level(logging.INFO, logger="radtex_bench"):
        table = _load(root)
    assert len(table) == 16 and set(table.frame["view"]) == {"PA", "AP"}
    assert (
        "24 of 40 images left out by the view filter `data.pretrain.views: ['PA', 'AP']` (no view 16, "
        "LATERAL 8); add their views to `data.pretrain.views` to keep them (`unknown` for those without a "
        "view), or set `data.pretrain.views: null` to keep every image"
    ) in caplog.text
    assert summarise("manifest", str(root))["views"] == {"AP": 8, "LATERAL": 8, "PA": 8}  # "?" is no view
    kept = _load(root, views=["PA", "AP", "unknown"])
    assert len(kept) == 32 and set(kept.frame["view"]) == {"PA", "AP", ""}
    assert len(_load(root, views=None)) == 40
    assert len(_load(root, views=["LL"])) == 8  # the recipe's spelling is normalised too
    with pytest.raises(
        DataError, match=r"no image has a view in \['AP AXIAL'\] \(found \['AP', 'LATERAL', 'PA'\]\)"
    ):
        _load(root, views=["AP AXIAL"])


def test_a_csv_without_a_view_column_runs_with_the_default_recipe(tmp_path):
    """Case of kind 9: a CSV of your own without a `view` column, every default left as it is."""
    root = _manifest(tmp_path, None)
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml",
        root,
        [{"name": "random"}],
        {"budgets": [6], "seeds": 1, "bootstrap": 0},
        name="noview",
    )
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out)]) == 0
    log = (out / "run.log").read_text()
    assert "carries no view information, so `data.pretrain.views: ['PA', 'AP']` does not filter it" in log
    assert (out / "results.csv").is_file()
