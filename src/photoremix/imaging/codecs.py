"""Turn user-supplied image data into pixels, and pixels into files.

``decode_image`` accepts bytes, base64 text (raw or a ``data:`` URI) or a file path, and
returns the package's image convention: (H, W, 3) uint8 sRGB RGB, C-contiguous, with EXIF
orientation applied, an embedded ICC profile converted to sRGB, transparency flattened onto
white, and at most MAX_LONG_SIDE pixels on the long side. Anything a user can get wrong
raises ``ImageError`` with a ``code`` a program can branch on and a message a person can
act on.

``encode_image`` writes JPEG (quality 95, no chroma subsampling, sRGB profile embedded) or
PNG.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import warnings
from functools import cache
from pathlib import Path
from typing import Final, Literal

import numpy as np
import pillow_heif
from PIL import Image, ImageCms, ImageOps

pillow_heif.register_heif_opener()

logger = logging.getLogger(__name__)

MAX_LONG_SIDE: Final = 4096
MIN_SIDE: Final = 64
# Refused before any pixel is decoded. 100 MP is above every common camera (phones shoot
# 12-50 MP, full-frame bodies 24-61 MP) and still bounds the decoded RGB buffer to 300 MB;
# beyond it an upload is far more likely a decompression bomb than a photo.
MAX_PIXELS: Final = 100_000_000
# Descriptions of ICC profiles that are sRGB itself (Pillow's built-in one, which our
# outputs embed; the IEC 61966-2.1 profile cameras, phones and editors embed): pixels
# carrying them are used as they are.
SRGB_PROFILE_DESCRIPTIONS: Final = frozenset(
    {"sRGB built-in", "sRGB IEC61966-2.1", "sRGB IEC61966-2-1 black scaled", "sRGB"}
)
# Pillow's names for the formats we decode; anything else is refused before decoding.
SUPPORTED_FORMATS: Final = ("JPEG", "PNG", "WEBP", "HEIF")
_SUPPORTED_NAMES: Final = "JPEG, PNG, WebP or HEIC/HEIF"
# Phone cameras write multi-picture JPEGs, which Pillow reports as "MPO".
_FORMAT_ALIASES: Final = {"MPO": "JPEG"}

ImageErrorCode = Literal[
    "empty",
    "bad_base64",
    "undecodable",
    "truncated",
    "unsupported_format",
    "too_many_pixels",
    "too_small",
]
ImageFormat = Literal["jpg", "png"]
_MEDIA_TYPES: Final[dict[str, str]] = {"jpg": "image/jpeg", "png": "image/png"}

# What decoders raise on bad data (UnidentifiedImageError is an OSError; libheif raises
# ValueError or RuntimeError).
_DECODE_ERRORS: Final = (OSError, ValueError, SyntaxError, EOFError, RuntimeError)
_WHITESPACE: Final = re.compile(r"\s+")


class ImageError(ValueError):
    """User-supplied image data cannot be used; the message is safe to show to a user.

    code: one of ImageErrorCode, for programs (e.g. to pick an HTTP status).
    """

    def __init__(self, code: ImageErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ImageErrorCode = code

    def __reduce__(self) -> tuple[type[ImageError], tuple[ImageErrorCode, str]]:
        # Survive pickling (process pools): the default would call __init__(message).
        return type(self), (self.code, str(self))


def decode_image(
    source: bytes | str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Decode a JPEG, PNG, WebP or HEIC/HEIF image to (H, W, 3) uint8 sRGB RGB.

    source: image bytes; a ``str`` holding base64 (whitespace, missing padding and the
        url-safe alphabet are tolerated) or a ``data:`` URI; or a path (``os.PathLike``;
        a plain ``str`` is never read as a path).
    max_pixels: refuse images with more pixels than this, judged from the file header
        before decoding. Pillow's own hard limit (2 * Image.MAX_IMAGE_PIXELS) also applies.

    Returns a C-contiguous writable array with at most MAX_LONG_SIDE pixels on its long
    side (larger images are downscaled with Lanczos) and at least MIN_SIDE on its short one.
    Raises ImageError (see ImageErrorCode); a missing or unreadable file raises OSError.
    """
    data = _read_source(source)
    image = _open(data, max_pixels)
    try:
        image.load()
    except Image.DecompressionBombError as error:
        raise _too_many_pixels(max_pixels) from error
    except _DECODE_ERRORS as error:
        raise _unreadable(data, error) from error

    icc_profile = image.info.get("icc_profile")
    image = _apply_orientation(image)
    image = _to_8bit(image)
    # Shrink before the colour conversion, which then touches at most 16.8 MP.
    image = _limit_long_side(image)
    image = _to_srgb(image, icc_profile)
    image = _flatten_onto_white(image)
    return np.array(image, dtype=np.uint8)  # a writable, C-contiguous copy


