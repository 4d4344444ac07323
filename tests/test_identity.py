"""vision.identity: observing faces, training profiles, one-to-one recognition.

Two different people, NASA's astronaut portrait (skimage) and Grace Hopper (matplotlib),
and transformed copies of them make the photo sets. dlib takes ~0.2-0.8 s per image, so
the trained profiles are module fixtures shared by several tests.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from photoremix.vision.faces import Face, chip_embeddings, detect_faces
from photoremix.vision.identity import (
    BLURRED_LAPLACIAN_VARIANCE,
    THRESHOLD_BOUNDS,
    TRAINING_MIN_FACE_PX,
    PhotoRejection,
    ProfileModel,
    ProfileTrainingError,
    assign_faces,
    face_chip,
    face_mask,
    observe_faces,
    plausible_face,
    train_profile,
)


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)


def recoloured(image: np.ndarray, gains: tuple[float, float, float], offset: float) -> np.ndarray:
    return np.clip(image * np.array(gains) + offset, 0, 255).astype(np.uint8)


def cropped_and_shrunk(image: np.ndarray, keep: float, scale: float) -> np.ndarray:
    h, w = image.shape[:2]
    dy, dx = round(h * (1 - keep) / 2), round(w * (1 - keep) / 2)
    crop = image[dy : h - dy, dx : w - dx]
    return cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def pasted(image: np.ndarray, scale: float, canvas_hw: tuple[int, int]) -> np.ndarray:
    """``image`` shrunk by ``scale`` on a grey canvas, at (20, 20)."""
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.full((*canvas_hw, 3), 120, np.uint8)
    canvas[20 : 20 + small.shape[0], 20 : 20 + small.shape[1]] = small
    return canvas


def variants(image: np.ndarray) -> list[np.ndarray]:
    """Five photos of one person: flips, small rotations, colour changes, crop, downscale."""
    return [
        image,
        np.ascontiguousarray(image[:, ::-1]),
        rotated(image, 6),
        recoloured(rotated(image, -4), (1.1, 0.95, 0.8), 12),
        cropped_and_shrunk(image, 0.8, 0.75),
    ]


def gradient(h: int = 400, w: int = 400) -> np.ndarray:
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    return np.broadcast_to(ramp, (h, w, 3)).astype(np.uint8)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """A two-person photo: ``left`` and ``right`` (each at most 600 x 512) on grey."""
    canvas = np.full((600, 1100, 3), 128, np.uint8)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], 560 : 560 + right.shape[1]] = right
    return canvas


@pytest.fixture(scope="module")
def hopper_set(grace_hopper: np.ndarray) -> list[np.ndarray | None]:
    """Five good photos of Grace Hopper, a group shot with the astronaut, and one photo
    of each rejection reason."""
    good = variants(grace_hopper)
    return [
        good[0],
        None,  # 1: undecodable
        good[1],
        gradient(),  # 3: no face
        good[2],
        skimage_astronaut(),  # 5: someone else
        good[3],
        pasted(grace_hopper, 48 / 208, (400, 400)),  # 7: face ~48 px wide
        cv2.GaussianBlur(grace_hopper, (0, 0), 8),  # 8: blurred
        good[4],
        side_by_side(skimage_astronaut(), grace_hopper),  # 10: both; Hopper is the subject
    ]


def skimage_astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="module")
def hopper_model(hopper_set: list[np.ndarray | None]) -> ProfileModel:
    return train_profile(hopper_set, min_photos=5)


@pytest.fixture(scope="module")
def astronaut_model(astronaut: np.ndarray) -> ProfileModel:
    return train_profile(variants(astronaut)[:3], min_photos=3)


# --- observe_faces, plausible_face, face_chip, face_mask -----------------------------------


def test_observe_faces_describes_each_person(astronaut: np.ndarray, grace_hopper: np.ndarray):
    astronaut_faces = observe_faces(astronaut)
    hopper_faces = observe_faces(grace_hopper)
    assert len(astronaut_faces) == 1 and len(hopper_faces) == 1
    for observation, (cx, cy) in ((astronaut_faces[0], (222, 125)), (hopper_faces[0], (266, 242))):
        left, top, right, bottom = observation.face.box
        assert left < cx < right and top < cy < bottom  # the face, not the suit or the flag
        assert observation.embedding.shape == (128,) and observation.embedding.dtype == np.float32
        assert 0.3 < observation.quality <= 1.0
    # Hopper's face is twice as wide and sharp: better quality.
    assert hopper_faces[0].quality > astronaut_faces[0].quality
    assert distance(astronaut_faces[0].embedding, hopper_faces[0].embedding) > 0.6
    flipped = observe_faces(np.ascontiguousarray(grace_hopper[:, ::-1]))
    assert distance(flipped[0].embedding, hopper_faces[0].embedding) < 0.4


def test_observe_faces_finds_a_small_face_the_default_detector_misses(astronaut: np.ndarray):
    # The astronaut's face (~87 px) shrunk to ~48 px in a 1000 x 800 photo: below what the
    # HOG detector sees at detect_faces' 1024 px, found once observe_faces upsamples.
    photo = pasted(astronaut, 48 / 87, (800, 1000))
    assert detect_faces(photo) == ()
    faces = observe_faces(photo)
    assert len(faces) == 1
    left, _, right, _ = faces[0].face.box
    assert 20 + 0.35 * 282 < (left + right) / 2 < 20 + 0.5 * 282  # where the face was pasted
    assert 40 <= right - left <= 60
    assert observe_faces(photo, min_face_px=80) == []  # and it honours the minimum size
    assert observe_faces(gradient()) == []


def test_plausible_face_rejects_impossible_landmark_layouts(astronaut: np.ndarray):
    face = observe_faces(astronaut)[0].face
    assert plausible_face(face)
    points = face.landmarks.copy()
    eye_y = points[:4, 1].mean()
    upside_down = points.copy()
    upside_down[4, 1] = eye_y - (points[4, 1] - eye_y)  # nose above the eyes
    collapsed = points.copy()
    collapsed[:4] = points[:4].mean(0)  # both eyes on one point
    nose_outside = points.copy()
    nose_outside[4, 0] = points[0, 0] + 0.5 * (points[0, 0] - points[2, 0])  # beyond an eye
    for landmarks in (upside_down, collapsed, nose_outside):
        assert not plausible_face(Face(face.box, landmarks, face.score))
    big_box = (face.box[0] - 200, face.box[1] - 200, face.box[2] + 200, face.box[3] + 200)
    assert not plausible_face(Face(big_box, points, face.score))  # eyes tiny for the box


def test_face_chip_is_the_aligned_crop_behind_the_embedding(grace_hopper: np.ndarray):
    observation = observe_faces(grace_hopper)[0]
    chip = face_chip(grace_hopper, observation.face)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    assert face_chip(grace_hopper, observation.face, size=64).shape == (64, 64, 3)
    # Rotating the photo does not rotate the chip: alignment levels the eyes.
    tilted = observe_faces(rotated(grace_hopper, 10))[0]
    tilted_chip = face_chip(rotated(grace_hopper, 10), tilted.face)
    assert np.abs(tilted_chip.astype(int) - chip).mean() < 20
    embedding = chip_embeddings([chip])[0]
    assert distance(embedding, observation.embedding) < 0.1
    with pytest.raises(ValueError, match="5 landmarks"):
        face_chip(grace_hopper, Face(observation.face.box, np.zeros((68, 2), np.float32)))


def test_face_mask_covers_the_face_softly_and_nothing_far_away(grace_hopper: np.ndarray):
    face = observe_faces(grace_hopper)[0].face
    mask = face_mask(grace_hopper.shape[:2], face)
    assert mask.shape == grace_hopper.shape[:2] and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    eyes = face.landmarks[:4].mean(0)
    nose = face.landmarks[4]
    mouth = nose + (nose - eyes) * 0.6
    for x, y in (eyes, nose, mouth):
        assert mask[round(y), round(x)] == pytest.approx(1.0)
    assert mask[5, 5] == 0.0 and mask[-5, -5] == 0.0 and mask[face.box[1] - 60, round(eyes[0])] == 0
    # A soft edge: a band of intermediate values, wider with more feather.
    soft = np.count_nonzero((mask > 0.05) & (mask < 0.95))
    softer = face_mask(grace_hopper.shape[:2], face, feather=1.0)
    assert soft > 0 and np.count_nonzero((softer > 0.05) & (softer < 0.95)) > 1.5 * soft
    # Most of the box is face, most of the mask is inside the box.
    left, top, right, bottom = face.box
    assert mask[top:bottom, left:right].mean() > 0.5
    assert mask[top:bottom, left:right].sum() > 0.75 * mask.sum()


def test_face_mask_follows_the_landmarks(grace_hopper: np.ndarray):
    face = observe_faces(grace_hopper)[0].face
    shifted = Face(
        (face.box[0] + 100, face.box[1], face.box[2] + 100, face.box[3]),
        face.landmarks + np.array([100, 0], np.float32),
    )
    base, moved = (face_mask((700, 700), f) for f in (face, shifted))
    assert np.allclose(moved[:, 100:], base[:, :-100], atol=1e-5)
    # Landmarks that say nothing (all zero) fall back to an ellipse in the box.
    blank = face_mask((700, 700), Face(face.box, np.zeros((5, 2), np.float32)))
    centre_y, centre_x = (face.box[1] + face.box[3]) // 2, (face.box[0] + face.box[2]) // 2
    assert blank[centre_y, centre_x] == pytest.approx(1.0) and blank[5, 5] == 0.0


# --- train_profile ------------------------------------------------------------------------


def test_training_keeps_the_subject_and_calibrates_a_threshold(
    hopper_model: ProfileModel, grace_hopper: np.ndarray, astronaut: np.ndarray
):
    assert hopper_model.used == (0, 2, 4, 6, 9, 10)
    assert hopper_model.embeddings.shape == (6, 128)
    assert hopper_model.embeddings.dtype == np.float32
    assert THRESHOLD_BOUNDS[0] <= hopper_model.threshold <= THRESHOLD_BOUNDS[1]
    # A new photo of her is recognised, someone else is not.
    unseen = recoloured(rotated(grace_hopper, 3), (0.9, 1.0, 1.1), -10)
    assert hopper_model.distance(observe_faces(unseen)[0].embedding) < hopper_model.threshold
    astronaut_embedding = observe_faces(astronaut)[0].embedding
    assert hopper_model.distance(astronaut_embedding) > hopper_model.threshold
    # From the group shot (photo 10) it kept Hopper's face, not the astronaut's.
    from_group_shot = hopper_model.embeddings[hopper_model.used.index(10)]
    assert distance(from_group_shot, hopper_model.embeddings[0]) < 0.3
    assert distance(from_group_shot, astronaut_embedding) > 0.6


def test_training_reports_every_unusable_photo_with_its_reason(hopper_model: ProfileModel):
    reasons = {r.index: r.reason for r in hopper_model.rejected}
    assert reasons == {
        1: "undecodable",
        3: "no_face",
        5: "subject_not_found",
        7: "too_small",
        8: "blurred",
    }
    for rejection in hopper_model.rejected:
        assert rejection.message.startswith(f"photo {rejection.index + 1}: ")
        assert rejection.detail and not rejection.detail.startswith("photo")
    messages = {r.reason: r.message for r in hopper_model.rejected}
    assert messages["no_face"] == "photo 4: no face found"
    assert f"at least {TRAINING_MIN_FACE_PX} px" in messages["too_small"]


def test_blurred_and_small_photos_are_rejected_for_that_reason(grace_hopper: np.ndarray):
    # The same face is sharp enough when only lightly blurred, and big enough a bit larger:
    # the rejections above are about blur and size, not about the copies being odd.
    light_blur = cv2.GaussianBlur(grace_hopper, (0, 0), 1.5)
    larger = pasted(grace_hopper, 80 / 208, (400, 400))
    model = train_profile([light_blur, larger], min_photos=2)
    assert model.used == (0, 1) and model.rejected == ()
    assert BLURRED_LAPLACIAN_VARIANCE > 0


def test_profile_picture_is_a_square_crop_of_the_subject(hopper_model: ProfileModel):
    picture = hopper_model.picture
    assert picture.shape == (256, 256, 3) and picture.dtype == np.uint8
    faces = observe_faces(picture)
    assert len(faces) == 1
    assert hopper_model.distance(faces[0].embedding) < hopper_model.threshold
    left, _, right, _ = faces[0].face.box
    assert 60 < right - left < 200  # the face with a margin around it, not the whole photo


def test_too_few_usable_photos_raise_with_every_rejection(grace_hopper: np.ndarray):
    with pytest.raises(ProfileTrainingError) as caught:
        train_profile([grace_hopper, None, gradient()], min_photos=2)
    error = caught.value
    assert [(r.index, r.reason) for r in error.rejections] == [(1, "undecodable"), (2, "no_face")]
    assert (error.usable, error.needed) == (1, 2)
    message = str(error)
    assert "Only 1 of 3 photos" in message and "at least 2" in message
    assert "photo 2:" in message and "photo 3: no face found" in message
    with pytest.raises(ProfileTrainingError, match="No photos were given"):
        train_profile([], min_photos=1)
    with pytest.raises(ValueError, match="min_photos"):
        train_profile([grace_hopper], min_photos=0)
    with pytest.raises(ValueError, match=r"photo 2 \(index 1\).*uint8"):
        train_profile([None, np.zeros((80, 80), np.uint8)], min_photos=1)


# --- ProfileModel -------------------------------------------------------------------------


def test_profile_model_round_trips_through_json(hopper_model: ProfileModel):
    text = json.dumps(hopper_model.to_dict())
    restored = ProfileModel.from_dict(json.loads(text))
    assert np.array_equal(restored.embeddings, hopper_model.embeddings)
    assert restored.threshold == hopper_model.threshold
    assert restored.used == hopper_model.used
    assert restored.rejected == hopper_model.rejected
    assert restored.picture.shape == (0, 0, 3)
    query = hopper_model.embeddings[0] + 0.01
    assert restored.distance(query) == hopper_model.distance(query)
    with_picture = ProfileModel.from_dict(json.loads(text), picture=hopper_model.picture)
    assert with_picture.picture is hopper_model.picture
    for broken in ({}, {"version": 2}, {**hopper_model.to_dict(), "embeddings": [[0.0] * 3]}):
        with pytest.raises(ValueError):
            ProfileModel.from_dict(broken)


def _model(points: list[float], threshold: float) -> ProfileModel:
    """A profile whose embeddings lie on the first axis at ``points``."""
    embeddings = np.zeros((len(points), 128), np.float32)
    embeddings[:, 0] = points
    return ProfileModel(embeddings, threshold, np.zeros((0, 0, 3), np.uint8), (), ())


def _face(x: float) -> np.ndarray:
    embedding = np.zeros(128, np.float32)
    embedding[0] = x
    return embedding


def test_profile_distance_is_the_mean_over_the_nearest_half():
    assert _model([0.0], 0.5).distance(_face(0.3)) == pytest.approx(0.3)
    # Four kept embeddings: the mean of the two nearest, a stray one does not count.
    four = _model([0.0, 0.1, 0.2, 5.0], 0.5)
    assert four.distance(_face(0.0)) == pytest.approx(0.05)
    assert four.embeddings.flags.writeable is False
    with pytest.raises(ValueError):
        _model([], 0.5)


# --- assign_faces -------------------------------------------------------------------------


def test_assign_faces_one_to_one_on_a_two_person_photo(
    astronaut: np.ndarray,
    grace_hopper: np.ndarray,
    hopper_model: ProfileModel,
    astronaut_model: ProfileModel,
):
    # Both faces are over 80 px: no need to upsample this one.
    faces = observe_faces(side_by_side(grace_hopper, astronaut), min_face_px=70)
    assert len(faces) == 2
    left_to_right = sorted(range(2), key=lambda i: faces[i].face.box[0])
    embeddings = [faces[i].embedding for i in left_to_right]
    both = [("hopper", hopper_model), ("astronaut", astronaut_model)]
    assert assign_faces(embeddings, both) == {0: "hopper", 1: "astronaut"}
    assert assign_faces(embeddings, both[::-1]) == {0: "hopper", 1: "astronaut"}
    assert assign_faces(embeddings, [both[1]]) == {1: "astronaut"}  # Hopper stays unknown
    assert assign_faces(embeddings, [both[0], both[0]]) == {0: "hopper"}  # repeated id
    # The same person twice in one photo: the profile goes to one face only.
    assert len(assign_faces([embeddings[0], embeddings[0]], both)) == 1
    assert assign_faces([], both) == {} and assign_faces(embeddings, []) == {}


def test_assign_faces_does_not_give_away_a_clear_match():
    # Face A is clearly P1 (0.1) and barely P2 (0.4); face B barely P1 (0.45), not P2.
    # Two matches (A->P2, B->P1) would be the larger assignment, but worse evidence.
    p1, p2 = _model([0.0], 0.5), _model([0.5], 0.5)
    assert assign_faces([_face(0.1), _face(-0.45)], [("p1", p1), ("p2", p2)]) == {0: "p1"}
    # Outside every threshold: nobody.
    assert assign_faces([_face(3.0)], [("p1", p1), ("p2", p2)]) == {}


def test_rejection_detail_strips_only_its_own_prefix():
    rejection = PhotoRejection(11, "no_face", "photo 12: no face found")
    assert rejection.detail == "no face found"
