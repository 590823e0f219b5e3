"""Experiment trackers (recipe ``logging:``): TensorBoard, W&B (offline) and MLflow (local store),
read back with each tool's own reader; off by default, rank 0 only, and a missing extra is an exit-2
error before any work."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_CAPTIONING, write_manifest, write_tiny_recipe
from test_engine import Pixels, Regression

from radtex_bench.cli import main
from radtex_bench.config import TrainConfig, dump_recipe, load_recipe, recipe_from_dict
from radtex_bench.data.pipeline import RadiographDataset
from radtex_bench.engine.distributed import DistInfo
from radtex_bench.engine.trainer import Trainer
from radtex_bench.tracking import TrackedRun, Tracker, Trackers, open_trackers

TRAIN = {"max_steps": 2, "batch_size": 8, "log_every": 1, "checkpoint_every": 0}

# MLflow's SQLite store trips a SQLAlchemy deprecation inside MLflow itself; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow")


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def tracked_run(module_tmp):
    """One tiny run with every installed tracker on, all writing inside tmp (nothing reaches a network).

    The recipe file itself carries ``logging: {tensorboard: true, ...}``, as a user would write it.
    """
    base = module_tmp
    write_manifest(base / "ds", n=40)
    logging = {}
    if installed("tensorboard"):
        logging["tensorboard"] = True
    if installed("wandb"):
        logging["wandb"] = {"project": "radtex-test", "mode": "offline", "dir": str(base / "wandb-dir")}
    if installed("mlflow"):
        logging["mlflow"] = {}  # the default: a SQLite store inside the run folder
    objectives = [
        {"name": "captioning", "label": "cap", "params": TINY_CAPTIONING, "train": TRAIN},
        {"name": "random", "label": "rand"},
    ]
    evaluation = {"budgets": [4, 8], "seeds": 1, "bootstrap": 20}
    recipe = write_tiny_recipe(
        base / "tracked.yaml", base / "ds", objectives, evaluation, "tracked", logging=logging
    )
    out = base / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--device", "cpu"]) == 0
    losses = [(m["step"], m["loss"]) for m in map(json.loads, (out / "pretrain/cap/metrics.jsonl").open())]
    return out, losses


def summary_auc(out: Path, objective: str) -> list[tuple[int, float]]:
    import csv

    rows = list(csv.DictReader((out / "summary.csv").open()))
    return [(int(r["budget"]), float(r["macro_auc"])) for r in rows if r["objective"] == objective]


# -- TensorBoard ---------------------------------------------------------------------------------------


def test_tensorboard_event_files_hold_training_loss_evaluation_recipe_and_plots(tracked_run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, losses = tracked_run
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(
        str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0}
    )
    events.Reload()
    loss = [(e.step, e.value) for e in events.Scalars("pretrain/cap/loss")]
    assert [s for s, _ in loss] == [s for s, _ in losses] == [1, 2]
    assert [v for _, v in loss] == pytest.approx([v for _, v in losses], rel=1e-5)
    assert "pretrain/cap/lr" in events.Tags()["scalars"]
    assert "pretrain/rand/loss" not in events.Tags()["scalars"]  # random does not train
    auc = [(e.step, e.value) for e in events.Scalars("eval/linear/cap/macro_auc")]
    assert auc == [(b, pytest.approx(v, abs=1e-6)) for b, v in summary_auc(out, "cap")]
    assert [e.step for e in events.Scalars("eval/linear/rand/macro_auc")] == [4, 8]
    recipe_text = events.Tensors("recipe/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "name: tracked" in recipe_text and "max_steps: 2" in recipe_text
    assert "plots/auc_vs_budget" in events.Tags()["images"]


# -- Weights & Biases (offline) -----------------------------------------------------------------------


def wandb_records(path: Path):
    """The records of an offline run's ``.wandb`` file: W&B's own protobuf ``Record`` messages in a
    LevelDB-style log (7-byte file header, then 32 KiB blocks of checksum/length/type-framed chunks)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, chunks = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a record is complete
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            chunks = b""
            yield record


def key(item) -> str:
    """An item's key: flat, or the first part of a nested one (``eval/summary`` of a table's fields)."""
    return item.key or item.nested_key[0]


