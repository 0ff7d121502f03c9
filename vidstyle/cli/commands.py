"""The `vidstyle` app and its commands: parse → settings → library call → exit code.

`vidstyle INPUT --style IMAGE` works without a subcommand word: `main()` inserts `render` when
the first argument is not a known subcommand.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from vidstyle import __version__
from vidstyle.cli.help import HelpCommand
from vidstyle.cli.options import (
    PANEL_LOG,
    add_chosen_setting_options,
    add_setting_options,
    settings_values,
)
from vidstyle.config import (
    PANEL_BATCH,
    PANEL_FEATURES,
    PANEL_IO,
    PANEL_LOSS,
    PANEL_MODE,
    PANEL_TRAIN,
    PANEL_TRAIN_DATA,
    RENDER_PANELS,
    RenderSettings,
    TrainSettings,
    load_preset,
    preset_names,
    resolve_settings,
)
from vidstyle.console import (
    BatchProgress,
    TrainingProgressBar,
    debug_enabled,
    setup_logging,
    stderr_console,
)
from vidstyle.errors import EXIT_INPUT_FAILED, EXIT_INTERRUPTED, VidstyleError, WeightsError
from vidstyle.filetypes import VIDEO_EXTENSIONS

log = logging.getLogger("vidstyle.cli")

app = typer.Typer(
    name="vidstyle",
    help="Render videos in the style of a painting (quality: per-frame optimisation; "
    "fast: a trained feed-forward network).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    """`--version`: vidstyle's and the libraries' versions and the device `auto` would use
    (what a bug report needs), as `ffmpeg -version` reports its build."""
    if not value:
        return
    import av
    import torch

    from vidstyle.device import describe_auto_device, describe_auto_precision

    cuda = f" (CUDA {torch.version.cuda})" if torch.version.cuda else " (CPU build)"
    typer.echo(f"vidstyle {__version__}")
    typer.echo(f"torch {torch.__version__}{cuda}")
    typer.echo(f"PyAV {av.__version__}, FFmpeg {av.ffmpeg_version_info}")
    typer.echo(f"device: {describe_auto_device()}")
    typer.echo(f"precision auto: {describe_auto_precision()}")
    raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version",
            "-V",
            callback=_version,
            is_eager=True,
            help="Show the versions of vidstyle, torch, PyAV and FFmpeg, and the device.",
        ),
    ] = None,
) -> None:
    """vidstyle: batch video stylization. `vidstyle INPUT --style IMAGE` renders one video."""


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn library errors into one line on stderr and the right exit code (no traceback)."""
    try:
        yield
    except VidstyleError as err:
        if debug_enabled():
            raise
        # soft_wrap: rich would otherwise break a long message (a deep path) into several
        # lines at the console width; the terminal wraps it for display anyway.
        # Text, not markup: a path like "take[2].mp4" must print as it is.
        stderr_console.print(
            Text.assemble(("error: ", "bold red"), str(err)), highlight=False, soft_wrap=True
        )
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        stderr_console.print("[bold red]interrupted[/]", markup=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _verbosity(quiet: bool, verbose: bool) -> int:
    return -1 if quiet else (1 if verbose else 0)


Quiet = Annotated[
    bool,
    typer.Option(
        "-q",
        "--quiet",
        rich_help_panel=PANEL_LOG,
        help="Only warnings and errors; no progress bar.",
    ),
]
Verbose = Annotated[
    bool, typer.Option("-v", "--verbose", help="Debug logging.", rich_help_panel=PANEL_LOG)
]


_PRESETS = {name: load_preset(name) for name in preset_names()}  # per-preset defaults in --help


@app.command(
    cls=HelpCommand,
    short_help="Render videos with --style IMAGE or --model M (the default command).",
)
@add_setting_options(
    RenderSettings, unset_default=True, presets=_PRESETS, panel_order=RENDER_PANELS
)
def render(
    input_paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="INPUT",
            help="Video files and/or folders of videos (folders need -o OUTDIR).",
            show_default=False,
        ),
    ],
    style: Annotated[
        list[Path] | None,
        typer.Option(
            "--style",
            "-s",
            metavar="IMAGE",
            help="Style image (quality mode). Repeatable: several --style values render every "
            "input in every style (one output each), unless --style-blend is given, which "
            "blends them into one style and one output per input (<stem>.<a>+<b>.mp4).",
            rich_help_panel=PANEL_IO,
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="Output file \\[default: <stem>.<style>.mp4 beside the input].",
            rich_help_panel=PANEL_IO,
            show_default=False,
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Preset from configs/ \\[default: quality] (fast with --mode fast, or with "
            "--model and no --mode).",
            rich_help_panel=PANEL_MODE,
            show_default=False,
            metavar="[" + "|".join(_PRESETS) + "]",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="TOML file of settings (overrides the preset; options override it).",
            rich_help_panel=PANEL_MODE,
            show_default=False,
        ),
    ] = None,
    recursive: Annotated[
        bool,
        typer.Option(
            "--recursive", "-r", help="Search folders' subfolders too.", rich_help_panel=PANEL_BATCH
        ),
    ] = False,
    ext: Annotated[
        list[str] | None,
        typer.Option(
            "--ext",
            metavar="EXTS",
            help="Extensions taken for videos in folders, comma-separated or repeated "
            f"\\[default: {','.join(e.lstrip('.') for e in VIDEO_EXTENSIONS)}].",
            rich_help_panel=PANEL_BATCH,
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str,
        typer.Option(
            "--name",
            metavar="TEMPLATE",
            help="Output name template: {stem} (input name), {style} (style or model name), "
            "{ext} (.mp4), {input_ext} (the input's extension); may include a subfolder.",
            rich_help_panel=PANEL_BATCH,
        ),
    ] = "{stem}.{style}{ext}",
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            metavar="N",
            help="Videos rendered at once, in worker processes; with --device cuda:0,cuda:1 "
            "the workers take the devices in turn.",
            rich_help_panel=PANEL_BATCH,
        ),
    ] = 1,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            metavar="ADDRESS",
            help="Render on the Ray cluster at this address (auto, host:6379, ray://host:10001), "
            "a task per video (or per shot, with --split shots). Every node must see the inputs "
            "and outputs under the same paths. Needs pip install 'vidstyle\\[ray]'.",
            rich_help_panel=PANEL_BATCH,
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the plan (input → output, render/skip, frames) and write nothing.",
            rich_help_panel=PANEL_BATCH,
        ),
    ] = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    **settings: Any,
) -> None:
    """Render videos in the style of --style, or with a trained --model (the default command:
    `render` may be left out). One INPUT file renders to <stem>.<style>.mp4 beside it, or to
    -o FILE; several inputs, several styles or folders render into -o OUTDIR (mirroring the
    folders' subfolders), skipping outputs that exist. An interrupted render resumes when the
    same command is run again."""
    setup_logging(_verbosity(quiet, verbose))
    with _user_errors():
        resolved = resolve_settings(
            preset=preset,
            config_file=config,
            overrides=settings_values(RenderSettings, settings),
        )
        _render(
            input_paths,
            style or [],
            resolved,
            output=output,
            recursive=recursive,
            ext=ext,
            name=name,
            jobs=jobs,
            cluster=cluster,
            dry_run=dry_run,
            quiet=quiet,
        )