def encode_image(image: np.ndarray, fmt: ImageFormat) -> bytes:
    """Encode an (H, W, 3) uint8 sRGB image as ``"jpg"`` or ``"png"``.

    JPEG: quality 95, 4:4:4 (no chroma subsampling, which would blur coloured edges),
    optimised Huffman tables, sRGB ICC profile embedded. PNG: lossless, no extra metadata.
    Raises ValueError for a bad array or an unknown format.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"encode_image needs an (H, W, 3) array, got {shape}.")
    if image.dtype != np.uint8:
        raise ValueError(f"encode_image needs a uint8 array, got {image.dtype}.")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"encode_image got an empty image of shape {image.shape}.")
    media_type(fmt)  # validates fmt

    buffer = io.BytesIO()
    picture = Image.fromarray(np.ascontiguousarray(image))
    if fmt == "jpg":
        picture.save(
            buffer,
            "JPEG",
            quality=95,
            subsampling=0,  # 4:4:4
            # No optimize=True: it doubles the encode time for ~5 % smaller files, and
            # Pillow's buffer overflows on incompressible (noisy) images with it.
            icc_profile=_srgb_icc_bytes(),
        )
    else:
        picture.save(buffer, "PNG")
    return buffer.getvalue()


def media_type(fmt: ImageFormat) -> str:
    """The media (MIME) type of an ``encode_image`` format: "image/jpeg" or "image/png"."""
    if fmt not in _MEDIA_TYPES:
        raise ValueError(f"Unknown image format {fmt!r}; use one of {sorted(_MEDIA_TYPES)}.")
    return _MEDIA_TYPES[fmt]


# --- reading the source ---------------------------------------------------------------


def _read_source(source: bytes | str | os.PathLike[str]) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str):
        data = decode_image_text(source)
    elif isinstance(source, os.PathLike):
        data = Path(source).read_bytes()
    else:
        raise TypeError(f"decode_image takes bytes, str or a path, not {type(source).__name__}.")
    if not data:
        raise ImageError("empty", "The image is empty (0 bytes).")
    return data


def decode_image_text(text: str) -> bytes:
    """The encoded image bytes in raw base64 or a ``data:`` URI; raises ``ImageError``.

    The URI's media type is not trusted (the bytes are identified by their content), and
    a payload is read as base64 even when ``;base64`` is missing, a common client slip.
    """
    text = text.strip()
    if text[:5].lower() == "data:":
        _, comma, text = text.partition(",")
        if not comma:
            raise ImageError(
                "bad_base64",
                "The data: URI has no ',' before the image data; "
                "expected data:image/<type>;base64,<data>.",
            )
    if not text.rstrip("="):
        raise ImageError("empty", "The image text is empty.")
    try:
        # Fast path for well-formed standard base64 (what almost every client sends):
        # cleaning a multi-megabyte string costs more than decoding it.
        return base64.b64decode(text, validate=True)
    except ValueError:
        pass
    compact = _WHITESPACE.sub("", text).rstrip("=")
    if not compact:
        raise ImageError("empty", "The image text is empty.")
    if compact.lower().startswith(("http://", "https://")):
        raise ImageError("bad_base64", "URLs are not fetched; send the image itself as base64.")
    # The url-safe alphabet uses - and _ for + and /; padding is re-added to a multiple of 4.
    compact = compact.replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except ValueError as error:  # binascii.Error, or non-ASCII text
        raise ImageError(
            "bad_base64",
            "The image text is not valid base64 (it has characters outside the base64 "
            "alphabet, or a length no base64 text can have).",
        ) from error


# --- opening and validating -----------------------------------------------------------


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse what must not be decoded."""
    try:
        with warnings.catch_warnings():
            # Pillow warns above its global 89.5 MP limit, which is below MAX_PIXELS; the
            # check below on the same header numbers makes the decision instead. (Pillow
            # still raises DecompressionBombError above twice its limit.) catch_warnings is
            # not thread-safe before Python 3.14: concurrent decodes may leave this filter
            # installed process-wide, which that check makes harmless.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise _too_many_pixels(max_pixels) from error
    except _DECODE_ERRORS as error:
        raise _unreadable(data, error) from error

    found = _FORMAT_ALIASES.get(image.format or "", image.format)
    if found not in SUPPORTED_FORMATS:
        raise ImageError(
            "unsupported_format",
            f"{image.format} images are not supported; send {_SUPPORTED_NAMES}.",
        )
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            "too_many_pixels",
            f"The image is {_px(width, height)} ({width * height / 1e6:.1f} MP); "
            f"at most {max_pixels / 1e6:g} MP are accepted. Please send a smaller image.",
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            "too_small",
            f"The image is only {_px(width, height)}; "
            f"images must be at least {MIN_SIDE} px on each side.",
        )
    if min(_fitted_size(width, height)) < MIN_SIDE:
        raise ImageError(
            "too_small",
            f"The image is {_px(width, height)}, too elongated: scaled to {MAX_LONG_SIDE} px "
            f"on its long side it would be under {MIN_SIDE} px on its short side.",
        )
    return image


