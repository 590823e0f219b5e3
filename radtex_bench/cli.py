"""The ``radtex-bench`` command line: a thin typer layer over :mod:`radtex_bench.api`.

Exit codes: 0 success; 2 a user error or out of memory (one ``error: ...`` line, no traceback); 1 an
internal error (short message; the traceback goes to ``run.log`` and, with ``--debug``, to the terminal);
130 interrupted (Ctrl-C / SIGTERM; the checkpoint is kept, rerun with ``--resume``).
"""

from __future__ import annotations

import difflib
import json
import re
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import Interrupted, UserError, error_line, interrupted_line, resource_line

app = typer.Typer(
    name="radtex-bench",
    help="Compare pretraining objectives for chest-radiograph encoders under small label budgets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
bench_app = typer.Typer(help="Speed benchmarks (one JSON object on stdout).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")

_options = {"debug": False}


class What(str, Enum):
    objectives = "objectives"
    encoders = "encoders"
    datasets = "datasets"
    protocols = "protocols"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@app.callback()
def _global(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    from .ui import set_quiet

    _options["debug"] = debug
    set_quiet(quiet)


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="The recipe YAML file.")],
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Run folder [runs/<name>-<timestamp>].")
    ] = None,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Override a recipe key: dotted.key=value.")
    ] = None,
    device: Annotated[Device, typer.Option(help="Where to train.")] = Device.auto,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue a run in --out.")] = False,
    exclude: Annotated[
        Optional[list[str]], typer.Option("--exclude", help="Leave out the objective with this label.")
    ] = None,
    only: Annotated[
        Optional[list[str]],
        typer.Option(
            "--only",
            help="Pretrain and score only the objective with this label (repeatable; one cluster job per "
            "objective, combined later by `radtex-bench merge`).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Pretrain every objective of RECIPE, evaluate each encoder at every label budget, write the report."""
    from .api import run as run_api
    from .ui import set_quiet

    if quiet:
        set_quiet(True)
    run_api(
        recipe,
        out=out,
        device=device.value,
        resume=resume,
        overrides=set_ or (),
        exclude=exclude or (),
        only=only or (),
    )


@app.command()
def merge(
    dirs: Annotated[
        list[Path],
        typer.Argument(metavar="DIR", help="Run folders of one recipe (e.g. one per --only job)."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The merged run folder (new or empty).")],
    device: Annotated[
        Device, typer.Option(help="Where to score a cell that no folder has (normally none).")
    ] = Device.auto,
) -> None:
    """Combine run folders of one recipe into one run folder, as if their objectives had run together."""
    from .api import merge as merge_api

    typer.echo(str(merge_api(dirs, out=out, device=device.value)))


#: ``--plugin MODULE`` (repeatable): import a plug-in module before the command, as a recipe's ``plugins:``.
PluginOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--plugin",
        help="Also import this plug-in module (repeat the option for several), as a recipe's plugins: does.",
    ),
]


def _load_cli_plugins(modules: list[str] | None) -> None:
    from .objectives import load_plugins

    load_plugins(modules or (), where="--plugin {module}")


@app.command("list")
def list_(
    what: Annotated[What, typer.Argument(help="What to list.")] = What.objectives,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of names.")] = False,
    plugin: PluginOption = None,
) -> None:
    """List registered objectives, encoders, dataset kinds or evaluation protocols (with plug-ins)."""
    _load_cli_plugins(plugin)  # a plug-in module may register any of them
    extra: list[tuple[str, str]] = []  # rows that are no registered name (left out of --json)
    if what is What.objectives:
        from .objectives import OBJECTIVES

        def describe(name: str) -> list[str]:
            cls = OBJECTIVES.get(name)
            doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip()
            first = doc.removeprefix(f"``{name}``: ").splitlines()[0:1]
            return [line.replace("``", "") for line in first]  # docstring markup, not terminal text

        registry = OBJECTIVES
    elif what is What.encoders:
        from .encoders import ENCODERS

        def describe(name: str) -> list[str]:
            spec = ENCODERS.get(name)
            return [f"{spec.out_dim}-d features" + (f"; {spec.description}" if spec.description else "")]

        registry = ENCODERS
        # The open families (docs/encoders.md) after the registered names: `timm:<model_name>` is any timm model.
        extra = [(f"{prefix}:<model_name>", text) for prefix, text in ENCODERS.families().items()]
    elif what is What.protocols:
        from .evaluation.protocols import PROTOCOLS, load_protocol_entry_points

        load_protocol_entry_points()
        registry, describe = PROTOCOLS, lambda n: [PROTOCOLS.get(n).description]
    else:
        from .data.kinds import DATASETS

        registry, describe = DATASETS, lambda n: [DATASETS.get(n).description]
    names = registry.names()
    if as_json:
        typer.echo(json.dumps(names))
        return
    rows = [(name, (describe(name) or [""])[0]) for name in names] + extra
    width = max((len(name) for name, _ in rows), default=0)
    for name, text in rows:
        typer.echo(f"{name:<{width}}  {text}".rstrip())


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the dataset into.")],
    n: Annotated[int, typer.Option(min=10, max=1_000_000, help="Number of images.")] = 2000,
    size: Annotated[int, typer.Option(min=16, max=1024, help="Image side in pixels.")] = 64,
    seed: Annotated[int, typer.Option(min=0, max=2**31 - 1, help="Generator seed.")] = 0,
) -> None:
    """Write the built-in synthetic dataset (images/*.png + manifest.csv) to OUT."""
    from .data.synthetic import generate_synthetic

    folder = generate_synthetic(out, n=n, size=size, seed=seed)
    typer.echo(str(folder / "manifest.csv"))


@app.command()
def label(
    file: Annotated[Path, typer.Argument(help="CSV file with one report per row.")],
    column: Annotated[str, typer.Option("--column", "-c", help="Column holding the report text.")] = "report",
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="CSV to write [stdout]; written atomically.")
    ] = None,
    labeler: Annotated[str, typer.Option(help="Labeler: rule | f1chexbert (local weights).")] = "rule",
) -> None:
    """Add CheXpert's 14 labels (1 / 0 / -1 / blank) to every row of FILE, after all its columns."""
    from .text.labeler.table import label_table

    label_table(file, column=column, out=out, labeler=labeler)


