"""Command line: parse → settings → library call → exit code. The only package that imports typer.

- `commands`: the `vidstyle` app, its commands (render, weights, train, models, sheet, eval) and
  `main()`, which lets `vidstyle INPUT --style IMAGE` leave out the `render` word;
- `options`: command-line options generated from the settings' metadata;
- `help`: the help screen's layout; `reference`: configs/reference.toml, from the same metadata.
"""

from vidstyle.cli.commands import app, main

__all__ = ["app", "main"]
