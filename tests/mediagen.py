"""Test media factory: small videos and images whose content (and motion) is known exactly.

Every test makes its own media with these helpers; nothing is downloaded. Frames are smooth
colour textures (sums of seeded sinusoids) so optical flow has gradients to lock onto and chroma
subsampling barely changes them, and video is encoded (near-)losslessly so a decoded frame is
within a few grey levels of the frame `make_frames` returns for the same arguments.

Motion kinds (frame ``i`` of ``frames``; "flow" is the forward flow from frame ``i`` to ``i + 1``):

- ``"pan"``: a textured plane moving right by ``pan_px`` px per frame, as if the camera panned
  left. Flow is ``(+pan_px, 0)`` everywhere except the ``pan_px`` columns entering at the left.
- ``"object"``: a square with its own texture moving over a static textured background,
  ``pan_px`` px per frame horizontally, bouncing off the frame edges. `object_boxes` gives its
  position in every frame. Background flow is zero.
- ``"cut"``: a hard cut at `cut_index` between two unrelated textures; each shot pans as in
  ``"pan"`` (``pan_px=0`` gives two static shots).
- ``"cuts"``: two hard cuts, at `cut_indices`, between three unrelated textures, each shot
  panning as in ``"pan"``.
- ``"static"``: the same frame repeated.

Timestamps: constant-rate clips use time base ``1/fps`` and pts ``0, 1, 2, ...``. Variable-rate
clips (``vfr=True``) use time base ``1/(2*fps)`` and frame durations cycling through
``VFR_DURATIONS`` (average rate still ``fps``); `frame_times` gives the times in seconds.
Rotation: ``rotation`` is the clockwise angle a player turns the picture to show it upright (the
convention of the ``rotate`` tag phones write, and of `VideoInfo.rotation`); the clip stores the
picture turned the other way plus a display matrix, so the *upright* frames equal `make_frames`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import Image

Motion = Literal["pan", "object", "cut", "cuts", "static"]

#: Frame durations, in units of ``1/(2*fps)``, that variable-frame-rate clips cycle through.
VFR_DURATIONS: tuple[int, ...] = (1, 3, 2, 2)
AUDIO_RATE = 48_000
#: Tones of the left and right channel of generated audio.
AUDIO_TONES_HZ: tuple[float, float] = (440.0, 660.0)

_CONTAINER_FORMATS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
}


# --------------------------------------------------------------------------------------------
# Frames


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth, colourful H×W×3 uint8 texture made of random plane waves.

    Brightness carries the fine detail (wavelengths 6–40 px: every 8×8 patch has gradients in
    both directions, which block matching and flow estimators need); colour varies slowly
    (24–72 px) so 4:2:0 chroma subsampling barely changes it. Values stay within [0, 255]
    without clipping.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)

    def waves(count: int, shortest: float, longest: float) -> np.ndarray:
        acc = np.zeros((height, width))
        for _ in range(count):
            k = 2 * np.pi / rng.uniform(shortest, longest)
            angle = rng.uniform(0.0, np.pi)
            acc += np.sin(k * (np.cos(angle) * x + np.sin(angle) * y) + rng.uniform(0, 2 * np.pi))
        return acc / count  # in [-1, 1]

    luma = 128.0 + 70.0 * waves(5, 6.0, 40.0)
    cb, cr = 40.0 * waves(3, 24.0, 72.0), 40.0 * waves(3, 24.0, 72.0)
    # BT.601 YCbCr -> RGB; |offsets| <= 57 so luma 58..198 keeps every channel in range.
    rgb = np.stack([luma + 1.402 * cr, luma - 0.344 * cb - 0.714 * cr, luma + 1.772 * cb], -1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def cut_index(frames: int) -> int:
    """Index of the first frame after the hard cut in a ``motion="cut"`` clip."""
    return frames // 2


def cut_indices(frames: int) -> tuple[int, int]:
    """Indices of the first frames of the second and third shots of a ``motion="cuts"`` clip."""
    return frames // 3, 2 * frames // 3


def object_side(size: tuple[int, int]) -> int:
    """Side in px of the moving square of a ``motion="object"`` clip of `size` (w, h)."""
    return max(4, min(size) // 3)


def object_boxes(
    frames: int, size: tuple[int, int], pan_px: int = 2
) -> list[tuple[int, int, int, int]]:
    """Box ``(x, y, w, h)`` of the moving square in every frame of a ``motion="object"`` clip.

    The square starts at the left edge, vertically centred, and moves ``pan_px`` px per frame,
    bouncing back off the right and left edges (so a long clip keeps it in view).
    """
    width, height = size
    side = object_side(size)
    travel = max(width - side, 0)
    y = (height - side) // 2
    boxes = []
    for i in range(frames):
        if travel == 0:
            x = 0
        else:
            p = (i * pan_px) % (2 * travel)
            x = p if p <= travel else 2 * travel - p
        boxes.append((x, y, side, side))
    return boxes


def make_frames(
    *,
    frames: int = 24,
    size: tuple[int, int] = (64, 48),
    motion: Motion = "pan",
    pan_px: int = 2,
    seed: int = 0,
) -> list[np.ndarray]:
    """The upright H×W×3 uint8 RGB frames that `make_video` encodes for the same arguments."""
    width, height = size
    if motion == "pan":
        return _pan(texture(width + pan_px * frames, height, seed), frames, width, pan_px)
    if motion == "static":
        still = texture(width, height, seed)
        return [still.copy() for _ in range(frames)]
    if motion == "cut":
        cut = cut_index(frames)
        first = _pan(texture(width + pan_px * cut, height, seed), cut, width, pan_px)
        rest = frames - cut
        second = _pan(texture(width + pan_px * rest, height, seed + 7919), rest, width, pan_px)
        return first + second
    if motion == "cuts":
        firsts = [0, *cut_indices(frames), frames]
        out = []
        for shot, (a, b) in enumerate(itertools.pairwise(firsts)):
            canvas = texture(width + pan_px * (b - a), height, seed + 7919 * shot)
            out += _pan(canvas, b - a, width, pan_px)
        return out
    if motion == "object":
        background = texture(width, height, seed)
        # A distinct, higher-contrast texture so the square stands out from the background.
        side = object_side(size)
        patch = 255 - texture(side, side, seed + 104729)
        out = []
        for x, y, w, h in object_boxes(frames, size, pan_px):
            frame = background.copy()
            frame[y : y + h, x : x + w] = patch[:h, :w]
            out.append(frame)
        return out
    raise ValueError(f"unknown motion {motion!r}; use pan, object, cut, cuts or static")


def _pan(canvas: np.ndarray, frames: int, width: int, pan_px: int) -> list[np.ndarray]:
    # Frame i shows canvas columns shifted so content moves right by pan_px per frame:
    # frame_i(x) = canvas(x - i*pan_px + frames*pan_px).
    start = pan_px * frames
    return [
        canvas[:, start - i * pan_px : start - i * pan_px + width].copy() for i in range(frames)
    ]


# --------------------------------------------------------------------------------------------
# Timestamps


def time_base_for(fps: Fraction | int, vfr: bool = False) -> Fraction:
    """Video time base `make_video` uses: one frame (or half a frame for VFR clips)."""
    fps = Fraction(fps)
    return 1 / (2 * fps) if vfr else 1 / fps


def frame_pts(frames: int, fps: Fraction | int = 24, vfr: bool = False) -> list[int]:
    """Presentation timestamps, in `time_base_for` units, of each frame `make_video` writes."""
    if not vfr:
        return list(range(frames))
    steps = itertools.cycle(VFR_DURATIONS)
    return list(itertools.accumulate((next(steps) for _ in range(frames - 1)), initial=0))


def frame_times(frames: int, fps: Fraction | int = 24, vfr: bool = False) -> list[Fraction]:
    """Presentation time in seconds of each frame `make_video` writes (add `start` if given)."""
    tb = time_base_for(fps, vfr)
    return [p * tb for p in frame_pts(frames, fps, vfr)]


def clip_duration(frames: int, fps: Fraction | int = 24, vfr: bool = False) -> Fraction:
    """Seconds from the first frame to the end of the last one (VFR: last duration included)."""
    if not vfr:
        return frames / Fraction(fps)
    return frame_times(frames + 1, fps, vfr)[-1]


# --------------------------------------------------------------------------------------------
# Files


def make_video(
    path: Path,
    *,
    frames: int = 24,
    size: tuple[int, int] = (64, 48),
    fps: Fraction | int = Fraction(24),
    audio: bool = True,
    codec: str | None = None,
    motion: Motion = "pan",
    pan_px: int = 2,
    seed: int = 0,
    rotation: int = 0,
    vfr: bool = False,
    audio_codec: str | None = None,
    pix_fmt: str | None = None,
    start: Fraction | int = 0,
) -> Path:
    """Encode `make_frames(...)` to `path` (container from the suffix) and return `path`.

    codec: video encoder, by default libx264 (libvpx-vp9 for .webm), set up to be (nearly)
    lossless. pix_fmt: default yuv420p like real footage (decoded frames then differ from
    `make_frames` by a few levels); yuv444p gets within ±2. Odd sizes default to yuv444p because
    4:2:0 needs even dimensions.
    start: seconds at which the first frame (and the audio) is shown, as in MPEG-TS or clips
    cut from a longer recording; a multiple of the time base (`time_base_for`).
    audio: add a stereo 48 kHz tone (440 Hz left, 660 Hz right) as long as the video, encoded
    with `audio_codec` (default aac; libopus for .webm).
    """
    path = Path(path)
    fmt = _CONTAINER_FORMATS.get(path.suffix.lower())
    if rotation % 90:
        raise ValueError("rotation must be a multiple of 90")
    rotation %= 360
    fps = Fraction(fps)
    if codec is None:
        codec = "libvpx-vp9" if fmt == "webm" else "libx264"
    if audio_codec is None:
        audio_codec = "libopus" if fmt == "webm" else "aac"

    upright = make_frames(frames=frames, size=size, motion=motion, pan_px=pan_px, seed=seed)
    # Store the picture turned counter-clockwise; the display matrix turns it back clockwise.
    coded = [np.ascontiguousarray(np.rot90(f, k=rotation // 90)) for f in upright]
    coded_h, coded_w = coded[0].shape[:2]
    time_base = time_base_for(fps, vfr)
    offset = Fraction(start) / time_base
    if offset.denominator != 1:
        raise ValueError(f"start must be a multiple of the time base {time_base}")
    pts = [p + int(offset) for p in frame_pts(frames, fps, vfr)]

    with av.open(str(path), "w", format=fmt) as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height = coded_w, coded_h
        odd = coded_w % 2 or coded_h % 2
        video.pix_fmt = pix_fmt or ("yuv444p" if odd else "yuv420p")
        video.codec_context.time_base = time_base
        video.time_base = time_base
        video.options = _lossless_options(codec)
        if rotation:
            # PyAV's angle is counter-clockwise (as VideoFrame.rotation reads it back).
            video.set_display_rotation(-rotation)

        astream = None
        if audio:
            astream = out.add_stream(audio_codec, rate=AUDIO_RATE)
            astream.codec_context.layout = "stereo"

        for image, p in zip(coded, pts, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = p
            frame.time_base = time_base
            out.mux(video.encode(frame))

        if astream is not None:
            _write_tone(out, astream, clip_duration(frames, fps, vfr), start=Fraction(start))
            out.mux(astream.encode(None))
        out.mux(video.encode(None))
    return path


def _lossless_options(codec: str) -> dict[str, str]:
    # "veryfast" rather than "ultrafast" so H.264 clips have B-frames (pts order != decode
    # order), like real footage; qp 0 is lossless in the YUV domain.
    if codec == "libx264":
        return {"qp": "0", "preset": "veryfast"}
    if codec == "libx265":
        return {"x265-params": "lossless=1:log-level=error", "preset": "ultrafast"}
    if codec == "libvpx-vp9":
        return {"lossless": "1", "deadline": "realtime", "cpu-used": "8"}
    if codec == "libsvtav1":
        return {"crf": "4", "preset": "12"}
    return {}


def _write_tone(
    out: av.container.OutputContainer,
    stream: av.AudioStream,
    seconds: Fraction,
    start: Fraction = Fraction(0),
) -> None:
    samples = int(seconds * AUDIO_RATE)
    t = np.arange(samples) / AUDIO_RATE
    tone = np.stack([0.25 * np.sin(2 * np.pi * f * t) for f in AUDIO_TONES_HZ]).astype(np.float32)
    # 1024-sample chunks; PyAV's encoder re-chunks to the codec's frame size as needed.
    for first in range(0, samples, 1024):
        chunk = np.ascontiguousarray(tone[:, first : first + 1024])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = round(start * AUDIO_RATE) + first
        frame.time_base = Fraction(1, AUDIO_RATE)
        out.mux(stream.encode(frame))


def make_audio_only(path: Path, *, seconds: float = 1.0, codec: str | None = None) -> Path:
    """A file with one audio stream and no video (e.g. ``.m4a`` with AAC, ``.mka``, ``.mp4``)."""
    path = Path(path)
    fmt = {".m4a": "mp4", ".mka": "matroska"}.get(path.suffix.lower()) or _CONTAINER_FORMATS.get(
        path.suffix.lower()
    )
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec or "aac", rate=AUDIO_RATE)
        stream.codec_context.layout = "stereo"
        _write_tone(out, stream, Fraction(seconds))
        out.mux(stream.encode(None))
    return path


def read_audio_packets(path: Path) -> list[list[tuple[float | None, bytes]]]:
    """Per audio stream, every packet as (pts in seconds, payload bytes), in file order."""
    with av.open(str(path)) as container:
        streams = list(container.streams.audio)
        result: list[list[tuple[float | None, bytes]]] = [[] for _ in streams]
        if not streams:
            return result
        slot = {s.index: i for i, s in enumerate(streams)}
        for packet in container.demux(*streams):
            if packet.size == 0:  # demuxer's end-of-stream marker
                continue
            t = None if packet.pts is None else float(packet.pts * packet.time_base)
            result[slot[packet.stream.index]].append((t, bytes(packet)))
    return result


_IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}


def make_style_array(size: tuple[int, int] = (64, 64), seed: int = 0) -> np.ndarray:
    """A bold H×W×3 uint8 'painting': thick diagonal strokes of saturated colour."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    palette = rng.integers(0, 256, size=(6, 3)).astype(np.float64)
    band = (x * 0.7 + y * 0.5 + 6 * np.sin(y / 5.0)) / 7.0
    idx = np.floor(band).astype(int) % len(palette)
    image = palette[idx]
    # Fine cross-hatching gives the Gram matrices some texture to match.
    image *= (0.8 + 0.2 * np.sin(x * 1.3 - y * 0.9))[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def make_image(
    path: Path,
    size: tuple[int, int] = (64, 64),
    mode: Literal["RGB", "RGBA", "P", "L", "CMYK"] = "RGB",
    seed: int = 0,
) -> Path:
    """Write a style image of `size` (w, h) in PIL `mode`; the format follows the suffix.

    CMYK cannot be stored as PNG; use a ``.jpg`` path for it.
    """
    path = Path(path)
    rgb = Image.fromarray(make_style_array(size, seed), "RGB")
    if mode == "RGB":
        image = rgb
    elif mode == "RGBA":
        image = rgb.copy()
        alpha = np.tile(np.linspace(64, 255, size[0], dtype=np.uint8), (size[1], 1))
        image.putalpha(Image.fromarray(alpha, "L"))
    elif mode == "P":
        image = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    elif mode in ("L", "CMYK"):
        image = rgb.convert(mode)
    else:
        raise ValueError(f"unsupported mode {mode!r}")
    fmt = _IMAGE_FORMATS.get(path.suffix.lower())
    image.save(path, format=fmt)
    return path


def times_close(a: Sequence[float], b: Sequence[float], tol: float) -> bool:
    """True when the two sequences have equal length and differ elementwise by at most `tol`."""
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))
