"""`--help` that reads well in any terminal (part of the command line layer, with `vidstyle.cli`).

Typer's rich help lays options out as a table of four columns; in a terminal narrower than
`WIDE_HELP_COLUMNS` the table cuts option names and help with "…" and breaks choice lists
mid-word. There the help is printed as a plain listing instead, grouped by the same panels, as
git and ffmpeg print theirs: each option on a line of its own, its help wrapped below it.
The usage line reads `vidstyle render [OPTIONS] INPUT...` in both layouts.
"""

from __future__ import annotations

import shutil
import textwrap
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand

# Below this many columns the plain layout is used (the rich table needs about this many for
# the longest option names, their negative forms and a choice list beside the help).
WIDE_HELP_COLUMNS = 120
_HELP_INDENT = 8
_DEFAULT_PANEL = "Options"


def _unescape(text: str) -> str:
    """Help strings escape `[` for rich (`\\[default: ...]`); plain text shows it as is."""
    return text.replace("\\[", "[")


def _usage_piece(param: Any) -> str:
    name = param.metavar or param.name.upper()
    if param.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name if param.required else f"[{name}]"


def _declaration(param: Any) -> str:
    """`-s, --style IMAGE`, `--overwrite / --no-overwrite`, `--mode [quality|fast]`."""
    names = sorted(param.opts, key=lambda opt: opt.startswith("--"))  # short ones first
    text = ", ".join(names)
    if param.secondary_opts:
        text += " / " + ", ".join(param.secondary_opts)
    if not getattr(param, "is_flag", False) and not getattr(param, "count", False):
        text += f" {param.metavar or 'VALUE'}"
    return text


def _with_default(param: Any) -> str:
    """The help, and the default where typer would show it (the generated options write
    theirs into the help)."""
    text = param.help or ""
    default = param.default
    shown = param.show_default and default not in (None, False, (), [])
    if shown and not getattr(param, "is_flag", False) and "[default:" not in text:
        text += f" [default: {default}]"
    return text


def _wrap(text: str, width: int) -> list[str]:
    indent = " " * _HELP_INDENT
    return textwrap.wrap(
        _unescape(" ".join(text.split())),
        width=max(width - 1, _HELP_INDENT + 20),
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def plain_help(command: TyperCommand, ctx: typer.Context, width: int) -> str:
    """The command's help as plain lines no wider than `width` (bar a word longer than it)."""
    lines = [f"Usage: {ctx.command_path} {' '.join(command.collect_usage_pieces(ctx))}", ""]
    if command.help:
        lines += textwrap.wrap(" ".join(command.help.split()), width=width - 1)
        lines.append("")
    arguments = [p for p in command.get_params(ctx) if isinstance(p, TyperArgument)]
    if arguments:
        lines.append("Arguments:")
        for param in arguments:
            lines.append(f"  {_usage_piece(param).strip('[]')}")
            lines += _wrap(param.help or "", width)
        lines.append("")
    panels: dict[str, list[str]] = {}
    for param in command.get_params(ctx):
        if isinstance(param, TyperArgument) or getattr(param, "hidden", False):
            continue
        record = panels.setdefault(getattr(param, "rich_help_panel", None) or _DEFAULT_PANEL, [])
        record.append(f"  {_declaration(param)}")
        record += _wrap(_with_default(param), width)
    for panel, entries in panels.items():
        lines += [f"{panel}:", *entries, ""]
    return "\n".join(lines).rstrip() + "\n"


class HelpCommand(TyperCommand):
    """A typer command whose usage line names its arguments plainly (`INPUT...`, not typer's
    `{INPUT...}...`) and whose help is the plain listing in a narrow terminal."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [
            _usage_piece(param)
            for param in self.get_params(ctx)
            if isinstance(param, TyperArgument)
        ]

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        formatter.write_usage(ctx.command_path, " ".join(self.collect_usage_pieces(ctx)))

    def format_help(self, ctx: Any, formatter: Any) -> None:
        width = shutil.get_terminal_size().columns  # $COLUMNS first, as rich reads it
        if width >= WIDE_HELP_COLUMNS:
            super().format_help(ctx, formatter)
            return
        typer.echo(plain_help(self, ctx, width), nl=False)
