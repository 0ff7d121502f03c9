"""The `vidstyle` app: what every command shares (user errors → one line and an exit code,
-q/-v, the presets) and `main()`. `vidstyle INPUT --style IMAGE` works without a subcommand
word: `main()` inserts `render` when the first argument is not a known subcommand.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.text import Text

from vidstyle import __version__
from vidstyle.cli.options import PANEL_LOG
from vidstyle.config import load_preset, preset_names
from vidstyle.console import debug_enabled, stderr_console
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
def user_errors() -> Iterator[None]:
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


def verbosity(quiet: bool, verbose: bool) -> int:
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


PRESETS = {name: load_preset(name) for name in preset_names()}  # per-preset defaults in --help


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
