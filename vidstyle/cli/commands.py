"""The other commands: `weights`, `train`, `models` (and `models import`), `sheet`, `eval`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from vidstyle.cli.app import PRESETS, Quiet, Verbose, app, log, user_errors, verbosity
from vidstyle.cli.help import HelpCommand
from vidstyle.cli.options import add_chosen_setting_options, add_setting_options, settings_values
from vidstyle.config import (
    PANEL_FEATURES,
    PANEL_LOSS,
    PANEL_TRAIN,
    PANEL_TRAIN_DATA,
    RenderSettings,
    TrainSettings,
    resolve_settings,
)
from vidstyle.console import TrainingProgressBar, setup_logging, stderr_console
from vidstyle.errors import VidstyleError, WeightsError


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
    with user_errors():
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
    setup_logging(verbosity(quiet, verbose))
    bar = TrainingProgressBar(enabled=not quiet, description=style.stem)
    with user_errors():
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
    with user_errors():
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
    with user_errors():
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


SheetInputPath = Annotated[
    Path,
    typer.Argument(metavar="INPUT", help="A video or a still image.", show_default=False),
]

SheetStyle = Annotated[
    list[Path] | None,
    typer.Option(
        "--style",
        "-s",
        metavar="IMAGE",
        help="Style image (repeatable): a row of pictures each.",
        show_default=False,
    ),
]

SheetModel = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        metavar="NAME",
        help="Fast-mode model, a name or a file (repeatable): a picture each.",
        show_default=False,
    ),
]

SheetVary = Annotated[
    list[str] | None,
    typer.Option(
        "--vary",
        metavar="OPTION=V1,V2",
        help="Render each style with each value of a render option, e.g. "
        "style-weight=1,2,5 (repeatable: every combination). One value sets it for all.",
        show_default=False,
    ),
]

SheetAt = Annotated[
    str | None,
    typer.Option(
        "--at",
        metavar="TIME",
        help="The frame shown at this time: seconds or \\[HH:]MM:SS \\[default: the middle].",
        show_default=False,
    ),
]

SheetFrame = Annotated[
    int | None,
    typer.Option("--frame", metavar="N", help="Frame N, counted from 0.", show_default=False),
]

SheetOutput = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        help="The PNG to write \\[default: <stem>.sheet.png beside the input].",
        show_default=False,
    ),
]

SheetPreset = Annotated[
    str | None,
    typer.Option(
        metavar="[" + "|".join(PRESETS) + "]",
        help="Preset of every picture \\[default: quality].",
        show_default=False,
    ),
]

SheetConfig = Annotated[
    Path | None,
    typer.Option(metavar="FILE", help="TOML file of settings.", show_default=False),
]

SheetJobs = Annotated[
    int,
    typer.Option(
        "--jobs", "-j", metavar="N", help="Pictures rendered at once, in worker processes."
    ),
]


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
    input_path: SheetInputPath,
    style: SheetStyle = None,
    model: SheetModel = None,
    vary: SheetVary = None,
    at: SheetAt = None,
    frame: SheetFrame = None,
    output: SheetOutput = None,
    preset: SheetPreset = None,
    config: SheetConfig = None,
    jobs: SheetJobs = 1,
    quiet: Quiet = False,
    verbose: Verbose = False,
    **settings: Any,
) -> None:
    """Render one frame of INPUT in every style (-s) with every combination of --vary values
    (quality mode, the chosen preset) and with every --model, and write one PNG grid: the
    source frame first, each picture labelled with the options that made it, to copy into a
    render command."""
    setup_logging(verbosity(quiet, verbose))
    with user_errors():
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
    setup_logging(verbosity(quiet, verbose))
    with user_errors():
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
