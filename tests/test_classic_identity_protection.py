"""The classic engine's hooks for identity-preserving re-renders (issue 6, item 4):
``RemixRequest.variation_offset`` renders one variation again on its own, and
``RemixRequest.identity_protection`` changes the faces less, and nothing but the faces.

Content is scikit-image's astronaut (Eileen Collins, one face); the reference is its
coffee photo, a strongly different warm palette, so the look really moves the face.
Outputs are 512 x 512 to keep the renders cheap.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
from skimage import data

from photoremix.engines import Engine, RemixOutput, RemixRequest, get_engine
from photoremix.engines.classic.engine import guard_mask
from photoremix.vision.faces import Face
from photoremix.vision.identity import observe_faces

OUTPUT_SIZE = (512, 512)  # (width, height)
SEED = 41


@pytest.fixture(scope="module")
def engine() -> Engine:
    return get_engine("classic")


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return data.coffee()


@pytest.fixture(scope="module")
def faces(astronaut: np.ndarray) -> tuple[Face, ...]:
    # The faces the service hands the engine (the raw detector also finds a badge).
    found = tuple(observation.face for observation in observe_faces(astronaut))
    assert len(found) == 1  # the tests below read one face box
    return found


def render(
    engine: Engine,
    content: np.ndarray,
    reference: np.ndarray,
    faces: tuple[Face, ...],
    **fields: Any,
) -> list[RemixOutput]:
    request = RemixRequest(
        content=content,
        reference=reference,
        output_size=OUTPUT_SIZE,
        faces=faces,
        seed=SEED,
        **fields,
    )
    return engine.remix(request)


def face_change(output: np.ndarray, content: np.ndarray, face: Face) -> float:
    """Mean absolute difference (0-255) between ``output`` and ``content`` resized to the
    output size, inside the face box scaled to the output."""
    height, width = output.shape[:2]
    resized = cv2.resize(content, (width, height), interpolation=cv2.INTER_AREA).astype(np.int16)
    scale_x, scale_y = width / content.shape[1], height / content.shape[0]
    left, top, right, bottom = face.box
    rows = slice(round(top * scale_y), round(bottom * scale_y))
    cols = slice(round(left * scale_x), round(right * scale_x))
    return float(np.abs(output[rows, cols].astype(np.int16) - resized[rows, cols]).mean())


@pytest.fixture(scope="module")
def three_variations(
    engine: Engine, astronaut: np.ndarray, reference: np.ndarray, faces: tuple[Face, ...]
) -> list[RemixOutput]:
    return render(engine, astronaut, reference, faces, num_outputs=3)


@pytest.mark.parametrize("offset", [1, 2])
def test_variation_offset_renders_the_same_pixels_as_that_output_of_the_full_request(
    engine: Engine,
    astronaut: np.ndarray,
    reference: np.ndarray,
    faces: tuple[Face, ...],
    three_variations: list[RemixOutput],
    offset: int,
) -> None:
    full = three_variations

    [single] = render(engine, astronaut, reference, faces, num_outputs=1, variation_offset=offset)

    # Variations differ, so matching output `offset` (and not output 0) means something.
    assert not np.array_equal(full[offset].image, full[0].image)
    assert np.array_equal(single.image, full[offset].image)
    assert single.report.variation == full[offset].report.variation == offset
    assert single.report.seed == full[offset].report.seed == SEED + offset
    assert single.report.variation_description == full[offset].report.variation_description


def test_identity_protection_changes_the_face_less_and_nothing_else(
    engine: Engine, astronaut: np.ndarray, reference: np.ndarray, faces: tuple[Face, ...]
) -> None:
    [normal] = render(engine, astronaut, reference, faces)
    [protected] = render(engine, astronaut, reference, faces, identity_protection=1.0)

    assert normal.report.applied["identity_protection"] == 0.0
    assert protected.report.applied["identity_protection"] == 1.0
    normal_change = face_change(normal.image, astronaut, faces[0])
    protected_change = face_change(protected.image, astronaut, faces[0])
    assert protected_change < normal_change
    # Protection acts through the face guard only: where the guard mask is 0 the two
    # renders are the same pixels (same seed, same variation). The mask is eroded by the
    # reach of the Lanczos enlargement after the render.
    guarded = guard_mask(faces, astronaut, OUTPUT_SIZE) > 0
    outside = cv2.dilate(guarded.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    assert outside.mean() > 0.5
    assert np.array_equal(normal.image[outside], protected.image[outside])
    assert not np.array_equal(normal.image, protected.image)


def test_identity_protection_is_clamped_to_0_1(
    engine: Engine, astronaut: np.ndarray, reference: np.ndarray, faces: tuple[Face, ...]
) -> None:
    [full] = render(engine, astronaut, reference, faces, identity_protection=1.0)
    [beyond] = render(engine, astronaut, reference, faces, identity_protection=3.0)

    assert beyond.report.applied["identity_protection"] == 1.0
    assert np.array_equal(beyond.image, full.image)
