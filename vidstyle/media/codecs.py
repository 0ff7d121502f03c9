"""Video codecs and containers: which encoders vidstyle configures, their quality and speed
options, and which codecs an output container can hold."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
from pathlib import Path

import av

from vidstyle.errors import ConfigError
from vidstyle.media.x264_asm import x264_asm_option

log = logging.getLogger(__name__)

#: Video encoders vidstyle knows how to configure.
VIDEO_CODECS: tuple[str, ...] = ("libx264", "libx265", "libvpx-vp9", "libsvtav1")
#: What ffmpeg users also call these codecs (`-c:v h264` picks FFmpeg's default encoder; here
#: the encoder is named), so `--codec h264` can suggest the name vidstyle takes.
CODEC_ALIASES: dict[str, str] = {
    "h264": "libx264",
    "avc": "libx264",
    "x264": "libx264",
    "hevc": "libx265",
    "h265": "libx265",
    "x265": "libx265",
    "vp9": "libvpx-vp9",
    "libvpx": "libvpx-vp9",
    "av1": "libsvtav1",
    "svtav1": "libsvtav1",
    "libaom-av1": "libsvtav1",
}
#: x264/x265 preset names, fastest first; mapped onto the other encoders' speed settings.
ENCODER_PRESETS: tuple[str, ...] = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
_CRF_RANGE: dict[str, tuple[int, int]] = {
    "libx264": (0, 51),
    "libx265": (0, 51),
    "libvpx-vp9": (0, 63),
    "libsvtav1": (1, 63),
}
# libvpx-vp9 (deadline, cpu-used) and SVT-AV1 preset numbers for each x264 preset name.
_VP9_SPEED: dict[str, tuple[str, int]] = {
    "ultrafast": ("realtime", 8),
    "superfast": ("realtime", 7),
    "veryfast": ("good", 5),
    "faster": ("good", 4),
    "fast": ("good", 3),
    "medium": ("good", 2),
    "slow": ("good", 1),
    "slower": ("good", 0),
    "veryslow": ("best", 0),
    "placebo": ("best", 0),
}
_SVTAV1_PRESET: dict[str, int] = {
    "ultrafast": 12,
    "superfast": 11,
    "veryfast": 10,
    "faster": 9,
    "fast": 8,
    "medium": 7,
    "slow": 5,
    "slower": 4,
    "veryslow": 2,
    "placebo": 1,
}
#: Output extensions and the FFmpeg muxer each is written with.
CONTAINER_FORMATS: dict[str, str] = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
}


def available_codecs() -> dict[str, bool]:
    """Which of the video encoders vidstyle supports this PyAV/FFmpeg build has."""
    return {name: name in av.codecs_available for name in VIDEO_CODECS}


# FFmpeg's mov muxer writes VP9 and AV1 only in MP4 mode and fails at the header otherwise,
# though avformat_query_codec does not rule them out for MOV.
_REFUSED_CODECS: dict[str, frozenset[str]] = {"mov": frozenset({"libvpx-vp9", "libsvtav1"})}


@functools.cache
def _container_codecs(fmt: str) -> frozenset[str]:
    out = av.open(io.BytesIO(), mode="w", format=fmt)
    try:
        return frozenset(out.supported_codecs) - _REFUSED_CODECS.get(fmt, frozenset())
    finally:
        with contextlib.suppress(Exception):
            out.close()


def check_container_holds(path: Path, codec: str) -> None:
    """Raise `ConfigError` if `path`'s container cannot hold `codec` video (a WebM file holds
    VP9 and AV1 only), so a render fails before its first frame rather than at the join."""
    fmt = container_format(path)
    if fmt is None or codec not in av.codecs_available:
        return  # VideoWriter names the extensions that work; encoder_options, the codecs
    supported = _container_codecs(fmt)
    if codec in supported:
        return
    fits = [name for name, ok in available_codecs().items() if ok and name in supported]
    hint = f"use --codec {' or '.join(fits)}, or " if fits else ""
    raise ConfigError(
        f"a {Path(path).suffix} file cannot hold {codec} video; {hint}another extension "
        "(.mkv holds all of them)",
        path,
    )


def _quiet_svt_av1() -> None:
    """SVT-AV1 prints a 20-line banner and its configuration to stderr, through its own logger
    rather than FFmpeg's; its `SVT_LOG` variable (1: errors only) silences it. The library reads
    it once per process, at the first encoder, so it is set before that; a value the user set
    is kept."""
    os.environ.setdefault("SVT_LOG", "1")


def encoder_options(codec: str, crf: int, preset: str) -> dict[str, str]:
    """FFmpeg options giving constant-quality encoding at `crf` and speed `preset`.

    `preset` is an x264 preset name (mapped onto libvpx-vp9's deadline/cpu-used and SVT-AV1's
    preset numbers) or, for libsvtav1, a number. Raises `ConfigError` for values the codec
    cannot take, or a codec this FFmpeg lacks.
    """
    if codec not in av.codecs_available:
        have = ", ".join(c for c, ok in available_codecs().items() if ok) or "none"
        raise ConfigError(
            f"video codec {codec!r} is not available in this FFmpeg build (available: {have})"
        )
    low, high = _CRF_RANGE.get(codec, (0, 63))
    if not low <= crf <= high:
        raise ConfigError(f"crf {crf} is out of range for {codec}; use {low}..{high}")
    if codec == "libsvtav1" and preset.isdigit():
        _quiet_svt_av1()
        return {"crf": str(crf), "preset": preset}
    if preset not in ENCODER_PRESETS:
        raise ConfigError(
            f"unknown encoder preset {preset!r}; use one of {', '.join(ENCODER_PRESETS)}"
        )
    if codec == "libx264":
        options = {"crf": str(crf), "preset": preset}
        asm = x264_asm_option()  # without AVX-512: the same frames, the same bytes
        if asm is not None:
            options["x264-params"] = f"asm={asm}"
        return options
    if codec == "libx265":
        # x265 prints a banner and statistics to stderr by default.
        return {"crf": str(crf), "preset": preset, "x265-params": "log-level=error"}
    if codec == "libvpx-vp9":
        deadline, cpu_used = _VP9_SPEED[preset]
        # b=0 with crf selects constant-quality mode; without it crf is only a cap.
        return {
            "crf": str(crf),
            "b": "0",
            "deadline": deadline,
            "cpu-used": str(cpu_used),
            "row-mt": "1",
        }
    if codec == "libsvtav1":
        _quiet_svt_av1()
        return {"crf": str(crf), "preset": str(_SVTAV1_PRESET[preset])}
    log.info("codec %s: crf and preset are not applied (unknown option names)", codec)
    return {}


#: `--codec auto`: the encoder a container usually holds, in order of preference (as ffmpeg
#: picks one when no -c:v is given): H.264 where it fits, VP9 (else AV1) for WebM.
AUTO_CODEC = "auto"
_DEFAULT_CODECS: dict[str, tuple[str, ...]] = {"webm": ("libvpx-vp9", "libsvtav1")}
_USUAL_CODECS = ("libx264", "libx265", "libvpx-vp9", "libsvtav1")


def output_codec(codec: str, path: Path) -> str:
    """The encoder a render to `path` uses: `codec` as given, or for `auto` the first usual
    encoder of `path`'s container this FFmpeg has (libx264 when none is available, so that
    `check_codec` says what is missing)."""
    if codec != AUTO_CODEC:
        return codec
    fmt = container_format(path)
    for name in _DEFAULT_CODECS.get(fmt or "", _USUAL_CODECS):
        if name in av.codecs_available:
            return name
    return _DEFAULT_CODECS.get(fmt or "", _USUAL_CODECS)[0]


def container_format(path: Path) -> str | None:
    """The FFmpeg muxer for `path`'s extension; None for one vidstyle does not know."""
    return CONTAINER_FORMATS.get(Path(path).suffix.lower())
