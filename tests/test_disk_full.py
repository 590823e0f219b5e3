"""A full disk is one ``error:`` line (exit 2) naming the file, never an internal error: ``torch.save``
reports ENOSPC as ``RuntimeError: [enforce fail at inline_container.cc]`` with the ``OSError`` only as
its context, and a run that hit it must still resume once space is freed."""

from __future__ import annotations

import errno
import io

import pytest
import torch
from conftest import write_tiny_recipe

import radtex_bench.engine.checkpoint as checkpoint_module
from radtex_bench.cli import main
from radtex_bench.engine.checkpoint import save_checkpoint
from radtex_bench.errors import UserError, disk_full


class _FullDisk(io.FileIO):
    """A file that takes ``room`` bytes, then fails each write the way a full disk does."""

    room = 1 << 20

    def write(self, data) -> int:
        if self.tell() + len(memoryview(data)) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def fill_the_disk(monkeypatch) -> None:
    monkeypatch.setattr(checkpoint_module, "open", lambda path, mode: _FullDisk(path, mode), raising=False)


def test_the_oserror_is_found_behind_a_wrapping_error():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/x/last.ckpt")
        except OSError:
            raise RuntimeError(
                "[enforce fail at inline_container.cc:672] . unexpected pos 62287168"
            ) from None
    except RuntimeError as wrapped:  # `from None` hides the context from tracebacks but keeps it
        assert disk_full(wrapped).filename == "/x/last.ckpt"
    assert disk_full(RuntimeError("unexpected pos")) is None
    assert disk_full(OSError(errno.ENOENT, "No such file")) is None
    assert disk_full(OSError(errno.EDQUOT, "Disk quota exceeded")).errno == errno.EDQUOT


def test_a_checkpoint_on_a_full_disk_is_a_user_error_and_leaves_no_file(tmp_path, monkeypatch):
    fill_the_disk(monkeypatch)
    path = tmp_path / "last.ckpt"
    with pytest.raises(UserError) as caught:
        save_checkpoint(path, {"weights": torch.zeros(1 << 20)})  # 4 MB: more than the room
    assert str(caught.value) == f"cannot write {path}: No space left on device (disk full or not writable?)"
    assert list(tmp_path.iterdir()) == []  # neither last.ckpt nor its temporary file


def test_a_run_that_fills_the_disk_exits_2_and_resumes(tmp_path, capsys, manifest_dir, monkeypatch):
    train = {"max_steps": 2, "batch_size": 4, "checkpoint_every": 1}
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml",
        manifest_dir,
        [{"name": "supervised", "train": train}],
        {"budgets": [4], "seeds": 1, "bootstrap": 0},
        "full",
    )
    out = tmp_path / "run"
    fill_the_disk(monkeypatch)
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    ckpt = out / "pretrain" / "supervised" / "last.ckpt"
    assert err == f"error: cannot write {ckpt}: No space left on device (disk full or not writable?)\n"
    assert (out / "run.log").read_text().splitlines()[-1].endswith(err.strip())
    assert not ckpt.exists() and not (out / "results.csv").exists()
    monkeypatch.undo()  # space freed
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--device", "cpu", "--resume"]) == 0
    assert ckpt.is_file() and (out / "results.csv").is_file()


def test_a_full_disk_anywhere_else_is_one_error_line(tmp_path, capsys, monkeypatch):
    import radtex_bench.reporting

    def failing(run_dir):
        raise RuntimeError("write failed") from OSError(errno.ENOSPC, "No space left", str(run_dir / "x.png"))

    monkeypatch.setattr(radtex_bench.reporting, "build_report", failing)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: no space left on the device writing {tmp_path / 'x.png'}; free some (each pretraining keeps "
        "last.ckpt and encoder.safetensors) and rerun with --resume\n"
    )
