"""What can be checked about a request before any work, and what right after the download.

A request that cannot succeed is refused before it costs a download, TTS or model time:
both URIs parse and name allowed buckets, the input object exists within the size limit, the
output bucket exists and (without overwrite) the output object does not, the face box is
well formed. Once the input is local (a cheap
probe, no decode beyond one frame), the box must lie inside the frame and the video must be
one the voice can be cloned from.
"""
from __future__ import annotations

from ..errors import BadInputError, MediaError, NoAudioError
from ..media import MediaInfo
from ..storage import Storage
from .base import LipVideoJob


def check_request(job: LipVideoJob, storage: Storage) -> None:
    """Raise the error ``job`` deserves, or return: no download, no model."""
    storage.parse(job.input_uri)
    storage.parse(job.output_uri)
    storage.check_input(job.input_uri)
    storage.check_output(job.output_uri)
    if job.input_uri == job.output_uri:
        raise BadInputError(f"output_video_gs {job.output_uri} is the input video itself; "
                            "write the result to another object")
    if job.resize_factor is not None and not 1 <= job.resize_factor <= 8:
        raise BadInputError(f"resize_factor must be 1 to 8, got {job.resize_factor}")
    if job.face_box is not None:
        top, bottom, left, right = job.face_box
        if min(job.face_box) < 0 or top >= bottom or left >= right:
            raise BadInputError(f"face_box {list(job.face_box)} is not a box: need 0 <= top < bottom "
                                "and 0 <= left < right, in pixels of the resized frame")


def check_input(job: LipVideoJob, media: MediaInfo, resize_factor: int) -> None:
    """Checks that need the input's header: a video with sound, a box inside the frame."""
    if media.kind == "image":
        raise MediaError(f"{job.input_uri} is a still image: the user video must be a video of the user "
                         "speaking (its sound is the voice the speech is converted into)")
    if not media.has_audio:
        raise NoAudioError(f"{job.input_uri}: the user video has no audio track; the voice is cloned from it, "
                           "so give a video of the user speaking, with sound")
    if job.face_box is not None:
        height, width = media.height // resize_factor, media.width // resize_factor
        top, bottom, left, right = job.face_box
        if bottom > height or right > width:
            raise BadInputError(f"face_box {list(job.face_box)} lies outside the {width}x{height} frame "
                                f"(the video after resize_factor {resize_factor}): need bottom <= {height} "
                                f"and right <= {width}")
