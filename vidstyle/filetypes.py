"""Which files are taken for videos and images by their extension: one list for rendering
(folders given to `vidstyle render`) and for training (`vidstyle train --data`). No imports
beyond the standard library, so `--help` can show the list cheaply."""

from __future__ import annotations

from pathlib import Path

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


# Leading bytes of files users mistake for a checkpoint (a style image, a clip), and what they are.
_MEDIA_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"\x89PNG", "a PNG image"),
    (0, b"GIF8", "a GIF image"),
    (8, b"WEBP", "a WebP image"),
    (0, b"BM", "a BMP image"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (4, b"ftyp", "an MP4/MOV video"),
    (0, b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"),
    (0, b"RIFF", "a RIFF file (AVI video or WAV audio)"),
)


def _head(path: Path, size: int = 16) -> bytes | None:
    try:
        with Path(path).open("rb") as file:
            return file.read(size)
    except OSError:
        return None


def recognised_media(path: Path) -> str | None:
    """What `path` is ("a PNG image") when its first bytes say it is an image or a video."""
    head = _head(path)
    if head is None:
        return None
    for offset, magic, kind in _MEDIA_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    return None


def checkpoint_load_failure(exc: BaseException, path: Path) -> str:
    """Why `torch.load(path, weights_only=True)` failed, in words for a user (torch's own text
    runs to dozens of lines about a PyTorch 2.6 change that has nothing to do with their file)."""
    head = _head(path) or b""
    if not head:
        return "the file is empty"
    # torch.save writes a zip archive (PK); files from before PyTorch 1.6 are a pickle (0x80).
    if not head.startswith((b"PK", b"\x80")):
        return "not a PyTorch checkpoint (neither a zip archive nor a pickle)"
    if "Weights only load failed" in str(exc):
        return (
            "it holds pickled Python objects beyond tensors, which vidstyle does not load "
            "(a file could run code that way)"
        )
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
