"""`vidstyle sheet`: one frame of a video in every combination of styles, settings and models,
as one labelled PNG grid, to choose a render's options by eye.

Each picture is the frame rendered as the first frame of a shot is (quality mode's frame-1
budget with the chosen preset, or a model's network), so a render with the options printed
under it looks the same; later frames of a render are warm-started from it.

Layout: the first row holds the source frame, then one picture per `--model`; each style has a
row of its own, its style image first, then one picture per combination of the `--vary`
values. Under each picture are the options that made it, as a render command takes them
(`-s A.jpg --style-weight 5`), and the seconds it took; the options all pictures share head the
sheet.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vidstyle.atomic import output_error, write_atomically
from vidstyle.config import (
    COMMAND_LINE,
    DEFAULT_PRESET,
    RenderSettings,
    option_name,
    resolve_settings,
    validate_layer,
)
from vidstyle.errors import ConfigError, InputError
from vidstyle.media.frames import plan_size
from vidstyle.media.output import check_output_writable
from vidstyle.media.probe import probe
from vidstyle.media.reader import read_frames
from vidstyle.media.still import image_size, is_still_image, read_image
from vidstyle.render.threads import render_threads

log = logging.getLogger(__name__)

_SPECS = {option_name(spec): spec for spec in RenderSettings.__dataclass_fields__.values()}
# Settings a sheet decides itself: each picture's mode and model, and the output it writes.
_NOT_VARIED = frozenset({"mode", "model", "overwrite", "resume", "split", "max-frames"})


@dataclass(frozen=True)
class Cell:
    """One picture of the sheet: the options that make it, as typed, and its settings."""

    options: tuple[str, ...]  # e.g. ("-s", "A.jpg", "--style-weight", "5")
    settings: RenderSettings
    styles: tuple[Path, ...] = ()
    row: int = 0
    column: int = 0


@dataclass
class CellResult:
    cell: Cell
    image: np.ndarray
    seconds: float
    device: str


# ------------------------------------------------------------------------------------- options


def parse_vary(values: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """`--vary style-weight=1,2,5` → [("style-weight", ["1", "2", "5"])], each value checked as
    the command line checks it; ConfigError naming the --vary value otherwise."""
    parsed: list[tuple[str, list[Any]]] = []
    for text in values:
        key, sep, rest = text.partition("=")
        key = key.strip().removeprefix("--").replace("_", "-")
        if not sep or not rest.strip():
            raise ConfigError(f"--vary {text!r}: write OPTION=VALUE,VALUE (style-weight=1,2,5)")
        if key not in _SPECS or key in _NOT_VARIED:
            raise ConfigError(f"--vary {text!r}: {key!r} is not a render setting a sheet varies")
        if _SPECS[key].metadata["items"]:
            raise ConfigError(
                f"--vary {text!r}: a list setting takes one value per sheet; set it with "
                "--config FILE"
            )
        choices: list[Any] = [value.strip() for value in rest.split(",")]
        if _SPECS[key].metadata["kind"] is bool:
            choices = [_flag_value(key, value) for value in choices]
        for value in choices:
            validate_layer({key: value}, COMMAND_LINE)  # `--style-weight x`: the usual error
        if any(key == other for other, _ in parsed):
            raise ConfigError(f"--vary names {key} twice; give all its values in one --vary")
        parsed.append((key, choices))
    return parsed


_TRUE, _FALSE = ("on", "true", "yes", "1"), ("off", "false", "no", "0")


def _flag_value(key: str, text: str) -> bool:
    """`--vary coarse-to-fine=on,off`: a flag's values."""
    if text.lower() in _TRUE + _FALSE:
        return text.lower() in _TRUE
    raise ConfigError(f"--vary {key}: {text!r} is not on or off")