def _render(
    input_paths: list[Path],
    styles: list[Path],
    settings: RenderSettings,
    *,
    output: Path | None,
    recursive: bool,
    ext: list[str] | None,
    name: str,
    jobs: int,
    cluster: str | None,
    dry_run: bool,
    quiet: bool,
) -> None:
    """Plan the batch, then render it (or print the plan); exits with the batch's code."""
    # Imported here so `vidstyle --help` does not pay for importing torch.
    from vidstyle.batch import normalise_extensions, plan_batch, plan_table, run_batch

    plan = plan_batch(
        input_paths,
        styles,
        settings,
        output=output,
        recursive=recursive,
        extensions=normalise_extensions(ext),
        name_template=name,
    )
    if dry_run:
        for line in plan_table(plan):
            typer.echo(line)
        raise typer.Exit(1 if any(job.action == "fail" for job in plan.jobs) else 0)
    single = len(plan.jobs) == 1  # `vidstyle clip.mp4 -s s.png`: errors as they are
    display = BatchProgress(
        enabled=not quiet,
        files=len(plan.jobs),
        frames=plan.frames_to_render,
        # A video in parts shows a row per part being rendered below its overall row.
        overall=len(plan.jobs) > 1 or settings.split != "none",
    )
    try:
        summary = run_batch(plan, jobs=jobs, watch=display, raise_errors=single, cluster=cluster)
    finally:
        display.finish()
    if not single and not quiet:
        _print_summary(summary)
    if summary.interrupted:
        stderr_console.print(
            "[bold red]interrupted[/]: progress is saved; run the same command to resume",
            markup=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.failed:
        raise typer.Exit(EXIT_INPUT_FAILED)


def _print_summary(summary: Any) -> None:
    """The batch's summary table on stderr (summary: vidstyle.batch.BatchSummary)."""
    table = Table(title="vidstyle batch", title_justify="left", box=None, pad_edge=False)
    for column, justify in (
        ("input", "left"),
        ("style", "left"),
        ("result", "left"),
        ("frames", "right"),
        ("time", "right"),
        ("frames/s", "right"),
    ):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    colours = {
        "rendered": "green",
        "skipped": "dim",
        "stale": "yellow",
        "failed": "red",
        "interrupted": "yellow",
    }
    for result in summary.results:
        job = result.job
        note = result.status
        if result.resumed_from:
            note += f" (resumed at {result.resumed_from})"
        if result.status == "stale":
            note += f" ({', '.join(job.stale)})"  # what differs; --overwrite renders it again
        rendered = result.status == "rendered"
        speed = result.rendered_frames / result.seconds if rendered and result.seconds else 0
        table.add_row(
            Text(str(job.input)),
            Text(job.style_name or "-"),
            Text(note, style=colours.get(result.status, "")),
            str(result.frames) if rendered else "",
            _duration(result.seconds) if rendered else "",
            f"{speed:.2f}" if rendered else "",
        )
    stderr_console.print(table)
    for result in summary.results:
        if result.status == "failed":  # one unbroken line each, the reason in full
            stderr_console.print(
                Text.assemble(("failed: ", "bold red"), result.message),
                highlight=False,
                soft_wrap=True,
            )
    counts = ", ".join(
        f"{summary.count(status)} {status}"
        for status in ("rendered", "skipped", "stale", "failed", "interrupted")
        if summary.count(status) or status not in ("stale", "interrupted")
    )
    stderr_console.print(
        Text(
            f"{counts}; {summary.frames} frames in {_duration(summary.seconds)} "
            f"({summary.frames_per_second:.2f} frames/s)",
            style="bold red" if summary.failed else "bold",
        ),
        soft_wrap=True,
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@app.command(cls=HelpCommand)
@add_chosen_setting_options(
    RenderSettings,
    {
        "vgg_weights": "Check this checkpoint instead of the usual places.",
        "vgg_layout": "Input normalisation: auto reads the file.",
    },
    before="download",
    defaults=True,
)
def weights(
    download: Annotated[
        bool,
        typer.Option(
            "--download",
            help="Download torchvision's VGG-19 now if none is found (even if it failed lately).",
        ),
    ] = False,
    **settings: Any,
) -> None:
    """Show which VGG weights (VGG-19 or VGG-16) would be used and where they are looked for."""
    setup_logging(0)
    vgg_weights, vgg_layout = settings["vgg_weights"], settings["vgg_layout"]
    with _user_errors():
        from vidstyle.nets.vgg import find_weights, inspect_weights

        if download:
            found = find_weights(vgg_weights, force_download=True)
            if found is None:
                raise WeightsError(
                    "could not download VGG-19 weights; check the network, or copy a checkpoint "
                    "into the cache `vidstyle weights` names"
                )
        lines, problem = inspect_weights(vgg_weights, layout=vgg_layout)
        for line in lines:
            typer.echo(line)
        if problem is not None:  # a render would stop with this: so does the check
            raise problem


@app.command(cls=HelpCommand)
@add_setting_options(
    TrainSettings,
    unset_default=False,
    panel_order=(PANEL_TRAIN_DATA, PANEL_TRAIN, PANEL_LOSS, PANEL_FEATURES),
)
def train(
    style: Annotated[
        Path,
        typer.Option(
            "--style",
            "-s",
            metavar="IMAGE",
            help="Style image.",
            rich_help_panel=PANEL_TRAIN_DATA,
        ),
    ],
    data: Annotated[
        list[Path],
        typer.Option(
            "--data",
            "-d",
            metavar="PATH",
            help="Image folder, video file or folder of videos (repeatable); video frames are "
            "sampled across each clip, so the footage you will render works as training data.",
            rich_help_panel=PANEL_TRAIN_DATA,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="Model file to write (default: <models dir>/<style>.pth); its checkpoint is "
            "<out>.ckpt. Re-running the same command resumes from it.",
            rich_help_panel=PANEL_TRAIN_DATA,
            show_default=False,
        ),
    ] = None,
    models_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Models directory for the default --out (default: $VIDSTYLE_MODELS or "
            "~/.cache/vidstyle/models).",
            rich_help_panel=PANEL_TRAIN_DATA,
            show_default=False,
        ),
    ] = None,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Ignore (and replace) an existing checkpoint.",
            rich_help_panel=PANEL_TRAIN,
        ),
    ] = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    **options: Any,
) -> None:
    """Train a fast-mode network for one style; render with it via `vidstyle INPUT --model M`."""
    setup_logging(_verbosity(quiet, verbose))
    bar = TrainingProgressBar(enabled=not quiet, description=style.stem)
    with _user_errors():
        from vidstyle.nets.models import models_dir as resolve_models_dir
        from vidstyle.stylize.train import train as train_model

        if out is None:
            folder = resolve_models_dir(models_dir)
            folder.mkdir(parents=True, exist_ok=True)
            out = folder / f"{style.stem}.pth"
        values = settings_values(TrainSettings, options)
        if values["vgg_weights"] is not None:
            values["vgg_weights"] = str(values["vgg_weights"])
        settings = TrainSettings.from_options(values)
        try:
            result = train_model(style, data, out, settings, restart=restart, on_step=bar)
        finally:
            bar.finish()
        typer.echo(str(result.model))


