"""The instruction text generative engines (gemini, qwen) send with the attached images.

Both models read a list of images plus one text. The text names each image's role by its
position ("Image 1 is the content photo ..."), says what to take from the style reference
(lighting, palette, mood, artistic treatment) and what to keep from the content photo
(the people, their identity, pose and the composition), names the identity photos of
recognised people, and ends with the user's own instructions, which win where they
conflict with the defaults.

Roles, in the order the images are attached:
    ROLE_CONTENT   the photo to re-render (exactly one)
    ROLE_REFERENCE the style reference (exactly one)
    ROLE_IDENTITY  a face photo of a recognised person; the i-th identity image is named
                   by the i-th entry of ``identity_names``
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from photoremix.engines.base import IdentityImage

ROLE_CONTENT: Final = "content"
ROLE_REFERENCE: Final = "reference"
ROLE_IDENTITY: Final = "identity"
ROLES: Final = (ROLE_CONTENT, ROLE_REFERENCE, ROLE_IDENTITY)

# identity_protection at or above this asks for untouched faces (see remix_instruction).
STRICT_PROTECTION: Final = 0.5


def remix_instruction(
    user_prompt: str | None,
    identity_names: Sequence[str],
    identity_protection: float,
    image_roles: Sequence[str],
    *,
    image_label: str = "Image",
    face_count: int = 0,
    notes: Sequence[str] = (),
) -> str:
    """The instruction for a remix of the images attached in the order of ``image_roles``.

    user_prompt: the user's prompt with ``[[profile_id]]`` already replaced by names such
        as "the person on the left"; None or blank for none.
    identity_names: one name per ROLE_IDENTITY entry of ``image_roles``, in order.
    identity_protection: 0..1; above 0 the face wording gets stricter, and from
        STRICT_PROTECTION on it asks to leave faces untouched except for light and colour
        (the service raises it when a re-render follows a face that drifted).
    image_roles: the role of each attached image (ROLES), e.g. ``["content",
        "reference", "identity"]``; exactly one content and one reference image.
    image_label: what the model calls an attached image: "Image" (Gemini), "Picture"
        (Qwen-Image-Edit prefixes its inputs with "Picture 1:", "Picture 2:", ...).
    face_count: faces detected in the content photo; when any, a sentence names how many
        must stay recognisable.
    notes: extra engine-specific sentences (strength, variation hints), placed before the
        user's instructions so that the user's words come last.

    Raises ValueError when the roles are not one content image, one reference image and
    as many identity images as ``identity_names``.
    """
    unknown = sorted(set(image_roles) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown image roles {unknown}; known roles: {', '.join(ROLES)}")
    if image_roles.count(ROLE_CONTENT) != 1 or image_roles.count(ROLE_REFERENCE) != 1:
        raise ValueError(f"need exactly one content and one reference image, got {image_roles}")
    if image_roles.count(ROLE_IDENTITY) != len(identity_names):
        raise ValueError(
            f"{image_roles.count(ROLE_IDENTITY)} identity images but "
            f"{len(identity_names)} identity names"
        )

    content = f"{image_label} {image_roles.index(ROLE_CONTENT) + 1}"
    reference = f"{image_label} {image_roles.index(ROLE_REFERENCE) + 1}"
    identity_labels = [
        f"{image_label} {position + 1}"
        for position, role in enumerate(image_roles)
        if role == ROLE_IDENTITY
    ]

    role_sentences = []
    names = iter(identity_names)
    for position, role in enumerate(image_roles):
        label = f"{image_label} {position + 1}"
        if role == ROLE_CONTENT:
            role_sentences.append(f"{label} is the content photo.")
        elif role == ROLE_REFERENCE:
            role_sentences.append(f"{label} is the style reference.")
        else:
            role_sentences.append(f"{label} shows {next(names)}.")

    paragraphs = [
        " ".join(role_sentences),
        (
            f"Re-render the content photo ({content}) in the look of the style reference "
            f"({reference}): take its lighting, colour palette, mood and artistic treatment "
            "(medium, texture, grain, contrast). Keep the content photo's scene, composition "
            "and framing, and keep every person in it: their identity, facial features, "
            "expression, pose and body proportions. Do not copy people, objects or layout "
            "from the style reference."
        ),
    ]
    if identity_labels:
        paragraphs.append(
            f"Use {_join(identity_labels)} only as identity references: each of these people "
            "must stay clearly recognisable in the result. Do not add them to the picture if "
            "they are not in the content photo."
        )
    paragraphs.append(_face_wording(identity_protection))
    if face_count == 1:
        paragraphs.append("The content photo shows one face; keep that person recognisable.")
    elif face_count > 1:
        paragraphs.append(
            f"The content photo shows {face_count} faces; keep every one recognisable."
        )
    paragraphs.extend(note.strip() for note in notes if note.strip())
    if user_prompt and user_prompt.strip():
        paragraphs.append(
            "The user's instructions follow; where they conflict with the above, follow "
            "them, but keep everyone recognisable: " + user_prompt.strip()
        )
    return "\n\n".join(paragraphs)


def _face_wording(identity_protection: float) -> str:
    if identity_protection >= STRICT_PROTECTION:
        return (
            "Faces matter most: leave every face exactly as it is in the content photo "
            "(features, proportions, skin, hair line, expression) and change only the light "
            "and colour falling on it."
        )
    if identity_protection > 0:
        return (
            "Take extra care with faces: keep each face's features, proportions and "
            "expression exactly as in the content photo; restyle around them."
        )
    return "Faces must remain the same people, with their own features and expressions."


def _join(items: Sequence[str]) -> str:
    """Join labels the English way: "A", "A and B", "A, B and C"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def strength_note(style_strength: float | None) -> str:
    """A sentence for ``RemixRequest.style_strength`` (0..1; None = the model's own)."""
    if style_strength is None:
        return ""
    if style_strength < 0.4:
        return "Apply the reference's look subtly; the result should stay close to the photo."
    if style_strength > 0.8:
        return "Apply the reference's look fully."
    return "Apply the reference's look at moderate strength."


def identities_within(
    identities: Sequence[IdentityImage], room: int
) -> tuple[tuple[IdentityImage, ...], list[str]]:
    """The identity photos that fit the model's ``room`` spare input images, in order, and
    the names of those left out (reported, never dropped silently)."""
    return tuple(identities[:room]), [identity.name for identity in identities[room:]]


def identity_report(
    face_count: int,
    sent: Sequence[IdentityImage],
    left_out: Sequence[str],
    identity_protection: float,
    style_strength: float | None,
) -> dict[str, Any]:
    """The ``applied`` fields every generative engine reports about faces and identities."""
    report: dict[str, Any] = {
        "faces_in_content": face_count,
        "identity_photos": [identity.name for identity in sent],
        "identity_protection": round(float(identity_protection), 3),
        "style_strength": style_strength,
        "faces": face_treatment(face_count, sent, identity_protection),
    }
    if left_out:
        report["identity_photos_left_out"] = list(left_out)
    return report


def face_treatment(
    face_count: int, identities: Sequence[IdentityImage], identity_protection: float
) -> str:
    """What an engine did for the faces, for its report's ``applied["faces"]``."""
    if face_count == 0 and not identities:
        return "no faces found in the content photo; the prompt still asks to keep people"
    said = f"asked the model to keep the {face_count} detected faces recognisable"
    if identities:
        said += f", with identity photos of {len(identities)} recognised people"
    if identity_protection > 0:
        said += f", with stricter face wording (protection {identity_protection:.2f})"
    return said