def parse_time(text: str) -> float:
    """Seconds from `12.5`, `1:02.5` or `0:01:02.5`."""
    try:
        seconds = 0.0
        for part in text.strip().split(":"):
            seconds = seconds * 60 + float(part)
    except ValueError:
        raise ConfigError(f"--at {text!r}: give seconds (12.5) or [HH:]MM:SS(.s)") from None
    if seconds < 0:
        raise ConfigError(f"--at {text!r}: a time before the start")
    return seconds


def _typed(options: Mapping[str, Any]) -> tuple[str, ...]:
    """Options as a render command takes them: `--style-weight 5`, a flag as `--x`/`--no-x`."""
    typed: list[str] = []
    for key, value in options.items():
        if isinstance(value, bool):
            typed.append(f"--{key}" if value else f"--no-{key}")
        else:
            typed += [f"--{key}", str(value)]
    return tuple(typed)


def plan_cells(
    styles: Sequence[Path],
    models: Sequence[str],
    vary: Sequence[tuple[str, list[Any]]],
    *,
    preset: str | None,
    config: Path | None,
    overrides: Mapping[str, Any],
) -> list[Cell]:
    """Every picture: each style in every combination of the varied values (quality mode, the
    chosen preset), then each model (fast mode, the same preset: the same size)."""
    preset = preset or DEFAULT_PRESET
    combos = [dict(zip([k for k, _ in vary], values, strict=True)) for values in _product(vary)]
    cells: list[Cell] = []
    for row, style in enumerate(styles, start=1):
        for column, combo in enumerate(combos, start=1):
            settings = resolve_settings(
                preset, config, {**overrides, **_keys(combo), "mode": "quality", "model": None}
            )
            options = ("-s", str(style), *_typed(combo))  # the path as given: to copy
            cells.append(Cell(options, settings, (style,), row, column))
    for column, model in enumerate(models, start=1):
        settings = resolve_settings(preset, config, {**overrides, "mode": "fast", "model": model})
        cells.append(Cell(("--model", model), settings, (), 0, column))
    return cells


def _product(vary: Sequence[tuple[str, list[Any]]]) -> list[tuple[Any, ...]]:
    return list(itertools.product(*[values for _, values in vary])) if vary else [()]


def _keys(options: Mapping[str, Any]) -> dict[str, Any]:
    return {key.replace("-", "_"): value for key, value in options.items()}


# --------------------------------------------------------------------------------- the frame


@dataclass(frozen=True)
class SourcePictures:
    """The chosen frame: at its own size (shown first on the sheet), and at each picture's size
    decoded and scaled as a render decodes and scales it."""

    frame: np.ndarray
    label: str  # "frame 12 (0.50 s)"
    pictures: tuple[np.ndarray, ...]  # one per cell


def source_pictures(
    path: Path, cells: Sequence[Cell], *, at: float | None, frame: int | None
) -> SourcePictures:
    """The frame numbered `frame` (from 0), else the one on screen at `at` seconds, else the
    middle one; a still image is the picture itself."""
    if not path.exists():
        raise InputError("file not found; check the path", path)
    if is_still_image(path):
        image = read_image(path)
        source = (image.shape[1], image.shape[0])
        pictures = tuple(_resized(image, image_size(source, c.settings.size)) for c in cells)
        return SourcePictures(image, "the image", pictures)
    info = probe(path)
    index = frame
    if index is None and at is None:
        index = (info.frame_count or 1) // 2
    full, index, label = _decode_frame(info, None, index=index, at=at)
    by_size: dict[tuple[int, int], np.ndarray] = {}
    for cell in cells:
        size, _ = plan_size(info.size, cell.settings.size)
        if size not in by_size:
            by_size[size] = _decode_frame(info, size, index=index)[0]
    sizes = [plan_size(info.size, cell.settings.size)[0] for cell in cells]
    return SourcePictures(full, label, tuple(by_size[size] for size in sizes))


