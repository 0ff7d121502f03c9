"""Command line: parse → settings → library call → exit code. The only package that imports typer.

- `app`: the `vidstyle` app, what its commands share, and `main()`;
- `render`: `vidstyle render`, the default command (batch, progress display, summary);
- `commands`: `weights`, `train`, `models`, `sheet` and `eval`;
- `options`: command-line options generated from the settings' metadata;
- `help`: the help screen's layout; `reference`: configs/reference.toml, from the same metadata.
"""

# The commands register on `app` when imported, in the order `--help` lists them: render (the
# default command) first.
import vidstyle.cli.render  # noqa: F401
from vidstyle.cli import commands  # noqa: F401
from vidstyle.cli.app import app, main

__all__ = ["app", "main"]
