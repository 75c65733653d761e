"""What face detection found for one input, for logs, the CLI and the HTTP response."""
from __future__ import annotations

from dataclasses import dataclass

from ..types import FaceBox

NO_DETECTOR = "none"  # the caller gave the box (face_box / --box): nothing was detected


@dataclass(frozen=True)
class FaceDetection:
    """``detector``: the detector's name, or ``"none"`` when the caller gave the box.
    ``frames_checked``: sampled frames the detector ran on. ``frames_with_face``: those whose
    box agrees with the others (see :mod:`service.face.consensus`). ``box``: the box on the
    resized frame, pads included: the one pasted for ``static`` or a given box, the per-side
    median of the agreeing boxes for ``per-frame`` and ``keyframe``.
    """

    detector: str
    frames_checked: int
    frames_with_face: int
    box: FaceBox | None

    @classmethod
    def given(cls, box: FaceBox) -> FaceDetection:
        """The report for a box the caller passed instead of detecting."""
        return cls(NO_DETECTOR, 0, 0, box)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: ``box`` as ``[top, bottom, left, right]`` or None."""
        box = None if self.box is None else [self.box.top, self.box.bottom, self.box.left, self.box.right]
        return {"detector": self.detector, "frames_checked": self.frames_checked,
                "frames_with_face": self.frames_with_face, "box": box}

    def summary(self) -> str:
        """One line for people: ``opencv detector: 5 of 5 frames agree, box 58 141 143 215 (top bottom left right)``."""
        where = "no box" if self.box is None else \
            f"box {self.box.top} {self.box.bottom} {self.box.left} {self.box.right} (top bottom left right)"
        if self.detector == NO_DETECTOR:
            return f"face box given, no detection: {where}"
        return (f"{self.detector} detector: {self.frames_with_face} of {self.frames_checked} checked frames "
                f"show the face, {where}")
