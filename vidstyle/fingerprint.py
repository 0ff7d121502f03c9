"""Fingerprints: what decides a result, as strings, so that earlier work is reused only when it
is what the same command would make again.

A render's fingerprint is kept in its work folder (`vidstyle.render.workdir`: progress is resumed
only under the same one) and in the finished file's metadata (`vidstyle.render.provenance`: an
output made with other settings is stale); a training run's is kept in its checkpoint
(`vidstyle train` resumes only the same run). Each names its parts, so a refusal can say what
changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from vidstyle import __version__
from vidstyle.config import RenderSettings, TrainSettings


def _excluded(settings_class: type) -> frozenset[str]:
    """The settings whose change keeps earlier work (`setting(..., fingerprint=False)`): a
    render's that change no output pixel, a training run's that change only its length or
    where it runs."""
    return frozenset(
        field.name
        for field in dataclasses.fields(settings_class)
        if not field.metadata["fingerprint"]
    )


_RENDER_EXCLUDED = _excluded(RenderSettings)
_TRAINING_EXCLUDED = _excluded(TrainSettings)


def file_digest(path: Path, length: int = 32) -> str:
    """The first `length` hex digits of the file's SHA-256 (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def content_id(path: Path) -> str:
    """A file by its contents: a re-exported image under the same name is another image."""
    return f"{path.name} sha256:{file_digest(path)}"


def size_and_time(path: Path) -> str:
    """A file by size and modification time, for files too large to hash every run (a long
    video, a model or VGG checkpoint of hundreds of MB)."""
    stat = path.stat()
    return f"{stat.st_size} bytes, mtime {stat.st_mtime_ns}"


def settings_values(settings: object, exclude: Collection[str]) -> dict[str, str]:
    """Every field of a settings dataclass but `exclude`, so a setting added later is covered
    without anyone remembering to add it here."""
    return {
        field.name: repr(getattr(settings, field.name))
        for field in dataclasses.fields(settings)  # type: ignore[arg-type]
        if field.name not in exclude
    }


def differences(
    old: Mapping[str, str], new: Mapping[str, str], ignore: Collection[str] = ()
) -> list[str]:
    """The names of the parts that differ (or that only one has), sorted."""
    keys = (set(old) | set(new)) - set(ignore)
    return sorted(key for key in keys if old.get(key) != new.get(key))


def render_fingerprint(
    input_path: Path,
    styles: Sequence[Path],
    settings: RenderSettings,
    *,
    files: Sequence[Path] = (),
    features: str | None = None,
    precision: str | None = None,
) -> dict[str, str]:
    """Everything that decides a render's pixels.

    The input by name, size and time; style images by content; other files the settings
    name (`files`, see `settings_files`) by size and time; the VGG features actually used
    (`features="auto"` falls back to random weights offline, and finds pretrained ones once
    they are downloaded); the precision the network runs in (`precision = auto` is chosen
    on the machine at hand); every setting except those that change no pixel.
    """
    result = {
        "vidstyle": __version__,
        "input": f"{input_path.name} {size_and_time(input_path)}",
    }
    for i, style in enumerate(styles):
        result[f"style {i + 1}"] = content_id(style)
    for path in files:
        result[f"file {path.name}"] = size_and_time(path)
    if features is not None:
        result["features in use"] = features
    if precision is not None:
        result["precision in use"] = precision
    result.update(settings_values(settings, _RENDER_EXCLUDED))
    return result


def settings_files(settings: RenderSettings) -> list[Path]:
    """Files the settings name whose contents decide the pixels: the fast-mode model, and an
    explicit VGG checkpoint."""
    files = []
    if settings.mode == "fast" and settings.model:
        from vidstyle.nets.models import resolve_model  # fast mode only

        files.append(resolve_model(settings.model, settings.models_dir))
    if settings.vgg_weights and settings.mode == "quality":
        files.append(Path(settings.vgg_weights))
    return [path for path in files if path.is_file()]


def training_fingerprint(
    settings: TrainSettings, style: Path, data: Sequence[Path], loss_network: str
) -> dict[str, str]:
    """What identifies a training run: the style image by content, the data by where it is,
    the loss network actually built, and every setting but the run's length and device."""
    result = {
        "style": content_id(style),
        "data": repr([str(Path(path).resolve()) for path in data]),
        "loss network": loss_network,
    }
    result.update(settings_values(settings, _TRAINING_EXCLUDED))
    return result