def _decode_frame(
    info: Any, size: tuple[int, int] | None, *, index: int | None, at: float | None = None
) -> tuple[np.ndarray, int, str]:
    """Frame `index` (or the one on screen at `at`) decoded at `size` as a render decodes it."""
    stop = None if index is None else index + 1
    for decoded in read_frames(info, size=size, max_frames=stop):
        seconds = float(decoded.pts * info.time_base) - info.start_time
        if at is not None:
            # The frame on screen at `at`: the last one starting at or before it.
            if seconds + float(1 / info.fps) > at + 1e-6:
                return decoded.image, decoded.index, f"frame {decoded.index} ({seconds:.2f} s)"
        elif decoded.index == index:
            return decoded.image, decoded.index, f"frame {decoded.index} ({seconds:.2f} s)"
    where = f"--at {at:g}" if at is not None else f"--frame {index}"
    raise ConfigError(f"{info.path} ends before {where}; choose an earlier frame")


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A still image at `size`, scaled as the render of a still image scales it."""
    if size == (image.shape[1], image.shape[0]):
        return image
    picture = Image.fromarray(image).resize(size, Image.Resampling.LANCZOS)
    return np.asarray(picture, dtype=np.uint8)


# -------------------------------------------------------------------------------- rendering


def render_cell(cell: Cell, picture: np.ndarray, threads: int | None) -> CellResult:
    """One picture, on the cell's device (run in a worker process with --jobs)."""
    import torch  # here: the sheet's planning and drawing need no torch

    from vidstyle.device import resolve_device, torch_threads
    from vidstyle.render.pipeline import build_stages, stylize_picture

    with torch_threads(threads or None):
        device = resolve_device(cell.settings.device)
        torch.manual_seed(cell.settings.seed)
        started = time.perf_counter()
        size = (picture.shape[1], picture.shape[0])
        stages = build_stages(cell.settings, device, cell.styles, size)
        image = stylize_picture(stages, picture)
        return CellResult(cell, image, time.perf_counter() - started, str(device))


def _worker_setup(level: int) -> None:
    logging.getLogger("vidstyle").setLevel(level)


def render_cells(
    cells: Sequence[Cell],
    pictures: Sequence[np.ndarray],
    *,
    jobs: int,
    on_done: Callable[[CellResult, int], None],
) -> list[CellResult]:
    """Every cell, `jobs` at a time in worker processes (each with a share of the cores), in
    the order given; `on_done(result, number_done)` as each finishes."""
    devices = [d.strip() for d in cells[0].settings.device.split(",")] if cells else ["auto"]
    # `--threads`, else the machine's cores (shared by the worker processes).
    threads = render_threads(cells[0].settings.threads if cells else None, renders=jobs)
    if jobs <= 1:
        results = []
        for number, (cell, picture) in enumerate(zip(cells, pictures, strict=True), start=1):
            result = render_cell(_on(cell, devices[0]), picture, threads)
            on_done(result, number)
            results.append(result)
        return results
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger("vidstyle").getEffectiveLevel()
    with ProcessPoolExecutor(jobs, context, initializer=_worker_setup, initargs=(level,)) as pool:
        futures = [
            pool.submit(render_cell, _on(cell, devices[i % len(devices)]), picture, threads)
            for i, (cell, picture) in enumerate(zip(cells, pictures, strict=True))
        ]
        order = {future: i for i, future in enumerate(futures)}
        results: list[CellResult | None] = [None] * len(futures)
        for number, future in enumerate(as_completed(futures), start=1):
            result = future.result()  # a failed picture fails the sheet, as a render would
            on_done(result, number)
            results[order[future]] = result
    return [result for result in results if result is not None]


def _on(cell: Cell, device: str) -> Cell:
    return Cell(
        cell.options, cell.settings.replace(device=device), cell.styles, cell.row, cell.column
    )


# --------------------------------------------------------------------------------- drawing