def test_wandb_offline_run_records_config_losses_summary_and_report(tracked_run):
    pytest.importorskip("wandb")
    out, losses = tracked_run
    runs = list((out.parent / "wandb-dir" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "one offline run, nothing synced"
    (log_file,) = runs[0].glob("run-*.wandb")
    history, summary, artifacts, config, run_info = [], {}, [], {}, None
    for record in wandb_records(log_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_info = record.run
            config.update({key(i): json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            config.update({key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            history.append({key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            summary.update({key(i): i.value_json for i in record.summary.update})
        elif kind == "artifact":
            artifacts.append(record.artifact)
    assert run_info.project == "radtex-test" and run_info.run_group == "tracked"
    assert run_info.display_name == "tracked"
    assert config["name"] == "tracked" and config["seed"] == 0
    steps = [(h["pretrain/cap/step"], h["pretrain/cap/loss"]) for h in history if "pretrain/cap/loss" in h]
    assert steps == [(s, pytest.approx(v, rel=1e-6)) for s, v in losses]
    curve = [(h["eval/budget"], h["eval/linear/cap/macro_auc"]) for h in history if "eval/budget" in h]
    assert curve == [(b, pytest.approx(v, abs=1e-6)) for b, v in summary_auc(out, "cap")]
    assert "tables/summary" in summary
    (report,) = [a for a in artifacts if a.type == "run-report"]
    assert {"report.md", "summary.csv", "plots/auc_vs_budget.png"} <= {
        c.path for c in report.manifest.contents
    }


# -- MLflow (local store) -----------------------------------------------------------------------------


def test_mlflow_local_store_holds_params_metrics_and_artifacts(tracked_run):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    out, losses = tracked_run
    client = MlflowClient(tracking_uri=f"sqlite:///{out.resolve() / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    assert run.info.run_name == "tracked" and run.info.status == "FINISHED"
    assert run.data.params["seed"] == "0" and run.data.params["objectives.0.label"] == "cap"
    history = client.get_metric_history(run.info.run_id, "pretrain/cap/loss")
    assert [(m.step, m.value) for m in history] == [(s, pytest.approx(v, rel=1e-6)) for s, v in losses]
    auc = client.get_metric_history(run.info.run_id, "eval/linear/cap/macro_auc")
    assert sorted((m.step, m.value) for m in auc) == [
        (b, pytest.approx(v)) for b, v in summary_auc(out, "cap")
    ]
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "summary.csv", "recipe.yaml", "plots"} <= top
    assert "plots/auc_vs_budget.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert (out / "mlartifacts").is_dir()  # artefacts stay in the run folder


def test_mlflow_file_store(tmp_path, monkeypatch):
    """A ``file:`` tracking URI (MLflow's folder store) works through the same client calls."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from radtex_bench.tracking.mlflow import MlflowConfig, MlflowTracker

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps folder stores behind this switch
    uri = (tmp_path / "mlruns").as_uri()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "report.md").write_text("# report\n")
    tracker = MlflowTracker(
        MlflowConfig(tracking_uri=uri, experiment="exp"), TrackedRun(tmp_path / "run", "r", ("a",))
    )
    tracker.log_config({"seed": 3, "objectives": [{"name": "clip", "params": {"width": 8}}]})
    tracker.log_metrics(5, {"step": 5, "loss": 0.25, "time": 1.0e9, "grad_norm": None}, prefix="pretrain/a")
    tracker.log_summary(
        [{"objective": "a", "protocol": "linear", "budget": "10", "macro_auc": "0.75", "ci_low": ""}]
    )
    tracker.log_artifacts([tmp_path / "run" / "report.md"])
    tracker.close()
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert run.data.params == {"seed": "3", "objectives.0.name": "clip", "objectives.0.params.width": "8"}
    assert run.data.metrics == {"pretrain/a/loss": 0.25, "eval/linear/a/macro_auc": 0.75}  # no time, no None
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval/linear/a/macro_auc")] == [10]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"recipe.yaml", "report.md"}


# -- the recipe section, the missing extra, the ranks -------------------------------------------------


def test_logging_section_defaults_off_and_set_switches_a_tracker_on(tmp_path, manifest_dir):
    recipe = write_tiny_recipe(tmp_path / "r.yaml", manifest_dir, [{"name": "random"}], {}, "r")
    assert load_recipe(recipe).logging.trackers == {}
    on = load_recipe(recipe, ["logging.tensorboard=true", "logging.wandb.project=mine"])
    assert set(on.logging.trackers) == {"tensorboard", "wandb"}
    assert on.logging.trackers["wandb"].mode == "offline"  # never online unless the recipe says so
    plain = yaml.safe_load(dump_recipe(on))["logging"]
    assert plain["mlflow"] is False and plain["wandb"]["project"] == "mine"
    assert recipe_from_dict(on.to_plain()).logging == on.logging  # recipe.yaml reloads as it was


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("logging.tensorbord=true", "logging.tensorbord: unknown tracker; did you mean 'tensorboard'?"),
        ("logging.wandb.mode=cloud", "logging.wandb.mode: invalid value 'cloud'"),
        ("logging.mlflow=3", "logging.mlflow: expected true, false or a mapping"),
    ],
)
def test_bad_logging_sections_exit_2(tmp_path, manifest_dir, capsys, override, fragment):
    recipe = write_tiny_recipe(tmp_path / "r.yaml", manifest_dir, [{"name": "random"}], {}, "r")
    assert main(["run", str(recipe), "--out", str(tmp_path / "out"), "--set", override]) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["tensorboard", "wandb", "mlflow"])
def test_tracker_not_installed_is_an_exit_2_error_naming_the_extra(
    tmp_path, manifest_dir, capsys, monkeypatch, name
):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == name else real(m, *a))
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml", manifest_dir, [{"name": "random"}], {}, "r", logging={name: True}
    )
    assert main(["run", str(recipe), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: logging.{name}:") and f"pip install 'radtex-bench[{name}]'" in err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # before any work


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
    reason="torchrun is not installed beside this Python",
)
def test_under_torchrun_only_rank_0_logs(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    write_manifest(tmp_path / "ds", n=40)
    objectives = [
        {
            "name": "captioning",
            "label": "cap",
            "params": TINY_CAPTIONING,
            "train": {**TRAIN, "batch_size": 4},
        },
        {"name": "random", "label": "rand"},
    ]
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml",
        tmp_path / "ds",
        objectives,
        {"budgets": [4], "seeds": 1, "bootstrap": 10},
        "ddp",
        logging={"tensorboard": True},
    )
    out = tmp_path / "run"
    argv = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2", "-m"]
    argv += [
        "radtex_bench",
        "--quiet",
        "run",
        str(recipe),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--only",
        "cap",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((out / "tensorboard").iterdir())) == 1  # one writer: rank 0's
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("pretrain/cap/loss")] == [1, 2]  # each step logged once
    assert json.loads((out / "objectives.json").read_text()) == ["cap"]


class Recording(Tracker):
    def __init__(self, fail: bool = False):
        self.name, self.calls, self.fail = "recording", [], fail

    def log_metrics(self, step, metrics, prefix=""):
        if self.fail:
            raise OSError("disk full")
        self.calls.append((step, prefix, dict(metrics)))

    def close(self, success=True):
        self.calls.append(("close", success))


def fit(tmp_path: Path, rank: int, hook) -> None:
    cfg = TrainConfig(max_steps=4, batch_size=4, checkpoint_every=0, log_every=2)
    dataset = RadiographDataset(Pixels(16), needs=["image"], seed=1)
    torch.manual_seed(0)
    trainer = Trainer(
        Regression(), dataset, cfg, tmp_path, torch.device("cpu"), DistInfo(), 1, 0, "t", metrics_hook=hook
    )
    # The loop as another rank runs it (its data shard aside, which needs a process group).
    trainer.dist = DistInfo(rank=rank, world_size=1)
    trainer.fit()


def test_trainer_hands_each_metrics_line_to_the_trackers_on_rank_0_only(tmp_path):
    seen: list[dict] = []
    fit(tmp_path / "rank0", 0, seen.append)
    lines = [json.loads(x) for x in (tmp_path / "rank0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in seen] == [2, 4]  # logging steps only: nothing in between
    assert seen == lines
    others: list[dict] = []
    fit(tmp_path / "rank1", 1, others.append)
    assert others == [] and not (tmp_path / "rank1" / "metrics.jsonl").exists()
    assert not open_trackers({"tensorboard": None}, TrackedRun(tmp_path, "r", ("a",)), is_main=False)


def test_a_failing_tracker_is_dropped_with_a_warning_and_the_others_go_on(caplog):
    good, bad = Recording(), Recording(fail=True)
    trackers = Trackers([bad, good])
    trackers.log_metrics(1, {"loss": 1.0}, prefix="pretrain/a")
    trackers.log_metrics(2, {"loss": 0.5}, prefix="pretrain/a")
    trackers.close()
    assert good.calls == [(1, "pretrain/a", {"loss": 1.0}), (2, "pretrain/a", {"loss": 0.5}), ("close", True)]
    assert bad.calls == [("close", False)]
    assert "tracker recording failed in log_metrics (OSError: disk full)" in caplog.text
    assert not Trackers()  # with nothing enabled: a no-op