models_app = typer.Typer(
    name="models",
    help="List the models in the models directory (names for `--model`) with metadata; "
    "`vidstyle models import FILE` adds a pytorch/examples network.",
    invoke_without_command=True,
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(models_app)

ModelsDir = Annotated[
    Path | None,
    typer.Option(
        metavar="DIR",
        help="Models folder (default: $VIDSTYLE_MODELS or ~/.cache/vidstyle/models).",
        show_default=False,
    ),
]


@models_app.command(
    name="import",
    cls=HelpCommand,
    short_help="Convert a pytorch/examples fast_neural_style .pth into a model for --model.",
)
def models_import(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="A fast_neural_style .pth from pytorch/examples (candy.pth, mosaic.pth, ...).",
            show_default=False,
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="The model's name for --model \\[default: the file's name without .pth].",
            show_default=False,
        ),
    ] = None,
    models_dir: ModelsDir = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a model of the same name.")
    ] = False,
) -> None:
    """Convert a pytorch/examples fast_neural_style network (get them with its
    download_saved_models.py) into a vidstyle model, so `--model NAME` renders with it."""
    setup_logging(0)
    with _user_errors():
        from vidstyle.nets.model_import import import_model

        imported = import_model(file, name=name, directory=models_dir, overwrite=overwrite)
        if imported.dropped:
            log.info(
                "%s: dropped %d instance-norm running statistics (unused; older PyTorch wrote "
                "them)",
                file,
                imported.dropped,
            )
        log.info("Imported %s as model '%s'", file, imported.name)
        typer.echo(str(imported.path))


