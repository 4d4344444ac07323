"""Who is in a photo: faces with a quality score, identity profiles trained from a set of
photos, and one-to-one recognition of faces against profiles.

Built on ``vision.faces`` (dlib's HOG detector, 5-point landmarks and ResNet embedding;
the 68-point model is never loaded). Images are (H, W, 3) uint8 sRGB RGB arrays; boxes
and landmarks are in the pixel coordinates of the image passed in; embeddings are (128,)
float32 and compared by Euclidean distance (dlib: same person below ~0.6).

``observe_faces``
    Detects faces down to ``min_face_px`` wide by running the detector on a copy scaled
    so such a face is ~70 px (dlib's smallest), within a 2 MP budget. Detections with a
    low score or an implausible landmark layout (``plausible_face``) are dropped. Each
    face gets an embedding computed from its aligned chip (``face_chip``) and a quality
    in 0..1: size x sharpness (variance of the chip's Laplacian) x pose (nose centred
    between the eyes).

``train_profile``
    The subject of a photo set is the identity common to most photos: faces of
    different photos closer than ``LINK_DISTANCE`` are linked, and of the connected
    groups the one spanning most photos wins (one face per photo); faces far from the
    rest of the group are dropped. Photos that cannot be used are reported one by one
    (``PhotoRejection``). The threshold is calibrated from the spread of the subject's
    own embeddings.

``assign_faces``
    Matches faces to candidate profiles one to one (Hungarian algorithm), only pairs
    within the profile's threshold.

Measured with ``benchmarks/recognition.py`` on the evaluation photos: LFW (10 people, 5
training photos each, 50 queries x 10 profiles) true-accept 100 %, false-accept 0 %
(0/450); every face of the ``faces/knn`` test photos assigned right from 1-2 training
photos, no other profile within its threshold; training on 10 photos of 0.2-4 MP took
7-12 s on the shared 2-core machine (1.7-2.7 s for 250 px photos).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

import cv2
import dlib
import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist, pdist

from photoremix.vision.faces import (
    SAME_PERSON_DISTANCE,
    Face,
    chip_embeddings,
    detect_faces,
    resize_long_side,
)

__all__ = [
    "FaceObservation",
    "PhotoRejection",
    "ProfileModel",
    "ProfileTrainingError",
    "RejectionReason",
    "assign_faces",
    "face_chip",
    "face_mask",
    "observe_faces",
    "plausible_face",
    "train_profile",
]

# --- Detection ----------------------------------------------------------------------------

# dlib's HOG detector slides an 80 px window over an image pyramid: on the astronaut
# portrait shrunk step by step, the smallest faces it still found were 60-73 px wide.
# observe_faces scales the image so a face of ``min_face_px`` reaches this size.
HOG_SMALLEST_FACE_PX: Final = 70
# Detection time grows with the pixel count (about 0.3-0.8 s per megapixel on one busy
# core), so the scaled copy is capped at this many pixels: in photos above ~0.65 MP the
# smallest face found is then somewhat larger than min_face_px.
MAX_DETECTION_PIXELS: Final = 2_000_000
# Real faces in the evaluation photos scored >= 0.3 at observe_faces' scales; false
# detections in texture (a badge on the astronaut's suit scores 0.06) stay below this.
MIN_DETECTION_SCORE: Final = 0.2
DEFAULT_MIN_FACE_PX: Final = 40

# Plausible landmark layouts, in units of the distance D between the eye centres. In
# brackets the range over the 160 detected faces of the evaluation photos; the limits
# leave a margin around it.
EYE_DISTANCE_TO_BOX_WIDTH: Final = (0.2, 0.7)  # D / box width [0.26, 0.55]
NOSE_DROP: Final = (0.35, 1.6)  # nose below the eye line [0.56, 1.20]
NOSE_OFFSET_MAX: Final = 0.6  # |nose along the eye line from the midpoint| [<= 0.40]
EYE_WIDTH: Final = (0.25, 0.6)  # eye corner to corner [0.36, 0.46]
ROLL_MAX_DEGREES: Final = 50.0  # eye line against horizontal [-33, 24]

# The chip dlib's embedding network expects: 150 px, the face with 25 % padding.
CHIP_SIZE: Final = 150
CHIP_PADDING: Final = 0.25

# Quality: a face this wide gives the embedding all the detail it uses (chips are 150 px
# with the face about 100 px across); smaller ones scale the size term down linearly.
FULL_DETAIL_FACE_PX: Final = 100
# Chip Laplacian variance mapped log-linearly to 0..1 between these. Sharp portraits
# measure 200-1400; LFW's soft 250 px JPEGs 10-100; Gaussian blur of sigma 3 % of the
# face width brings a portrait down to about 5.
SHARPNESS_RANGE: Final = (4.0, 400.0)
# The nose halfway to an eye (a strong head turn) gives pose quality 0.
NOSE_OFFSET_FOR_ZERO_POSE: Final = 0.5

# --- Training -----------------------------------------------------------------------------

# Faces narrower than TRAINING_MIN_FACE_PX, or whose chip's Laplacian variance is below
# BLURRED_LAPLACIAN_VARIANCE, are not used to train: on the test portraits the embedding
# of a 40 px face moved 0.22-0.25 from its full-size value, and blur that left a variance
# under 7 moved it 0.45-0.6 (the same-person limit is 0.6). LFW's faces (85-124 px,
# variance >= 10) all pass.
TRAINING_MIN_FACE_PX: Final = 60
BLURRED_LAPLACIAN_VARIANCE: Final = 7.0
# Faces of two photos closer than this are linked as the same person. Same-person pairs
# on LFW: 90 % below 0.53; different people: 99.9 % above 0.59.
LINK_DISTANCE: Final = 0.55
# A kept face whose median distance to the other kept faces exceeds this is dropped.
OUTLIER_DISTANCE: Final = SAME_PERSON_DISTANCE
# threshold = clip(spread + margin, bounds), spread being the mean distance between the
# subject's kept embeddings, shrunk towards the typical same-person distance (the LFW
# median, 0.42) as if PRIOR_PAIRS more pairs had measured it, so one or two photos give
# a sensible value. Chosen on LFW (benchmarks/recognition.py): with 5 training photos
# this gave a true-accept rate of 0.98-1.0 and false accepts under 0.5 % over 30 random
# train/query splits.
THRESHOLD_BOUNDS: Final = (0.45, 0.6)
THRESHOLD_MARGIN: Final = 0.15
TYPICAL_SAME_PERSON_DISTANCE: Final = 0.42
PRIOR_PAIRS: Final = 3
# The profile picture: a square of this many px around the best face, the square this
# many face-box widths across where the photo allows.
PICTURE_SIZE: Final = 256
PICTURE_FACE_WIDTHS: Final = 2.0

RejectionReason = Literal["undecodable", "no_face", "subject_not_found", "too_small", "blurred"]


@dataclass(frozen=True, eq=False)
class FaceObservation:
    """One detected face with what recognition needs.

    face: box (image px), 5 landmarks, detector score.
    embedding: (128,) float32.
    quality: 0..1, the product of size, sharpness and pose terms (see module constants).
    """

    face: Face
    embedding: np.ndarray
    quality: float


@dataclass(frozen=True)
class PhotoRejection:
    """Why one photo of a training set was not used.

    index: position in the photo list given to ``train_profile`` (0-based).
    reason: "undecodable" | "no_face" | "subject_not_found" | "too_small" | "blurred".
    message: a sentence naming the photo, counted from 1 as people count
        ("photo 3: no face found" is index 2).
    """

    index: int
    reason: RejectionReason
    message: str

    @property
    def detail(self) -> str:
        """The message without its "photo N: " prefix, for callers that name photos
        their own way (a URL, a file name)."""
        return self.message.removeprefix(f"{_photo_name(self.index)}: ")


class ProfileTrainingError(Exception):
    """Too few photos of a set could be used. The message lists every rejected photo.

    rejections: every rejected photo, by index. usable: how many photos were usable;
    needed: the minimum asked for.
    """

    def __init__(self, rejections: Sequence[PhotoRejection], usable: int, needed: int) -> None:
        self.rejections = tuple(rejections)
        self.usable = usable
        self.needed = needed
        total = usable + len(self.rejections)
        if total == 0:
            summary = f"No photos were given; at least {needed} are needed."
        else:
            summary = (
                f"Only {usable} of {total} photos show the person clearly enough; "
                f"at least {needed} are needed."
            )
        details = "; ".join(rejection.message for rejection in self.rejections)
        super().__init__(f"{summary} {details}." if details else summary)


@dataclass(frozen=True, eq=False)
class ProfileModel:
    """What a trained profile keeps.

    embeddings: (K, 128) float32, the subject's kept embeddings (K >= 1), read-only.
    threshold: distance (``distance``) below which a face is this person.
    picture: (PICTURE_SIZE, PICTURE_SIZE, 3) uint8 crop of the best face; (0, 0, 3) when
        the model was rebuilt from a dict without one.
    used: indices of the photos that contributed, ascending.
    rejected: the photos that did not, with why.
    """

    embeddings: np.ndarray
    threshold: float
    picture: np.ndarray
    used: tuple[int, ...]
    rejected: tuple[PhotoRejection, ...]

    def __post_init__(self) -> None:
        embeddings = np.array(self.embeddings, dtype=np.float32)  # a private copy
        if embeddings.ndim != 2 or embeddings.shape[0] < 1 or embeddings.shape[1] != 128:
            raise ValueError(f"embeddings must be (K >= 1, 128), got {embeddings.shape}")
        if not np.isfinite(embeddings).all():
            raise ValueError("embeddings must be finite")
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"threshold must be a positive number, got {self.threshold}")
        embeddings.setflags(write=False)
        object.__setattr__(self, "embeddings", embeddings)
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "used", tuple(int(i) for i in self.used))
        object.__setattr__(self, "rejected", tuple(self.rejected))

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """``distance`` of each row of ``embeddings`` (N, 128): (N,) float64."""
        queries = np.asarray(embeddings, dtype=np.float64).reshape(-1, 128)
        # The mean over the nearest half of the kept embeddings: robust to a stray kept
        # photo (unlike the mean) without resting on a single one (unlike the minimum).
        nearest = max(1, math.ceil(len(self.embeddings) / 2))
        pair = cdist(queries, self.embeddings.astype(np.float64))
        return np.partition(pair, nearest - 1, axis=1)[:, :nearest].mean(axis=1)

    def distance(self, embedding: np.ndarray) -> float:
        """How far a (128,) embedding is from this person: the mean distance to the
        nearest half of the kept embeddings. Below ``threshold``: this person."""
        return float(self.distances(embedding)[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (lists, numbers, strings) form of everything but the picture."""
        return {
            "version": 1,
            "embeddings": self.embeddings.tolist(),
            "threshold": self.threshold,
            "used": list(self.used),
            "rejected": [
                {"index": r.index, "reason": r.reason, "message": r.message} for r in self.rejected
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, picture: np.ndarray | None = None) -> ProfileModel:
        """The model ``to_dict`` wrote; ``picture`` defaults to an empty (0, 0, 3) array.

        Raises ValueError when ``data`` is not such a dict.
        """
        try:
            if data["version"] != 1:
                raise ValueError(f"unknown profile model version {data['version']!r}")
            rejected = tuple(
                PhotoRejection(int(r["index"]), r["reason"], str(r["message"]))
                for r in data["rejected"]
            )
            return cls(
                embeddings=np.asarray(data["embeddings"], dtype=np.float32),
                threshold=float(data["threshold"]),
                picture=np.zeros((0, 0, 3), np.uint8) if picture is None else picture,
                used=tuple(int(i) for i in data["used"]),
                rejected=rejected,
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a profile model dict: {error!r}") from error


# --- Faces --------------------------------------------------------------------------------


class _Geometry(NamedTuple):
    """A face's landmark layout. Lengths are in units of ``eye_distance`` (D)."""

    eye_mid: np.ndarray  # (2,) midpoint between the eye centres, px
    across: np.ndarray  # (2,) unit vector from the image-left eye to the image-right eye
    down: np.ndarray  # (2,) unit vector perpendicular to it, towards the chin
    eye_distance: float  # D, px
    nose_offset: float  # nose along ``across`` from the midpoint
    nose_drop: float  # nose along ``down`` from the midpoint
    eye_width: float  # mean corner-to-corner width of the eyes
    roll_degrees: float


def _geometry(landmarks: np.ndarray) -> _Geometry:
    # dlib's 5 points: 0-1 outer and inner corner of the eye on the image's right, 2-3
    # outer and inner corner of the other eye, 4 the base of the nose.
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    right_eye, left_eye, nose = points[0:2].mean(0), points[2:4].mean(0), points[4]
    eye_mid = (right_eye + left_eye) / 2
    eye_vector = right_eye - left_eye
    eye_distance = float(np.hypot(*eye_vector))
    unit = max(eye_distance, 1e-6)
    across = eye_vector / unit
    down = np.array([-across[1], across[0]])
    eye_width = (np.hypot(*(points[0] - points[1])) + np.hypot(*(points[2] - points[3]))) / 2
    return _Geometry(
        eye_mid=eye_mid,
        across=across,
        down=down,
        eye_distance=eye_distance,
        nose_offset=float((nose - eye_mid) @ across / unit),
        nose_drop=float((nose - eye_mid) @ down / unit),
        eye_width=float(eye_width / unit),
        roll_degrees=float(np.degrees(np.arctan2(eye_vector[1], eye_vector[0]))),
    )


def plausible_face(face: Face) -> bool:
    """Whether the landmarks are laid out like a real upright face in its box: eyes side
    by side above the nose, the nose between them, eyes a plausible share of the box."""
    if np.asarray(face.landmarks).shape != (5, 2) or face.width <= 0:
        return False
    g = _geometry(face.landmarks)
    return bool(
        EYE_DISTANCE_TO_BOX_WIDTH[0] <= g.eye_distance / face.width <= EYE_DISTANCE_TO_BOX_WIDTH[1]
        and NOSE_DROP[0] <= g.nose_drop <= NOSE_DROP[1]
        and abs(g.nose_offset) <= NOSE_OFFSET_MAX
        and EYE_WIDTH[0] <= g.eye_width <= EYE_WIDTH[1]
        and abs(g.roll_degrees) <= ROLL_MAX_DEGREES
    )


def face_chip(
    image: np.ndarray, face: Face, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> np.ndarray:
    """The face aligned as dlib aligns it for its embedding: (size, size, 3) uint8.

    Eyes level and at fixed positions, ``padding`` (share of the face) around it.
    Landmarks are rounded to whole pixels, as dlib's shape predictor returns them.
    """
    _check_image(image)
    points = np.asarray(face.landmarks, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"face_chip needs the 5 landmarks, got shape {points.shape}")
    left, top, right, bottom = (int(v) for v in face.box)
    shape = dlib.full_object_detection(
        dlib.rectangle(left, top, right - 1, bottom - 1),
        dlib.points([dlib.point(round(x), round(y)) for x, y in points]),
    )
    return dlib.get_face_chip(np.ascontiguousarray(image), shape, size=size, padding=padding)


def face_mask(shape_hw: tuple[int, int], face: Face, feather: float = 0.35) -> np.ndarray:
    """A soft mask of the face's skin (forehead to chin, cheek to cheek): (H, W) float32.

    An ellipse placed by the landmarks (it follows head roll): 1 inside, 0 outside, with
    a smooth edge ``feather`` x the eye distance wide centred on the ellipse. Faces with
    unusable landmarks get an ellipse inscribed in their box. One mask per face; combine
    several with ``np.maximum``.
    """
    height, width = int(shape_hw[0]), int(shape_hw[1])
    mask = np.zeros((height, width), np.float32)
    g = _geometry(face.landmarks) if np.asarray(face.landmarks).shape == (5, 2) else None
    if g is not None and g.eye_distance >= 0.15 * max(face.width, 1):
        # Proportions of an average adult face: cheek to cheek ~2 D, eye line to chin
        # ~1.6 D, eye line to hairline ~1.1 D (dlib's mean face shape and common
        # anthropometry); the ellipse spans that.
        centre = g.eye_mid + 0.45 * g.eye_distance * g.down
        half_across, half_down = 1.05 * g.eye_distance, 1.3 * g.eye_distance
        across, down, unit = g.across, g.down, g.eye_distance
    else:
        left, top, right, bottom = face.box
        centre = np.array([(left + right) / 2, (top + bottom) / 2], np.float64)
        half_across, half_down = max(face.width, 1) / 2, max(face.height, 1) / 2
        across, down, unit = np.array([1.0, 0.0]), np.array([0.0, 1.0]), face.width / 2
    ramp = max(feather * unit, 1.0)
    # Only the ellipse's bounding square (plus the ramp) can be non-zero.
    reach = max(half_across, half_down) + ramp
    x0, x1 = max(0, int(centre[0] - reach)), min(width, int(centre[0] + reach) + 2)
    y0, y1 = max(0, int(centre[1] - reach)), min(height, int(centre[1] + reach) + 2)
    if x0 >= x1 or y0 >= y1:
        return mask
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    dx, dy = xs - centre[0], ys - centre[1]
    u = (dx * across[0] + dy * across[1]) / half_across
    v = (dx * down[0] + dy * down[1]) / half_down
    radius = np.sqrt(u * u + v * v)
    # Signed distance to the ellipse (px, < 0 inside), first order: (r - 1) / |grad r|.
    gradient = np.sqrt((u / half_across) ** 2 + (v / half_down) ** 2) / np.maximum(radius, 1e-9)
    signed = (radius - 1) / np.maximum(gradient, 1e-9)
    t = np.clip(0.5 - signed / ramp, 0.0, 1.0)
    mask[y0:y1, x0:x1] = (t * t * (3 - 2 * t)).astype(np.float32)  # smoothstep
    return mask


@dataclass(frozen=True)
class _Measured:
    observation: FaceObservation
    sharpness: float  # Laplacian variance of the grey chip


def _check_image(image: np.ndarray) -> None:
    if not (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
        and image.shape[0] > 0
        and image.shape[1] > 0
    ):
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"expected an (H, W, 3) uint8 image, got shape {shape} dtype {dtype}")


def _sharpness(chip: np.ndarray) -> float:
    grey = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def _quality(face: Face, sharpness: float) -> float:
    size = min(1.0, min(face.width, face.height) / FULL_DETAIL_FACE_PX)
    low, high = SHARPNESS_RANGE
    sharp = float(np.clip(math.log(max(sharpness, 1e-6) / low) / math.log(high / low), 0, 1))
    pose = max(0.0, 1 - abs(_geometry(face.landmarks).nose_offset) / NOSE_OFFSET_FOR_ZERO_POSE)
    return size * sharp * pose


def _measure_faces(image: np.ndarray, min_face_px: int) -> list[_Measured]:
    _check_image(image)
    if min_face_px < 1:
        raise ValueError(f"min_face_px must be >= 1, got {min_face_px}")
    height, width = image.shape[:2]
    scale = min(
        HOG_SMALLEST_FACE_PX / min_face_px, math.sqrt(MAX_DETECTION_PIXELS / (height * width))
    )
    long_side = max(1, round(max(height, width) * scale))
    faces = [
        face
        for face in detect_faces(image, long_side=long_side)
        if face.score >= MIN_DETECTION_SCORE
        and min(face.width, face.height) >= min_face_px
        and plausible_face(face)
    ]
    if not faces:
        return []
    # Chips come from the detection copy, where the landmarks are whole pixels and, for
    # small faces, upsampled: finer than rounding them in the original.
    work, factor = resize_long_side(image, long_side)
    chips = [face_chip(work, face.scaled(factor)) for face in faces]
    embeddings = chip_embeddings(chips)
    measured = []
    for face, chip, embedding in zip(faces, chips, embeddings, strict=True):
        sharpness = _sharpness(chip)
        embedding.setflags(write=False)
        observation = FaceObservation(face, embedding, _quality(face, sharpness))
        measured.append(_Measured(observation, sharpness))
    return measured


def observe_faces(
    image: np.ndarray, *, min_face_px: int = DEFAULT_MIN_FACE_PX
) -> list[FaceObservation]:
    """The faces in ``image`` at least ``min_face_px`` wide, largest first.

    Small images (and images whose faces may be small) are upscaled for detection so
    faces down to ``min_face_px`` are found, within a MAX_DETECTION_PIXELS budget;
    detections with a low score or an implausible landmark layout are dropped.
    Takes 0.1-1.5 s on one core, most of it the detector.
    """
    return [measured.observation for measured in _measure_faces(image, min_face_px)]


# --- Profiles -----------------------------------------------------------------------------


def _photo_name(index: int) -> str:
    return f"photo {index + 1}"


@dataclass(frozen=True)
class _Candidate:
    photo: int  # index into the photo list
    observation: FaceObservation


def train_profile(photos: Sequence[np.ndarray | None], *, min_photos: int = 5) -> ProfileModel:
    """Build a profile of the person common to most of ``photos``.

    photos: (H, W, 3) uint8 images; None for a photo that could not be decoded. They
        are read one at a time, in order, and the best photo once more for the picture,
        so a lazily decoding Sequence keeps memory low.
    min_photos: how many photos must remain usable.

    Raises ProfileTrainingError, listing every rejected photo, when fewer than
    ``min_photos`` remain; ValueError for a min_photos below 1 or a photo that is not an
    image array. Takes about 0.2-1.5 s per photo (detection and embedding).
    """
    if min_photos < 1:
        raise ValueError(f"min_photos must be >= 1, got {min_photos}")
    rejections: dict[int, PhotoRejection] = {}

    def reject(index: int, reason: RejectionReason, text: str) -> None:
        rejections[index] = PhotoRejection(index, reason, f"{_photo_name(index)}: {text}")

    candidates: list[_Candidate] = []
    faces_per_photo: dict[int, int] = {}
    for index, photo in enumerate(photos):
        if photo is None:
            reject(index, "undecodable", "the file could not be read as an image")
            continue
        try:
            _check_image(photo)
        except ValueError as error:
            raise ValueError(f"{_photo_name(index)} (index {index}): {error}") from None
        measured = _measure_faces(photo, DEFAULT_MIN_FACE_PX)
        del photo  # a decoded photo can be tens of MB: keep none past its turn
        if not measured:
            reject(index, "no_face", "no face found")
            continue
        usable = [
            m
            for m in measured
            if min(m.observation.face.width, m.observation.face.height) >= TRAINING_MIN_FACE_PX
            and m.sharpness >= BLURRED_LAPLACIAN_VARIANCE
        ]
        if not usable:
            largest = measured[0].observation.face
            if min(largest.width, largest.height) < TRAINING_MIN_FACE_PX:
                reject(
                    index,
                    "too_small",
                    f"the face is too small ({min(largest.width, largest.height)} px across; "
                    f"at least {TRAINING_MIN_FACE_PX} px is needed)",
                )
            else:
                reject(index, "blurred", "the face is too blurred to recognise")
            continue
        faces_per_photo[index] = len(usable)
        candidates.extend(_Candidate(index, m.observation) for m in usable)

    subject = _subject(candidates)
    chosen_photos = {c.photo for c in subject}
    for index, count in faces_per_photo.items():
        if index not in chosen_photos:
            text = (
                "the face is not the person seen in most of the other photos"
                if count == 1
                else f"none of its {count} faces is the person seen in most of the other photos"
            )
            reject(index, "subject_not_found", text)
    ordered_rejections = tuple(rejections[i] for i in sorted(rejections))
    if len(subject) < min_photos:
        raise ProfileTrainingError(ordered_rejections, usable=len(subject), needed=min_photos)

    subject.sort(key=lambda c: c.photo)
    embeddings = np.stack([c.observation.embedding for c in subject])
    picture = _profile_picture(photos, subject)
    if picture is None:  # every chosen photo vanished between two reads
        lost = [
            PhotoRejection(
                c.photo, "undecodable", f"{_photo_name(c.photo)}: could not be read again"
            )
            for c in subject
        ]
        raise ProfileTrainingError((*ordered_rejections, *lost), usable=0, needed=min_photos)
    return ProfileModel(
        embeddings=embeddings,
        threshold=_calibrated_threshold(embeddings),
        picture=picture,
        used=tuple(c.photo for c in subject),
        rejected=ordered_rejections,
    )


def _subject(candidates: list[_Candidate]) -> list[_Candidate]:
    """The faces, at most one per photo, of the identity found in the most photos."""
    if not candidates:
        return []
    embeddings = np.stack([c.observation.embedding for c in candidates]).astype(np.float64)
    photo_of = np.array([c.photo for c in candidates])
    distance = cdist(embeddings, embeddings)
    # Two faces of one photo are two people (or one twice, a mirror): never link them.
    linked = (distance < LINK_DISTANCE) & (photo_of[:, None] != photo_of[None, :])
    _, labels = connected_components(csr_matrix(linked), directed=False)

    def group_rank(label: int) -> tuple[int, float]:
        members = np.flatnonzero(labels == label)
        # Most photos first; between groups spanning as many, the better faces.
        best_quality: dict[int, float] = {}
        for i in members:
            q = candidates[i].observation.quality
            best_quality[photo_of[i]] = max(best_quality.get(photo_of[i], 0.0), q)
        return len(best_quality), sum(best_quality.values())

    group = max(np.unique(labels), key=group_rank)  # np.unique is sorted: ties are stable
    members = np.flatnonzero(labels == group)
    chosen = []
    for photo in np.unique(photo_of[members]):
        here = members[photo_of[members] == photo]
        others = members[photo_of[members] != photo]
        if len(others) == 0:
            best = max(here, key=lambda i: candidates[i].observation.quality)
        else:  # the face of this photo that sits best among the other photos' faces
            best = here[np.argmin(np.median(distance[np.ix_(here, others)], axis=1))]
        chosen.append(int(best))
    if len(chosen) >= 3:
        # Linking is transitive, so a chain can reach a look-alike: drop faces that are
        # far from the rest of the group.
        spread = distance[np.ix_(chosen, chosen)]
        np.fill_diagonal(spread, np.nan)
        typical = np.nanmedian(spread, axis=1)
        chosen = [i for i, d in zip(chosen, typical, strict=True) if d <= OUTLIER_DISTANCE]
    return [candidates[i] for i in chosen]


def _calibrated_threshold(embeddings: np.ndarray) -> float:
    pairs = pdist(embeddings.astype(np.float64))
    spread = (pairs.sum() + TYPICAL_SAME_PERSON_DISTANCE * PRIOR_PAIRS) / (len(pairs) + PRIOR_PAIRS)
    return float(np.clip(spread + THRESHOLD_MARGIN, *THRESHOLD_BOUNDS))


def _profile_picture(
    photos: Sequence[np.ndarray | None], subject: list[_Candidate]
) -> np.ndarray | None:
    """A PICTURE_SIZE square around the best face, read again from its photo."""
    for candidate in sorted(subject, key=lambda c: -c.observation.quality):
        photo = photos[candidate.photo]
        if photo is not None:
            return _square_crop(photo, candidate.observation.face.box, PICTURE_SIZE)
    return None


def _square_crop(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    height, width = image.shape[:2]
    left, top, right, bottom = box
    face_side = max(right - left, bottom - top, 1)
    # PICTURE_FACE_WIDTHS across where the photo allows (never less than the face), the
    # square slid inside the photo; what still falls outside repeats the edge pixels.
    side = max(face_side, min(round(PICTURE_FACE_WIDTHS * face_side), height, width))
    x0 = round((left + right) / 2 - side / 2)
    y0 = round((top + bottom) / 2 - side / 2)
    x0 = min(max(x0, 0), max(width - side, 0)) if side <= width else x0
    y0 = min(max(y0, 0), max(height - side, 0)) if side <= height else y0
    pad = max(0, -x0, -y0, x0 + side - width, y0 + side - height)
    source = image
    if pad:
        source = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = source[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interpolation))


# --- Recognition --------------------------------------------------------------------------


def assign_faces(
    faces: Sequence[np.ndarray], candidates: Sequence[tuple[str, ProfileModel]]
) -> dict[int, str]:
    """Which face is which profile: {face index: profile id}, one to one.

    faces: (128,) embeddings of the faces of one image. candidates: (profile id, model);
    a repeated id counts once. A pair qualifies only when the face is within that
    profile's threshold; among qualifying pairs the assignment maximises the summed
    margin below the thresholds (Hungarian algorithm), so no profile gets two faces
    and no face two profiles, and a face that is clearly one person is not given away
    to make room for a second, weaker match.
    """
    unique: dict[str, ProfileModel] = {}
    for profile_id, model in candidates:
        unique.setdefault(profile_id, model)
    if len(faces) == 0 or not unique:
        return {}
    queries = np.stack([np.asarray(f, dtype=np.float32).reshape(128) for f in faces])
    ids = list(unique)
    margin = np.stack([unique[i].distances(queries) - unique[i].threshold for i in ids], axis=1)
    rows, cols = linear_sum_assignment(np.minimum(margin, 0.0))
    return {int(r): ids[c] for r, c in zip(rows, cols, strict=True) if margin[r, c] < 0}
