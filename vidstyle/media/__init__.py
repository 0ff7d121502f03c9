"""Media I/O: probe a video, decode it to upright RGB frames, encode frames back with the
source's timing and audio (or join encoded segments), and convert between images and model
tensors.

Nothing here imports the models; `frames` uses torch only for tensor conversion.
"""

from vidstyle.media.codecs import (
    CODEC_ALIASES,
    VIDEO_CODECS,
    available_codecs,
    check_container_holds,
    output_codec,
)
from vidstyle.media.frames import image_to_tensor, plan_size, tensor_to_image
from vidstyle.media.output import check_output_writable
from vidstyle.media.probe import AudioStreamInfo, VideoInfo, probe
from vidstyle.media.reader import DecodedFrame, read_frames
from vidstyle.media.writer import VideoWriter

__all__ = [
    "CODEC_ALIASES",
    "VIDEO_CODECS",
    "AudioStreamInfo",
    "DecodedFrame",
    "VideoInfo",
    "VideoWriter",
    "available_codecs",
    "check_container_holds",
    "check_output_writable",
    "image_to_tensor",
    "output_codec",
    "plan_size",
    "probe",
    "read_frames",
    "tensor_to_image",
]
