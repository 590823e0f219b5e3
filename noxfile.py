"""Developer sessions: `nox -s tests` (what CI runs) and `nox -s lint`."""

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    # The tracker extras too: their tests read back real TensorBoard / W&B / MLflow files (~35 s to install);
    # and pydicom, so DICOM decoding (rescale, window, MONOCHROME1) is tested, not skipped.
    session.install("-e", ".[test,dicom,tensorboard,wandb,mlflow]")
    session.env.update(
        {
            # Nothing may reach a model hub or the network during the tests.
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONHASHSEED": "0",
            "MPLBACKEND": "Agg",
            # W&B never leaves the machine in the tests (they also pass mode: offline).
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
        }
    )
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5,<0.18")
    session.run("ruff", "check", "radtex_bench", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "radtex_bench", "tests", "benchmarks", "noxfile.py")