@data_app.command("summary")
def data_summary(
    kind: Annotated[str, typer.Argument(help="Dataset kind (radtex-bench list datasets).")],
    root: Annotated[str, typer.Argument(help="Dataset folder (or CSV for manifest).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    plugin: PluginOption = None,
) -> None:
    """Count images, studies, patients, reports, views, splits and labels of a dataset."""
    from .data.summary import summarise

    _load_cli_plugins(plugin)  # a plug-in dataset kind
    summary = summarise(kind, root)
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)  # one line per fact, however long the path
    console.print(
        f"[bold]{kind}[/] at {root}: {summary['images']} images, {summary['studies']} studies, "
        f"{summary['patients']} patients, {summary['reports']} with reports"
    )
    views = ", ".join(f"{k} {v}" for k, v in summary["views"].items())
    console.print("views: " + (views or "not recorded"))
    if "splits" in summary:
        console.print("splits: " + ", ".join(f"{k} {v}" for k, v in summary["splits"].items()))
    table = Table("label", "positive", "negative", "uncertain", "missing")
    for name, counts in summary["labels"].items():
        table.add_row(name, *(str(counts[k]) for k in ("positive", "negative", "uncertain", "missing")))
    console.print(table)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")]) -> None:
    """Rebuild report.md and plots/ of RUN_DIR from its CSV files."""
    from .reporting import build_report

    typer.echo(str(build_report(run_dir)))


@app.command()
def prepare(
    kind: Annotated[str, typer.Argument(help="Dataset kind (radtex-bench list datasets).")],
    root: Annotated[str, typer.Argument(help="Dataset folder (or CSV for manifest).")],
    out: Annotated[Path, typer.Argument(help="Cache folder to write (rerun the same command to resume).")],
    size: Annotated[
        int, typer.Option(min=8, help="Shorter image side -> SIZE, centre-cropped square.")
    ] = 256,
    workers: Annotated[Optional[int], typer.Option(min=0, help="Decoding processes [min(8, CPUs)].")] = None,
    plugin: PluginOption = None,
) -> None:
    """Decode and resize every image of a dataset once into a memory-mapped cache (`cache: OUT` in a recipe)."""
    from .data.cache import prepare as prepare_cache
    from .ui import progress

    _load_cli_plugins(plugin)  # a plug-in dataset kind

    with progress() as bar:
        tasks: list = []  # added on the first report, after the dataset was read (errors print cleanly)

        def report(done: int, total: int) -> None:
            if not tasks:
                tasks.append(bar.add_task("prepare", total=total, info="decoding"))
            bar.update(tasks[0], completed=done, total=total)

        result = prepare_cache(kind, root, out, size=size, workers=workers, progress=report)
    typer.echo(json.dumps(result.to_json()))
    if result.skipped:
        print(
            f"warning: {result.skipped} unreadable images skipped; listed in {out / 'skipped.txt'}",
            file=sys.stderr,
        )


@bench_app.command("loader")
def bench_loader(
    n: Annotated[int, typer.Option(min=2, help="Images to time.")] = 200,
    size: Annotated[int, typer.Option(min=8, help="Output image side.")] = 256,
    batch_size: Annotated[int, typer.Option(min=1, help="DataLoader batch size.")] = 32,
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")] = 2,
    epochs: Annotated[int, typer.Option(min=1, help="Timed epochs (after one warm-up epoch).")] = 2,
    min_side: Annotated[int, typer.Option(min=64, help="Generated images: smallest side.")] = 1024,
    max_side: Annotated[int, typer.Option(min=64, help="Generated images: largest side.")] = 2048,
    file_format: Annotated[
        str, typer.Option("--format", help="Generated images: mixed | jpg | png.")
    ] = "mixed",
    kind: Annotated[Optional[str], typer.Option(help="Time a real dataset of this kind instead.")] = None,
    root: Annotated[Optional[str], typer.Option(help="Root of the real dataset (with --kind).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated images / the image choice.")] = 0,
) -> None:
    """Images/s of the training loader from the pixel cache vs decoding the original files (one JSON line)."""
    from .bench.loader import run_loader_benchmark

    if file_format not in ("mixed", "jpg", "png"):
        raise UserError(f"--format {file_format!r}: choose mixed, jpg or png")
    if bool(kind) != bool(root):
        raise UserError("bench loader: give --kind and --root together (or neither, to generate images)")
    if min_side > max_side:
        raise UserError(f"bench loader: --min-side {min_side} is larger than --max-side {max_side}")
    result = run_loader_benchmark(
        n=n,
        size=size,
        batch_size=batch_size,
        workers=workers,
        epochs=epochs,
        min_side=min_side,
        max_side=max_side,
        seed=seed,
        kind=kind,
        root=root,
        file_format=file_format,
    )
    typer.echo(json.dumps(result.to_json()))


@bench_app.command("trainer")
def bench_trainer(
    encoder: Annotated[
        str, typer.Option(help="Encoder of the benchmarked objective (supervised).")
    ] = "resnet18",
    size: Annotated[int, typer.Option(min=8, help="Image side in pixels.")] = 32,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per step.")] = 16,
    steps: Annotated[int, typer.Option(min=1, help="Timed steps per repetition.")] = 8,
    warmup: Annotated[int, typer.Option(min=1, help="Untimed steps before the clock starts.")] = 2,
    repeats: Annotated[int, typer.Option(min=1, help="Repetitions of each loop (alternating; medians).")] = 9,
    device: Annotated[Device, typer.Option(help="Where to train.")] = Device.cpu,
    threads: Annotated[
        int, typer.Option(min=1, help="torch CPU threads (1: steady on a shared machine).")
    ] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the data and the initial weights.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON object (always printed).")] = True,
) -> None:
    """Steps/s of the toolkit's training loop vs a bare PyTorch loop on the same model and data (one JSON line)."""
    from .bench.trainer import run_trainer_benchmark
    from .engine.distributed import resolve_device

    torch_device = resolve_device(device.value)
    result = run_trainer_benchmark(
        encoder=encoder,
        image_size=size,
        batch_size=batch_size,
        steps=steps,
        warmup=warmup,
        repeats=repeats,
        seed=seed,
        device=str(torch_device),
        threads=threads,
    )
    typer.echo(json.dumps(result.to_json()))


def _log_path_from(argv: list[str]) -> Path | None:
    for i, arg in enumerate(argv):
        if arg in ("--out", "-o") and i + 1 < len(argv):
            return Path(argv[i + 1]) / "run.log"
        if arg.startswith("--out="):
            return Path(arg.split("=", 1)[1]) / "run.log"
    return None


def _terminate_as_interrupt() -> None:
    """SIGTERM (a scheduler's kill) ends like Ctrl-C: clean-up runs, temporary files are removed."""
    import signal
    import threading

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _usage_message(message: str) -> str:
    """click's message for a bad choice, with a did-you-mean like every other name the CLI checks.

    ``Invalid value for 'what': 'objectivs' is not one of 'objectives', 'encoders'.`` becomes
    ``... 'objectivs' is not one of objectives, encoders; did you mean 'objectives'?``
    """
    message = message.replace("Value error, ", "")  # a pydantic-style prefix some click versions add
    choice = re.search(r"'([^']*)' is not one of ((?:'[^']*'(?:, )?)+)\.?", message)
    if choice is None:
        return message
    value, options = choice.group(1), re.findall(r"'([^']*)'", choice.group(2))
    close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return message.replace(choice.group(0), f"'{value}' is not one of {', '.join(options)}{hint}")


def main(argv: list[str] | None = None) -> int:
    from .ui import discard_warnings, release_warnings, show_warnings

    argv = list(sys.argv[1:] if argv is None else argv)
    _terminate_as_interrupt()
    # Held until the work starts (api.run releases them): a mistake found up front is one error line.
    show_warnings(hold=True)
    try:
        app(args=argv, prog_name="radtex-bench", standalone_mode=False)
        return 0
    except typer.Exit as exc:
        return exc.exit_code
    except UserError as exc:
        discard_warnings()
        if _options["debug"]:
            traceback.print_exc()
        print(error_line(exc), file=sys.stderr)
        return 2
    except typer.TyperException as exc:  # usage errors: unknown option, bad value, missing argument
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message(), file=sys.stderr)
            return 0
        ctx = getattr(exc, "ctx", None)
        command = " ".join(ctx.command_path.split()[1:]) + " " if ctx is not None and ctx.command_path else ""
        message = _usage_message(" ".join(exc.format_message().split()))
        print(f"error: {message} (see radtex-bench {command}--help)", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt, typer.Abort) as exc:
        print(interrupted_line(exc), file=sys.stderr)
        return 130
    except Exception as exc:
        log_path = _log_path_from(argv)
        if _options["debug"]:
            traceback.print_exc()
        # Memory the API did not place (run names the objective or stage itself), or a full disk met
        # outside radtex_bench.io (a log, a tracker, a library's cache).
        line = resource_line(exc)
        if line is not None:
            discard_warnings()
            print(line, file=sys.stderr)
            return 2
        where = f"the traceback is in {log_path}; " if log_path and log_path.exists() else ""
        print(
            f"internal error: {type(exc).__name__}: {exc} ({where}rerun with --debug for details, and please "
            "report it)",
            file=sys.stderr,
        )
        return 1
    finally:
        release_warnings()  # a command that never reached its work (data summary, label): at its end
