"""x264's instruction sets, less AVX-512, so the same frames always encode to the same bytes.

On a CPU with AVX-512, the x264 in PyAV's wheels encodes the same frames to other bytes now and
then, even on one thread: its AVX-512 code for macroblock-tree rate control (the lookahead that
spends bits where later frames reuse them) gives run-to-run differences; with mbtree, the
lookahead or AVX-512 turned off, every encode is the same. Split and resumed renders promise the
bytes of a whole render, so vidstyle hands x264 the instruction sets it detects on this CPU
minus AVX-512. That costs no speed: on an AVX-512 Xeon, 60 frames of 720p encoded in 0.8 s
without it and 1.0-1.2 s with it, to the same size.

x264 detects the CPU itself and says what it uses in its first log line ("using cpu
capabilities: MMX2 SSE2Fast ... AVX2 AVX512"); each name there stands for itself and every set it
implies, so the list less "AVX512" is exactly the detected sets less AVX-512. Naming a set the
CPU lacks would crash the process (illegal instruction), which is why the list comes from x264
and not from a table here.
"""

from __future__ import annotations

import functools
import io
import logging

import av
import av.logging
import numpy as np

log = logging.getLogger(__name__)

_CAPABILITIES = "using cpu capabilities:"
_LEFT_OUT = "AVX512"


def x264_asm_option() -> str | None:
    """The value for x264's `asm` option that leaves AVX-512 out; None when x264 does not
    use AVX-512 here (nothing to change) or its capabilities could not be read."""
    sets = x264_instruction_sets()
    if _LEFT_OUT not in sets:
        return None
    kept = [name for name in sets if name != _LEFT_OUT]
    log.debug("x264: using %s (not %s: its output differs from run to run)", kept, _LEFT_OUT)
    return ",".join(kept)


@functools.cache
def x264_instruction_sets() -> tuple[str, ...]:
    """The instruction sets x264 uses on this CPU, as it names them; () when unknown.

    Read from the log of a one-frame encode (a few milliseconds, once per process). FFmpeg's
    log level is process-wide: it is raised for this encode alone and put back.
    """
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.INFO)
    try:
        with av.logging.Capture() as logs:
            _encode_one_frame()
    except av.error.FFmpegError as err:
        log.debug("x264: could not read its capabilities: %s", err)
        return ()
    finally:
        av.logging.set_level(previous)
    for _level, _name, message in logs:
        if message.startswith(_CAPABILITIES):
            return tuple(message[len(_CAPABILITIES) :].split())
    return ()


def _encode_one_frame() -> None:
    out = av.open(io.BytesIO(), mode="w", format="mp4")
    try:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    finally:
        out.close()
