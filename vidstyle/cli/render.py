"""`vidstyle render` (the default command): plan the batch, render it with its progress
display, print the summary, exit with the batch's code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from vidstyle.cli.app import PRESETS, Quiet, Verbose, app, user_errors, verbosity
from vidstyle.cli.help import HelpCommand
from vidstyle.cli.options import add_setting_options, settings_values
from vidstyle.config import (
    PANEL_BATCH,
    PANEL_IO,
    PANEL_MODE,
    RENDER_PANELS,
    RenderSettings,
    resolve_settings,
)
from vidstyle.console import BatchProgress, setup_logging, stderr_console
from vidstyle.errors import EXIT_INPUT_FAILED, EXIT_INTERRUPTED
from vidstyle.filetypes import VIDEO_EXTENSIONS

Inputs = Annotated[
    list[Path],
    typer.Argument(
        metavar="INPUT",
        help="Video files and/or folders of videos (folders need -o OUTDIR).",
        show_default=False,
    ),
]

Styles = Annotated[
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
]

Output = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        metavar="PATH",
        help="Output file \\[default: <stem>.<style>.mp4 beside the input].",
        rich_help_panel=PANEL_IO,
        show_default=False,
    ),
]

Preset = Annotated[
    str | None,
    typer.Option(
        help="Preset from configs/ \\[default: quality] (fast with --mode fast, or with "
        "--model and no --mode).",
        rich_help_panel=PANEL_MODE,
        show_default=False,
        metavar="[" + "|".join(PRESETS) + "]",
    ),
]

ConfigFile = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="TOML file of settings (overrides the preset; options override it).",
        rich_help_panel=PANEL_MODE,
        show_default=False,
    ),
]

Recursive = Annotated[
    bool,
    typer.Option(
        "--recursive", "-r", help="Search folders' subfolders too.", rich_help_panel=PANEL_BATCH
    ),
]

Extensions = Annotated[
    list[str] | None,
    typer.Option(
        "--ext",
        metavar="EXTS",
        help="Extensions taken for videos in folders, comma-separated or repeated "
        f"\\[default: {','.join(e.lstrip('.') for e in VIDEO_EXTENSIONS)}].",
        rich_help_panel=PANEL_BATCH,
        show_default=False,
    ),
]

NameTemplate = Annotated[
    str,
    typer.Option(
        "--name",
        metavar="TEMPLATE",
        help="Output name template: {stem} (input name), {style} (style or model name), "
        "{ext} (.mp4), {input_ext} (the input's extension); may include a subfolder.",
        rich_help_panel=PANEL_BATCH,
    ),
]

Jobs = Annotated[
    int,
    typer.Option(
        "--jobs",
        "-j",
        metavar="N",
        help="Videos rendered at once, in worker processes; with --device cuda:0,cuda:1 "
        "the workers take the devices in turn.",
        rich_help_panel=PANEL_BATCH,
    ),
]

Cluster = Annotated[
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
]

DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print the plan (input → output, render/skip, frames) and write nothing.",
        rich_help_panel=PANEL_BATCH,
    ),
]


@app.command(
    cls=HelpCommand,
    short_help="Render videos with --style IMAGE or --model M (the default command).",
)
@add_setting_options(RenderSettings, unset_default=True, presets=PRESETS, panel_order=RENDER_PANELS)
def render(
    input_paths: Inputs,
    style: Styles = None,
    output: Output = None,
    preset: Preset = None,
    config: ConfigFile = None,
    recursive: Recursive = False,
    ext: Extensions = None,
    name: NameTemplate = "{stem}.{style}{ext}",
    jobs: Jobs = 1,
    cluster: Cluster = None,
    dry_run: DryRun = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    **settings: Any,
) -> None:
    """Render videos in the style of --style, or with a trained --model (the default command:
    `render` may be left out). One INPUT file renders to <stem>.<style>.mp4 beside it, or to
    -o FILE; several inputs, several styles or folders render into -o OUTDIR (mirroring the
    folders' subfolders), skipping outputs that exist. An interrupted render resumes when the
    same command is run again."""
    setup_logging(verbosity(quiet, verbose))
    with user_errors():
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
