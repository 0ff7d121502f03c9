"""Command line: parse → settings → library call → exit code. The only module that imports typer.

`vidstyle INPUT --style IMAGE` works without a subcommand word: `main()` inserts `render` when
the first argument is not a known subcommand.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from vidstyle import __version__
from vidstyle.config import preset_names, resolve_settings
from vidstyle.console import ProgressBar, debug_enabled, setup_logging, stderr_console
from vidstyle.errors import EXIT_INTERRUPTED, VidstyleError

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

PANEL_IO = "Input and output"
PANEL_MODE = "Mode and presets"
PANEL_QUALITY = "Quality mode"
PANEL_FEATURES = "VGG-19 features"
PANEL_ENCODE = "Encoding"
PANEL_LOG = "Logging"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vidstyle {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
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
        stderr_console.print(f"[bold red]error:[/] {err}", markup=True, highlight=False)
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


@app.command()
def render(
    input_path: Annotated[
        Path, typer.Argument(metavar="INPUT", help="Video file to render.", show_default=False)
    ],
    style: Annotated[
        list[Path],
        typer.Option(
            "--style", "-s", help="Style image.", rich_help_panel=PANEL_IO, show_default=False
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output file [default: <stem>.<style>.mp4 beside the input].",
            rich_help_panel=PANEL_IO,
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[
        bool | None,
        typer.Option(
            "--overwrite/--no-overwrite",
            help="Replace an existing output instead of skipping it.",
            rich_help_panel=PANEL_IO,
            show_default=False,
        ),
    ] = None,
    max_frames: Annotated[
        int | None,
        typer.Option(
            help="Render only the first N frames (audio trimmed to match), for previews.",
            rich_help_panel=PANEL_IO,
            show_default=False,
        ),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            help="Long side of the rendered frames in pixels (never upscaled) [preset].",
            rich_help_panel=PANEL_IO,
            show_default=False,
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Preset from configs/: " + ", ".join(preset_names()) + " [default: quality].",
            rich_help_panel=PANEL_MODE,
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="TOML file of settings (overrides the preset; options override it).",
            rich_help_panel=PANEL_MODE,
            show_default=False,
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(help="quality | fast.", rich_help_panel=PANEL_MODE, show_default=False),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            help="auto | cpu | cuda | cuda:N.", rich_help_panel=PANEL_MODE, show_default=False
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Random seed (same command, same device → same output).",
            rich_help_panel=PANEL_MODE,
            show_default=False,
        ),
    ] = None,
    content_weight: Annotated[
        float | None, typer.Option(rich_help_panel=PANEL_QUALITY, show_default=False)
    ] = None,
    style_weight: Annotated[
        float | None, typer.Option(rich_help_panel=PANEL_QUALITY, show_default=False)
    ] = None,
    tv_weight: Annotated[
        float | None, typer.Option(rich_help_panel=PANEL_QUALITY, show_default=False)
    ] = None,
    style_scale: Annotated[
        float | None,
        typer.Option(
            help="Style image long side relative to the frame's.",
            rich_help_panel=PANEL_QUALITY,
            show_default=False,
        ),
    ] = None,
    optimizer: Annotated[
        str | None,
        typer.Option(help="lbfgs | adam.", rich_help_panel=PANEL_QUALITY, show_default=False),
    ] = None,
    learning_rate: Annotated[
        float | None,
        typer.Option(help="Adam step size.", rich_help_panel=PANEL_QUALITY, show_default=False),
    ] = None,
    first_init: Annotated[
        str | None,
        typer.Option(
            help="Start of frame 1: content | noise.",
            rich_help_panel=PANEL_QUALITY,
            show_default=False,
        ),
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            help="Start of later frames: prev (previous output) | content (independent frames).",
            rich_help_panel=PANEL_QUALITY,
            show_default=False,
        ),
    ] = None,
    first_iterations: Annotated[
        int | None,
        typer.Option(
            help="Iteration budget of frame 1.", rich_help_panel=PANEL_QUALITY, show_default=False
        ),
    ] = None,
    iterations: Annotated[
        int | None,
        typer.Option(
            help="Iteration budget of later (warm-started) frames.",
            rich_help_panel=PANEL_QUALITY,
            show_default=False,
        ),
    ] = None,
    stop_tolerance: Annotated[
        float | None,
        typer.Option(
            help="Early stop: relative loss change below this ...",
            rich_help_panel=PANEL_QUALITY,
            show_default=False,
        ),
    ] = None,
    stop_window: Annotated[
        int | None,
        typer.Option(
            help="... over this many iterations.", rich_help_panel=PANEL_QUALITY, show_default=False
        ),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            help="auto | pretrained | random.", rich_help_panel=PANEL_FEATURES, show_default=False
        ),
    ] = None,
    vgg_weights: Annotated[
        Path | None,
        typer.Option(
            help="VGG-19 checkpoint (torchvision or Caffe layout).",
            rich_help_panel=PANEL_FEATURES,
            show_default=False,
        ),
    ] = None,
    pooling: Annotated[
        str | None,
        typer.Option(help="max | avg.", rich_help_panel=PANEL_FEATURES, show_default=False),
    ] = None,
    codec: Annotated[
        str | None,
        typer.Option(
            help="libx264 | libx265 | libvpx-vp9 | libsvtav1.",
            rich_help_panel=PANEL_ENCODE,
            show_default=False,
        ),
    ] = None,
    crf: Annotated[
        int | None,
        typer.Option(
            help="Constant rate factor (lower is better).",
            rich_help_panel=PANEL_ENCODE,
            show_default=False,
        ),
    ] = None,
    encoder_preset: Annotated[
        str | None,
        typer.Option(
            help="Encoder speed preset (e.g. medium).",
            rich_help_panel=PANEL_ENCODE,
            show_default=False,
        ),
    ] = None,
    audio: Annotated[
        bool | None,
        typer.Option(
            "--audio/--no-audio",
            help="Copy the source's audio streams.",
            rich_help_panel=PANEL_ENCODE,
            show_default=False,
        ),
    ] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Render INPUT in the style of --style (the default command: `render` may be left out)."""
    setup_logging(_verbosity(quiet, verbose))
    overrides: dict[str, Any] = {
        "overwrite": overwrite,
        "max_frames": max_frames,
        "size": size,
        "mode": mode,
        "device": device,
        "seed": seed,
        "content_weight": content_weight,
        "style_weight": style_weight,
        "tv_weight": tv_weight,
        "style_scale": style_scale,
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "first_init": first_init,
        "init": init,
        "first_iterations": first_iterations,
        "iterations": iterations,
        "stop_tolerance": stop_tolerance,
        "stop_window": stop_window,
        "features": features,
        "vgg_weights": vgg_weights,
        "pooling": pooling,
        "codec": codec,
        "crf": crf,
        "encoder_preset": encoder_preset,
        "audio": audio,
    }
    with _user_errors():
        # Imported here so `vidstyle --help` does not pay for importing torch.
        from vidstyle.pipeline import stylize_video

        settings = resolve_settings(preset=preset, config_file=config, overrides=overrides)
        result = stylize_video(
            input_path, style, settings, output=output, progress=ProgressBar(enabled=not quiet)
        )
        if result.status == "rendered":
            typer.echo(str(result.output))


@app.command()
def weights(
    vgg_weights: Annotated[
        Path | None,
        typer.Option(help="Check this checkpoint instead of the usual places.", show_default=False),
    ] = None,
) -> None:
    """Show which VGG-19 weights would be used and where they are looked for."""
    setup_logging(0)
    with _user_errors():
        from vidstyle.nets.vgg import describe_weights

        for line in describe_weights(vgg_weights):
            typer.echo(line)


def _subcommands() -> set[str]:
    return {
        command.name or command.callback.__name__
        for command in app.registered_commands
        if command.callback is not None
    }


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`vidstyle`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] not in _subcommands() and args[0] not in ("-h", "--help", "--version"):
        args.insert(0, "render")
    app(args=args, prog_name="vidstyle")
