"""Who is in a remix: recognise candidate profiles in the input, check every output.

Before rendering, every face of the input is observed (box, landmarks, embedding) and
matched one-to-one to the candidate profiles. The engine gets the faces (it protects each
of them) and a prompt whose ``[[profile_id]]`` markers name people by position instead.

After rendering, each output is checked face by face: the embedding of the same box in
the output is compared with the input's (identity drift) and, for a profiled face, with
the profile (is that person still recognised?). ``known_subjects.counts`` and billing
come from the second; the re-render decision from the first.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from photoremix.engines import Engine, RemixOutput, RemixRequest
from photoremix.engines.base import ProgressCallback
from photoremix.vision.faces import Face, detect_faces, embedding_distance, face_embedding
from photoremix.vision.identity import FaceObservation, ProfileModel, assign_faces, observe_faces

_PROFILE_MENTION = re.compile(r"\[\[([^\[\]]+)\]\]")


@dataclass(frozen=True)
class InputIdentity:
    """The input's faces (largest first) and which profile each was matched to."""

    faces: tuple[FaceObservation, ...]
    assigned: dict[int, str]  # face index -> profile id
    image_width: int
    # Each face's embedding computed exactly as outputs are checked (landmarks re-fitted in
    # the box): observe_faces' aligned-chip embeddings differ from these by ~0.05 on an
    # unchanged image, which would swamp the drift being measured.
    box_embeddings: tuple[np.ndarray, ...]

    def position_of(self, profile_id: str) -> str:
        """A neutral way to name the profile's person in a prompt ("the person on the left")."""
        indices = [i for i, pid in self.assigned.items() if pid == profile_id]
        if not indices or len(self.faces) < 2:
            return "the person"
        box = self.faces[indices[0]].face.box
        centre = (box[0] + box[2]) / 2 / self.image_width
        if centre < 0.4:
            return "the person on the left"
        if centre > 0.6:
            return "the person on the right"
        return "the person in the middle"


@dataclass(frozen=True)
class FaceCheck:
    """One input face in one output: how far it moved, and whose it still is."""

    face_index: int
    box: tuple[int, int, int, int]  # output pixels
    distance: float  # embedding distance input face -> same box in the output
    profile_id: str | None
    recognised: bool  # the profile's person is recognised in the output

    def as_dict(self) -> dict[str, object]:
        return {
            "face_index": self.face_index,
            "box": list(self.box),
            "distance": round(self.distance, 4),
            "profile_id": self.profile_id,
            "recognised": self.recognised,
        }


def recognise_input(
    content: np.ndarray, candidates: Sequence[tuple[str, ProfileModel]]
) -> InputIdentity:
    """Observe the input's faces and match them one-to-one to ``candidates``."""
    faces = tuple(observe_faces(content))
    assigned = (
        assign_faces([face.embedding for face in faces], candidates) if faces and candidates else {}
    )
    return InputIdentity(
        faces=faces,
        assigned=assigned,
        image_width=content.shape[1],
        box_embeddings=tuple(face_embedding(content, face.face.box) for face in faces),
    )


def known_faces(content: np.ndarray, faces: Sequence[Face]) -> InputIdentity:
    """An ``InputIdentity`` for faces found elsewhere (e.g. by the evaluation harness)."""
    embeddings = tuple(face_embedding(content, face.box) for face in faces)
    return InputIdentity(
        faces=tuple(
            FaceObservation(face=face, embedding=embedding, quality=1.0)
            for face, embedding in zip(faces, embeddings, strict=True)
        ),
        assigned={},
        image_width=content.shape[1],
        box_embeddings=embeddings,
    )


def mentioned_profiles(profile_ids: Sequence[str], prompt: str | None) -> list[str]:
    """``profile_ids`` plus every ``[[profile_id]]`` in ``prompt``, merged, first mention first."""
    mentioned = list(profile_ids)
    if prompt:
        mentioned += [match.strip() for match in _PROFILE_MENTION.findall(prompt)]
    return list(dict.fromkeys(mentioned))


def engine_prompt(prompt: str | None, identity: InputIdentity) -> str | None:
    """The prompt with each ``[[profile_id]]`` replaced by a neutral name for that person."""
    if not prompt:
        return prompt
    return _PROFILE_MENTION.sub(lambda m: identity.position_of(m.group(1).strip()), prompt)