_MARGIN = 8
_FONT_SIZE = 13
_BACKGROUND = (255, 255, 255)
_TEXT = (20, 20, 20)
_NOTE = (110, 110, 110)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=_FONT_SIZE)
    except TypeError:  # Pillow before 10.1: a fixed bitmap font
        return ImageFont.load_default()


_KEEP = "\u00a0"  # joins an option to its value, so a label never breaks between them


def _joined(options: Sequence[str]) -> str:
    """`-s A.jpg --style-weight 5` with each option bound to its value for `_wrap`."""
    words: list[str] = []
    for word in options:
        if (
            words
            and words[-1].startswith("-")
            and _KEEP not in words[-1]
            and not (word.startswith("-") and not _is_number(word))
        ):
            words[-1] += _KEEP + word
        else:
            words.append(word)
    return " ".join(words)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _wrap(text: str, font: Any, width: int) -> list[str]:
    """Lines of `text` no wider than `width` pixels, broken between words (a word longer than
    the width, a long path, is broken where it must be)."""
    lines: list[str] = []
    for word in text.split(" "):
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(candidate) <= width:
            lines[-1] = candidate
            continue
        while font.getlength(word) > width and len(word) > 1:
            cut = max(1, int(len(word) * width / font.getlength(word)))
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines


def _fit(image: Image.Image, box: tuple[int, int]) -> Image.Image:
    """`image` scaled to fit `box`, aspect kept (a style image beside the pictures)."""
    scale = min(box[0] / image.width, box[1] / image.height, 1.0)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS) if size != image.size else image