def _px(width: int, height: int) -> str:
    return f"{width}\N{MULTIPLICATION SIGN}{height} px"


def _fitted_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) scaled down, aspect kept, to at most MAX_LONG_SIDE on the long side."""
    long_side = max(width, height)
    if long_side <= MAX_LONG_SIDE:
        return width, height
    scale = MAX_LONG_SIDE / long_side
    return max(1, round(width * scale)), max(1, round(height * scale))


def _too_many_pixels(max_pixels: int) -> ImageError:
    return ImageError(
        "too_many_pixels",
        f"The image has too many pixels; at most {max_pixels / 1e6:g} MP are accepted. "
        "Please send a smaller image.",
    )


def _unreadable(data: bytes, error: BaseException) -> ImageError:
    if _is_cut_short(data, error):
        return ImageError(
            "truncated",
            "The image file is incomplete: its data ends early (an interrupted upload or "
            "download?). Please send the complete file.",
        )
    return ImageError(
        "undecodable",
        f"The data could not be read as an image: it is damaged or not an image file. "
        f"Supported formats: {_SUPPORTED_NAMES}.",
    )


def _is_cut_short(data: bytes, error: BaseException) -> bool:
    """Whether a decode failure looks like a truncated file rather than a damaged one."""
    message = str(error).lower()
    if isinstance(error, EOFError) or "truncated" in message or "end of file" in message:
        return True  # what Pillow (JPEG, PNG) and libheif (HEIF) say
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        # Pillow's WebP decoder only says "could not create decoder object", but the RIFF
        # header states the whole file's length.
        return int.from_bytes(data[4:8], "little") + 8 > len(data)
    return False


# --- pixel conversions ----------------------------------------------------------------


def _apply_orientation(image: Image.Image) -> Image.Image:
    """Rotate/flip as the EXIF Orientation tag says (HEIF is already upright on open)."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except (*_DECODE_ERRORS, TypeError, KeyError) as error:
        # A damaged EXIF block must not cost the user their photo.
        logger.info("Ignoring unreadable EXIF orientation: %s", error)
    return image


def _to_8bit(image: Image.Image) -> Image.Image:
    """8-bit RGB, or RGBA when there is transparency. L and CMYK stay as they are, so that
    a matching ICC profile can still convert them; _flatten_onto_white makes them RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit greyscale PNG. Pillow's convert("L") clips at 255 instead of scaling.
        levels = np.asarray(image).astype(np.float32) / 257.0
        image = Image.fromarray(np.clip(np.round(levels), 0, 255).astype(np.uint8))
    has_alpha = "A" in image.getbands() or "a" in image.getbands()
    if has_alpha or "transparency" in image.info:  # P, L or RGB with a transparent colour
        return image.convert("RGBA")
    if image.mode in ("RGB", "L", "CMYK"):
        return image
    return image.convert("RGB")


def _limit_long_side(image: Image.Image) -> Image.Image:
    size = _fitted_size(image.width, image.height)
    if size == image.size:
        return image
    # reducing_gap: shrink by an integer factor with a box filter first, then Lanczos;
    # Pillow documents the result as indistinguishable from plain Lanczos, and faster.
    # Pillow resizes RGBA premultiplied, so transparent pixels do not bleed colour.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """Convert from the embedded ICC profile to sRGB; no profile means sRGB already."""
    if not icc_profile:
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        if _is_srgb(source):
            # Converting sRGB to sRGB would cost ~110 ms per 4 MP image for nothing.
            return image
        output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(
            image, source, _srgb_profile(), outputMode=output_mode
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as error:
        # Broken profiles, or ones that do not match the pixels (a CMYK profile on an RGB
        # image), are common in the wild; showing the pixels as sRGB beats refusing them.
        logger.info("Ignoring unusable ICC profile: %s", error)
        return image
    assert converted is not None  # profileToProfile returns None only with inPlace=True
    return converted


def _flatten_onto_white(image: Image.Image) -> Image.Image:
    if image.mode == "RGBA":
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)
    return image.convert("RGB")


@cache
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    """Whether ``profile`` is one of the common encodings of sRGB itself.

    Judged by its description, not its bytes: the profile this module embeds (and Pillow's
    "sRGB built-in" in general) carries its creation time in the header, so the same
    profile made by another process, or a second later, differs byte for byte.
    """
    return ImageCms.getProfileDescription(profile).strip() in SRGB_PROFILE_DESCRIPTIONS


@cache
def _srgb_icc_bytes() -> bytes:
    return _srgb_profile().tobytes()
