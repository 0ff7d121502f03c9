"""TOML reading for the tests on every Python vidstyle supports: the standard library's
`tomllib` from 3.11, its backport `tomli` (a dependency there) before."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["tomllib"]
