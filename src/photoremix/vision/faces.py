"""Face detection and identity embeddings with dlib and the models bundled in
``face_recognition_models``.

Only the HOG frontal detector, the 5-point landmark model and the ResNet embedding are
used. The 68-point landmark model in the same package is never loaded: its training data
(iBUG 300-W) forbids commercial use.

Images are (H, W, 3) uint8 sRGB arrays. Boxes are in the pixel coordinates of the image
that was passed in.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import dlib
import numpy as np

# The evaluation protocol runs the HOG detector with the image at this long side: large
# enough for faces of ~40 px in a 4 MP photo, small enough to take ~0.1 s on one core.
DETECTION_LONG_SIDE = 1024

# dlib's documented threshold: embeddings further apart than this are different people.
SAME_PERSON_DISTANCE = 0.6


@dataclass(frozen=True)
class Face:
    """A detected face.

    box: (left, top, right, bottom) in image pixels, right/bottom exclusive.
    landmarks: (5, 2) float32 (x, y) points from dlib's 5-point model, image pixels.
    score: HOG detector confidence (higher is surer); 0 when unknown.
    """

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    score: float = 0.0

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    def scaled(self, factor: float) -> Face:
        """The same face in an image resized by ``factor``."""
        box = tuple(round(v * factor) for v in self.box)
        return Face(box=box, landmarks=self.landmarks * factor, score=self.score)  # type: ignore[arg-type]


def _model_path(name: str) -> str:
    # Locate the bundled files without importing face_recognition_models, whose __init__
    # imports pkg_resources (deprecated, and gone from setuptools >= 81).
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face_recognition_models is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise RuntimeError(f"face model file missing: {path}")
    return str(path)


@cache
def _detector() -> dlib.fhog_object_detector:
    return dlib.get_frontal_face_detector()


@cache
def _landmark_model() -> dlib.shape_predictor:
    return dlib.shape_predictor(_model_path("shape_predictor_5_face_landmarks.dat"))


@cache
def _embedding_model() -> dlib.face_recognition_model_v1:
    return dlib.face_recognition_model_v1(_model_path("dlib_face_recognition_resnet_model_v1.dat"))


# dlib's models are not documented as thread-safe; the service runs engines in threads.
_dlib_lock = threading.Lock()


def _resize_long_side(image: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    h, w = image.shape[:2]
    factor = long_side / max(h, w)
    if abs(factor - 1.0) < 1e-6:
        return image, 1.0
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation), factor


def _rect(box: tuple[int, int, int, int]) -> dlib.rectangle:
    return dlib.rectangle(int(box[0]), int(box[1]), int(box[2]) - 1, int(box[3]) - 1)


def _landmarks(image: np.ndarray, box: tuple[int, int, int, int]) -> dlib.full_object_detection:
    return _landmark_model()(image, _rect(box))


def detect_faces(
    image: np.ndarray, long_side: int = DETECTION_LONG_SIDE, upsample: int = 0
) -> tuple[Face, ...]:
    """Detect frontal faces with dlib's HOG detector, largest first.

    The image is resized to ``long_side`` for detection; boxes and landmarks are returned
    in the coordinates of ``image``.
    """
    work, factor = _resize_long_side(np.ascontiguousarray(image), long_side)
    with _dlib_lock:
        rects, scores, _ = _detector().run(work, upsample, 0.0)
        faces = []
        for rect, score in zip(rects, scores, strict=True):
            box = (rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1)
            shape = _landmarks(work, box)
            points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
            faces.append(Face(box=box, landmarks=points, score=float(score)).scaled(1 / factor))
    h, w = image.shape[:2]
    clipped = [
        Face(
            box=(max(0, f.box[0]), max(0, f.box[1]), min(w, f.box[2]), min(h, f.box[3])),
            landmarks=f.landmarks,
            score=f.score,
        )
        for f in faces
    ]
    return tuple(sorted(clipped, key=lambda f: f.width * f.height, reverse=True))


def face_embedding(
    image: np.ndarray, box: tuple[int, int, int, int], long_side: int = DETECTION_LONG_SIDE
) -> np.ndarray:
    """The 128-d dlib embedding (float32) of the face inside ``box`` of ``image``.

    Landmarks are re-fitted inside the box on this image, so the same box can be used to
    compare a face before and after a pixel-wise edit.
    """
    work, factor = _resize_long_side(np.ascontiguousarray(image), long_side)
    scaled = tuple(round(v * factor) for v in box)
    with _dlib_lock:
        shape = _landmarks(work, scaled)  # type: ignore[arg-type]
        descriptor = _embedding_model().compute_face_descriptor(work, shape)
    return np.asarray(descriptor, dtype=np.float32)


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two embeddings; > SAME_PERSON_DISTANCE: different people."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


# --- Helpers for vision.identity (additive: the functions above keep their behaviour) ---


def resize_long_side(image: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    """``image`` resized so its long side is ``long_side`` px, and the factor applied.

    The same resize ``detect_faces(image, long_side)`` runs before detection (area
    interpolation down, bilinear up), so landmarks it returns, multiplied by the factor,
    are pixel positions in the returned image. Returns ``image`` itself when no resize is
    needed.
    """
    return _resize_long_side(np.ascontiguousarray(image), long_side)


def chip_embeddings(chips: Sequence[np.ndarray]) -> np.ndarray:
    """128-d dlib embeddings of aligned face chips: (N, 128) float32.

    chips: (150, 150, 3) uint8 RGB crops aligned the way ``dlib.get_face_chip`` aligns
    them with the 5-point landmarks and padding 0.25, which is what
    ``compute_face_descriptor(image, shape)`` does inside; the results are the same.
    """
    if not chips:
        return np.zeros((0, 128), np.float32)
    batch = [np.ascontiguousarray(chip, dtype=np.uint8) for chip in chips]
    with _dlib_lock:
        descriptors = _embedding_model().compute_face_descriptor(batch)
    return np.asarray([np.asarray(d) for d in descriptors], dtype=np.float32).reshape(-1, 128)