def check_output(
    output: np.ndarray,
    identity: InputIdentity,
    content_shape: tuple[int, ...],
    candidates: Sequence[tuple[str, ProfileModel]],
) -> list[FaceCheck]:
    """Compare every input face with the same place in ``output`` ((H, W, 3) uint8)."""
    scale_x = output.shape[1] / content_shape[1]
    scale_y = output.shape[0] / content_shape[0]
    models = dict(candidates)
    checks = []
    for index, observation in enumerate(identity.faces):
        left, top, right, bottom = observation.face.box
        box = (
            round(left * scale_x),
            round(top * scale_y),
            round(right * scale_x),
            round(bottom * scale_y),
        )
        embedding = face_embedding(output, box)
        profile_id = identity.assigned.get(index)
        recognised = False
        if profile_id is not None:
            model = models[profile_id]
            recognised = model.distance(embedding) < model.threshold  # as in assign_faces
        checks.append(
            FaceCheck(
                face_index=index,
                box=box,
                distance=embedding_distance(identity.box_embeddings[index], embedding),
                profile_id=profile_id,
                recognised=recognised,
            )
        )
    return checks


def worst_distance(checks: Sequence[FaceCheck]) -> float:
    return max((check.distance for check in checks), default=0.0)


@dataclass
class CheckedOutput:
    """An output after the identity check: its face checks and how many renders it took."""

    output: RemixOutput
    checks: list[FaceCheck]
    attempts: int

    @property
    def recognised_profiles(self) -> list[str]:
        return sorted({c.profile_id for c in self.checks if c.recognised and c.profile_id})


def render_keeping_identity(
    render: Callable[[RemixRequest], list[RemixOutput]],
    request: RemixRequest,
    who: InputIdentity,
    candidates: Sequence[tuple[str, ProfileModel]],
    *,
    max_distance: float,
    rerender_attempts: int,
    before_each: Callable[[], None] = lambda: None,
) -> list[CheckedOutput]:
    """Render ``request`` and re-render every output whose faces drifted too far.

    render: the engine call (``engine.remix`` or a wrapper of it) for a request.
    request: must carry ``faces`` equal to ``who``'s, so the engine guards those faces.
    max_distance: a face farther than this from the input (embedding distance) triggers a
        re-render of that variation alone, with ``identity_protection`` rising to 1 over
        ``rerender_attempts`` attempts; the closest attempt is kept, whatever its distance,
        and every face's distance is written to the report (never hidden).
    before_each: called before each check or re-render (e.g. to stop at a deadline).
    """
    checked = []
    for index, output in enumerate(render(request)):
        before_each()
        started = time.perf_counter()
        checks = check_output(output.image, who, request.content.shape, candidates)
        attempts = 1
        while worst_distance(checks) > max_distance and attempts <= rerender_attempts:
            before_each()
            retry = replace(
                request,
                num_outputs=1,
                variation_offset=request.variation_offset + index,
                identity_protection=attempts / rerender_attempts,
            )
            candidate = render(retry)[0]
            candidate_checks = check_output(candidate.image, who, request.content.shape, candidates)
            attempts += 1
            if worst_distance(candidate_checks) < worst_distance(checks):
                output, checks = candidate, candidate_checks
        output.report.metrics["faces"] = [check.as_dict() for check in checks]
        output.report.metrics["identity_attempts"] = attempts
        output.report.metrics["identity_max_distance"] = max_distance
        output.report.timings["identity_check"] = time.perf_counter() - started
        checked.append(CheckedOutput(output=output, checks=checks, attempts=attempts))
    return checked


class IdentityKeepingEngine:
    """Any engine plus the service's identity check and re-render (no profiles).

    What the service runs for each remix, as an ``Engine``: the evaluation harness uses it
    to measure the pipeline as served (``photoremix eval --identity-guard``).
    """

    def __init__(self, engine: Engine, *, max_distance: float, rerender_attempts: int) -> None:
        self.engine = engine
        self.name = f"{engine.name}+identity"
        self.max_distance = max_distance
        self.rerender_attempts = rerender_attempts

    def remix(
        self, request: RemixRequest, progress: ProgressCallback | None = None
    ) -> list[RemixOutput]:
        faces = request.faces if request.faces is not None else detect_faces(request.content)
        request = replace(request, faces=tuple(faces))
        checked = render_keeping_identity(
            self.engine.remix,
            request,
            known_faces(request.content, faces),
            [],
            max_distance=self.max_distance,
            rerender_attempts=self.rerender_attempts,
        )
        if progress is not None:
            progress(len(checked), request.num_outputs)
        return [item.output for item in checked]