@models_app.callback()
def models(ctx: typer.Context, models_dir: ModelsDir = None) -> None:
    """List the models in the models directory (names for `--model`) with metadata; `vidstyle
    models import FILE` adds a network trained by pytorch/examples' fast_neural_style."""
    if ctx.invoked_subcommand is not None:
        return
    setup_logging(0)
    with _user_errors():
        from vidstyle.nets.models import list_models
        from vidstyle.nets.models import models_dir as resolve_models_dir

        folder = resolve_models_dir(models_dir)
        found = list_models(folder)
        if not found:
            typer.echo(
                f"No models in {folder}; train one with `vidstyle train --style IMAGE --data VIDEO`"
            )
            return
        typer.echo(f"Models in {folder}:")
        rows = [("NAME", "ARCH", "STYLE", "STEPS", "CROP", "LOSS NETWORK", "CREATED")]
        problems: list[str] = []
        for item in found:
            if isinstance(item, VidstyleError):
                problems.append(f"  unusable: {item}")
                continue
            t = item.training
            unknown = "-" if item.source else "?"  # an imported network: not trained here
            loss_network = f"imported: {item.source.get('file', '?')}" if item.source else "?"
            rows.append(
                (
                    item.name,
                    item.arch.name,
                    item.style,
                    str(t.get("steps", unknown)),
                    f"{t['size']} px" if "size" in t else unknown,
                    str(t.get("loss_network", loss_network)),
                    item.created[:16].replace("T", " "),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            typer.echo(
                "  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            )
        for line in problems:
            typer.echo(line)


@app.command(
    cls=HelpCommand,
    short_help="One frame in every style, --vary value and --model, as one labelled PNG grid.",
)
@add_chosen_setting_options(
    RenderSettings,
    {
        "size": "Long side of the pictures \\[default: the preset's].",
        "features": "VGG features.",
        "vgg_weights": "VGG-19 or VGG-16 checkpoint.",
        "vgg_layout": "Its input normalisation.",
        "device": "auto | cpu | cuda | cuda:N; a comma-separated list the pictures take in turn.",
    },
    before="jobs",
    metavars={"device": "DEVICE"},
)
def sheet(
    input_path: Annotated[
        Path,
        typer.Argument(metavar="INPUT", help="A video or a still image.", show_default=False),
    ],
    style: Annotated[
        list[Path] | None,
        typer.Option(
            "--style",
            "-s",
            metavar="IMAGE",
            help="Style image (repeatable): a row of pictures each.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            metavar="NAME",
            help="Fast-mode model, a name or a file (repeatable): a picture each.",
            show_default=False,
        ),
    ] = None,
    vary: Annotated[
        list[str] | None,
        typer.Option(
            "--vary",
            metavar="OPTION=V1,V2",
            help="Render each style with each value of a render option, e.g. "
            "style-weight=1,2,5 (repeatable: every combination). One value sets it for all.",
            show_default=False,
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="TIME",
            help="The frame shown at this time: seconds or \\[HH:]MM:SS \\[default: the middle].",
            show_default=False,
        ),
    ] = None,
    frame: Annotated[
        int | None,
        typer.Option("--frame", metavar="N", help="Frame N, counted from 0.", show_default=False),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="The PNG to write \\[default: <stem>.sheet.png beside the input].",
            show_default=False,
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            metavar="[" + "|".join(_PRESETS) + "]",
            help="Preset of every picture \\[default: quality].",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="TOML file of settings.", show_default=False),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs", "-j", metavar="N", help="Pictures rendered at once, in worker processes."
        ),
    ] = 1,
    quiet: Quiet = False,
    verbose: Verbose = False,
    **settings: Any,
) -> None:
    """Render one frame of INPUT in every style (-s) with every combination of --vary values
    (quality mode, the chosen preset) and with every --model, and write one PNG grid: the
    source frame first, each picture labelled with the options that made it, to copy into a
    render command."""
    setup_logging(_verbosity(quiet, verbose))
    with _user_errors():
        from vidstyle.batch.sheet import make_sheet

        result = make_sheet(
            input_path,
            output or input_path.with_name(f"{input_path.stem}.sheet.png"),
            styles=style or [],
            models=model or [],
            vary=vary or [],
            at=at,
            frame=frame,
            preset=preset,
            config=config,
            overrides={k: v for k, v in settings.items() if v is not None},
            jobs=jobs,
        )
        if not quiet:
            total = sum(cell.seconds for cell in result.cells)
            stderr_console.print(
                f"{len(result.cells)} pictures in {result.seconds:.1f} s "
                f"({total / max(1, len(result.cells)):.1f} s each)",
                highlight=False,
            )
        typer.echo(str(result.path))


@app.command(
    cls=HelpCommand,
    name="eval",
    short_help="Measure flicker (warping error) and, with --style, the distance to the style.",
)
@add_chosen_setting_options(
    RenderSettings,
    {
        "features": "As rendered.",
        "vgg_weights": "VGG-19 or VGG-16 checkpoint (as rendered).",
        "vgg_layout": "As rendered.",
        "flow_preset": "Optical flow.",
        "device": "auto | cpu | cuda | cuda:N.",
    },
    before="quiet",
    metavars={"device": "DEVICE"},
)
def evaluate(
    original: Annotated[Path, typer.Argument(help="The source video.", show_default=False)],
    styled: Annotated[Path, typer.Argument(help="A stylized rendering of it.", show_default=False)],
    style: Annotated[
        list[Path] | None,
        typer.Option(
            "--style",
            "-s",
            metavar="IMAGE",
            help="Style image(s) it was rendered with: adds the style distance.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
    preset: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Preset the render used (features, style scale); quality if not given.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="TOML file of settings the render used.", show_default=False
        ),
    ] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
    **settings: Any,
) -> None:
    """Measure a stylized video: warping error (flicker) against the original, and with --style
    the distance to the style. Lower is better for both."""
    setup_logging(_verbosity(quiet, verbose))
    with _user_errors():
        from vidstyle.metrics import evaluate_videos

        resolved = resolve_settings(preset=preset, config_file=config, overrides=settings)
        result = evaluate_videos(original, styled, resolved, styles=style or [])
        if as_json:
            typer.echo(json.dumps(result.as_dict()))
            return
        for line in _eval_table(result):
            typer.echo(line)


def _eval_table(result: Any) -> list[str]:
    """`vidstyle eval`'s human-readable report (result: vidstyle.metrics.EvalResult)."""

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    ratio = result.warping_error_ratio
    rows = [
        ("", "original", "styled", ""),
        (
            "warping error (E_warp)",
            number(result.warping_error_original),
            number(result.warping_error_styled),
            f"{ratio:.1f}x the original" if ratio is not None else "",
        ),
    ]
    if result.style_distance is not None:
        rows.append(("style distance", "", number(result.style_distance), ""))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    width, height = result.size
    lines = [
        f"original  {result.original}",
        f"styled    {result.styled}",
        f"compared  {result.frames} frames at {width}x{height}: {result.pairs} pairs, "
        f"{result.cuts} scene cut(s) skipped; flow {result.flow_preset}",
    ]
    if result.features is not None:
        lines.append(f"features  {result.features}")
    lines.append("")
    for name, a, b, note in rows:
        cells = f"{name.ljust(widths[0])}  {a.rjust(widths[1])}  {b.rjust(widths[2])}"
        lines.append(f"{cells}  {note}".rstrip())
    return lines


def _subcommands() -> set[str]:
    commands = {
        command.name or command.callback.__name__
        for command in app.registered_commands
        if command.callback is not None
    }
    return commands | {group.typer_instance.info.name for group in app.registered_groups}


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`vidstyle`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    root_options = ("-h", "--help", "--version", "-V")
    if args and args[0] not in _subcommands() and args[0] not in root_options:
        args.insert(0, "render")
    try:
        code = app(args=args, prog_name="vidstyle", standalone_mode=False)
    except typer.TyperException as err:  # click's usage errors: an unknown option, a bad value
        sys.exit(_usage_error(err))
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(err: Exception) -> int:
    """A usage error as the one `error:` line every other error is, pointing at the command's
    help (click's own display is a box of several lines); its exit code."""
    show = getattr(err, "show", None)
    if type(err).__name__ == "NoArgsIsHelpError" and show is not None:
        show()  # a bare `vidstyle train`: the help is the answer
        return int(getattr(err, "exit_code", 2))
    format_message = getattr(err, "format_message", None)
    message = format_message() if format_message is not None else str(err)
    message = message[:1].lower() + message[1:].rstrip(".")
    context = getattr(err, "ctx", None)
    if context is not None:
        message += f" (see `{context.command_path} --help`)"
    stderr_console.print(
        Text.assemble(("error: ", "bold red"), message), highlight=False, soft_wrap=True
    )
    return int(getattr(err, "exit_code", 2))