def draw_sheet(
    frame: np.ndarray,
    frame_label: str,
    results: Sequence[CellResult],
    styles: Sequence[Path],
    header: str,
) -> Image.Image:
    """The grid: source and models in the first row, a row per style (its image, then its
    pictures), each with its label below it; `header` above all."""
    font = _font()
    line = _FONT_SIZE + 4
    pictures = [Image.fromarray(r.image) for r in results]
    # Every picture in a box of the largest picture's size (the source and the style images
    # fitted into it), so the source is seen at the size the pictures were rendered at.
    box_w = max([p.width for p in pictures], default=min(frame.shape[1], 256))
    box_h = max([p.height for p in pictures], default=min(frame.shape[0], 256))
    source = _fit(Image.fromarray(frame), (box_w, box_h))
    entries: dict[tuple[int, int], tuple[Image.Image, list[tuple[str, tuple[int, int, int]]]]] = {
        (0, 0): (source, [(f"source: {frame_label}", _TEXT)])
    }
    for row, style in enumerate(styles, start=1):
        thumbnail = _fit(Image.open(style).convert("RGB"), (box_w, box_h))
        entries[(row, 0)] = (thumbnail, [(f"style image {style.name}", _NOTE)])
    for result, picture in zip(results, pictures, strict=True):
        label = [(_joined(result.cell.options), _TEXT)]
        label.append((f"{result.seconds:.1f} s on {result.device}", _NOTE))
        entries[(result.cell.row, result.cell.column)] = (picture, label)
    wrapped = {
        key: [
            (text_line, colour) for text, colour in label for text_line in _wrap(text, font, box_w)
        ]
        for key, (_, label) in entries.items()
    }
    label_h = max(len(lines) for lines in wrapped.values()) * line
    rows = 1 + max(row for row, _ in entries)
    columns = 1 + max(column for _, column in entries)
    header_lines = _wrap(header, font, columns * (box_w + _MARGIN) - _MARGIN)
    top = _MARGIN + len(header_lines) * line + _MARGIN
    width = _MARGIN + columns * (box_w + _MARGIN)
    height = top + rows * (box_h + label_h + _MARGIN)
    sheet = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for i, text in enumerate(header_lines):
        draw.text((_MARGIN, _MARGIN + i * line), text.replace(_KEEP, " "), fill=_TEXT, font=font)
    for (row, column), (picture, _) in entries.items():
        x = _MARGIN + column * (box_w + _MARGIN)
        y = top + row * (box_h + label_h + _MARGIN)
        sheet.paste(picture, (x + (box_w - picture.width) // 2, y + (box_h - picture.height) // 2))
        for i, (text, colour) in enumerate(wrapped[(row, column)]):
            draw.text(
                (x, y + box_h + 2 + i * line), text.replace(_KEEP, " "), fill=colour, font=font
            )
    return sheet


def save_sheet(sheet: Image.Image, path: Path) -> None:
    """Write the PNG atomically (nothing under `path` unless complete)."""
    if path.suffix.lower() != ".png":
        raise ConfigError("a contact sheet is a PNG; name it .png", path)
    check_output_writable(path)
    try:
        write_atomically(path, lambda file: sheet.save(file, format="PNG", optimize=True))
    except OSError as err:
        raise output_error(err, path) from err


# ----------------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class SheetResult:
    path: Path
    cells: tuple[CellResult, ...]
    seconds: float


def make_sheet(
    source: Path,
    output: Path,
    *,
    styles: Sequence[Path],
    models: Sequence[str],
    vary: Sequence[str],
    at: str | None,
    frame: int | None,
    preset: str | None,
    config: Path | None,
    overrides: Mapping[str, Any],
    jobs: int,
) -> SheetResult:
    """Plan, check, render and draw a contact sheet of `source` (see the module's notes)."""
    if not styles and not models:
        raise ConfigError("a sheet needs at least one --style IMAGE or --model NAME")
    if at is not None and frame is not None:
        raise ConfigError("--at and --frame both choose the frame; give one")
    if frame is not None and frame < 0:
        raise ConfigError(f"--frame must be at least 0 (got {frame})")
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1 (got {jobs})")
    cells = plan_cells(
        styles, models, parse_vary(vary), preset=preset, config=config, overrides=overrides
    )
    _check(cells, output)
    chosen = source_pictures(
        source, cells, at=parse_time(at) if at is not None else None, frame=frame
    )
    picture, frame_label, pictures = chosen.frame, chosen.label, chosen.pictures
    log.info(
        "%s: %s, %d picture(s), %d at a time",
        source,
        frame_label,
        len(cells),
        min(jobs, len(cells)),
    )
    started = time.perf_counter()

    def done(result: CellResult, number: int) -> None:
        log.info(
            "%d/%d %s: %.1f s on %s",
            number,
            len(cells),
            " ".join(result.cell.options),
            result.seconds,
            result.device,
        )

    results = render_cells(cells, pictures, jobs=jobs, on_done=done)
    common = _joined(common_options(preset, overrides).split(" "))
    header = f"vidstyle sheet {source.name}, {frame_label}; every picture: {common}"
    sheet = draw_sheet(picture, frame_label, results, styles, header)
    save_sheet(sheet, output)
    return SheetResult(output, tuple(results), time.perf_counter() - started)


def common_options(preset: str | None, overrides: Mapping[str, Any]) -> str:
    """The options every picture shares, as a render command takes them: the preset and the
    settings given for the whole sheet (the mode follows from -s or --model)."""
    given = {k.replace("_", "-"): v for k, v in overrides.items() if v is not None}
    return " ".join(_typed({"preset": preset or DEFAULT_PRESET, **given}))


def _check(cells: Sequence[Cell], output: Path) -> None:
    """What a render checks before its first frame: style images, models, VGG weights, and
    the output's folder, once each."""
    from vidstyle.render.prepare import check_mode_inputs
    from vidstyle.stylize.style_image import load_style_image

    seen: set[tuple[str, tuple[Path, ...]]] = set()
    for cell in cells:
        key = (cell.settings.model or "", cell.styles)
        if key not in seen:
            seen.add(key)
            check_mode_inputs(cell.settings, cell.styles)
            for style in cell.styles:
                load_style_image(style)
    if output.suffix.lower() != ".png":
        raise ConfigError("a contact sheet is a PNG; name it .png", output)
    check_output_writable(output)
