"""Which files are taken for videos and images by their extension: one list for rendering
(folders given to `vidstyle render`) and for training (`vidstyle train --data`). No imports
beyond the standard library, so `--help` can show the list cheaply."""

from __future__ import annotations

#: Extensions taken for videos when a folder is searched (`--ext` replaces the list for render).
VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".mpg",
    ".mpeg",
    ".ts",
    ".mts",
    ".m2ts",
    ".flv",
    ".wmv",
    ".3gp",
)
#: Extensions taken for still images in `vidstyle train --data` folders.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
