"""Image decoding, encoding and output sizing: the package's door to files and bytes."""

from photoremix.imaging.codecs import (
    MAX_LONG_SIDE,
    MAX_PIXELS,
    MIN_SIDE,
    SUPPORTED_FORMATS,
    ImageError,
    decode_image,
    decode_image_text,
    encode_image,
    media_type,
)
from photoremix.imaging.sizing import output_size_2k

__all__ = [
    "MAX_LONG_SIDE",
    "MAX_PIXELS",
    "MIN_SIDE",
    "SUPPORTED_FORMATS",
    "ImageError",
    "decode_image",
    "decode_image_text",
    "encode_image",
    "media_type",
    "output_size_2k",
]
