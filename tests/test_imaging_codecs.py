"""decode_image / encode_image: formats, sources, colour handling and every error code."""

from __future__ import annotations

import base64
import io
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image, ImageCms, JpegImagePlugin
from skimage import data

from photoremix.imaging import (
    MAX_LONG_SIDE,
    MIN_SIDE,
    ImageError,
    decode_image,
    encode_image,
    media_type,
)

ASTRONAUT = data.astronaut()  # (512, 512, 3) uint8
SUPPORTED_LIST = "JPEG, PNG, WebP or HEIC/HEIF"


def encoded(pixels: np.ndarray | Image.Image, fmt: str, **options: object) -> bytes:
    """``pixels`` saved by Pillow as ``fmt`` (HEIF works once photoremix.imaging is imported)."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def error_code(source: object, **kwargs: int) -> str:
    with pytest.raises(ImageError) as caught:
        decode_image(source, **kwargs)  # type: ignore[arg-type]
    return caught.value.code


# --- formats and sources --------------------------------------------------------------


def test_png_round_trip_is_exact() -> None:
    decoded = decode_image(encoded(ASTRONAUT, "PNG"))
    assert decoded.dtype == np.uint8
    assert decoded.flags.c_contiguous and decoded.flags.writeable
    np.testing.assert_array_equal(decoded, ASTRONAUT)


def test_lossless_webp_round_trip_is_exact() -> None:
    np.testing.assert_array_equal(
        decode_image(encoded(ASTRONAUT, "WEBP", lossless=True)), ASTRONAUT
    )


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("JPEG", {"quality": 95}), ("WEBP", {"quality": 95}), ("HEIF", {"quality": 95})],
)
def test_lossy_round_trips_are_close(fmt: str, options: dict[str, object]) -> None:
    data_bytes = encoded(ASTRONAUT, fmt, **options)
    assert Image.open(io.BytesIO(data_bytes)).format == fmt  # really that container
    decoded = decode_image(data_bytes)
    assert decoded.shape == ASTRONAUT.shape
    assert mean_abs_error(decoded, ASTRONAUT) < 3.0


def test_multi_picture_jpeg_from_phones_is_accepted() -> None:
    second = ASTRONAUT[::2, ::2].copy()
    data_bytes = encoded(ASTRONAUT, "MPO", save_all=True, append_images=[Image.fromarray(second)])
    assert Image.open(io.BytesIO(data_bytes)).format == "MPO"
    assert mean_abs_error(decode_image(data_bytes), ASTRONAUT) < 4.0


def test_every_source_kind_gives_the_same_pixels(tmp_path: Path) -> None:
    png = encoded(ASTRONAUT, "PNG")
    assert len(png) % 3 != 0, "need data whose base64 has padding to drop"
    text = base64.b64encode(png).decode()
    urlsafe = base64.urlsafe_b64encode(png).decode().rstrip("=")
    assert "-" in urlsafe or "_" in urlsafe, "need data that uses the url-safe characters"
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    path = tmp_path / "astronaut.png"
    path.write_bytes(png)

    sources: list[bytes | bytearray | str | Path] = [
        png,
        bytearray(png),
        text,
        text.rstrip("="),
        wrapped,
        urlsafe,
        f"data:image/png;base64,{text}",
        f"  DATA:image/webp;base64,\n{wrapped}\n",  # declared type is not trusted
        path,
    ]
    for source in sources:
        np.testing.assert_array_equal(decode_image(source), ASTRONAUT)


def test_decodes_a_jpeg_file_from_disk() -> None:
    path = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    expected = np.asarray(Image.open(path).convert("RGB"))
    decoded = decode_image(path)
    assert decoded.shape == expected.shape
    assert mean_abs_error(decoded, expected) < 1.0


# --- orientation, colour, transparency, bit depth -------------------------------------


@pytest.mark.parametrize(
    ("orientation", "quarter_turns_ccw", "marked_corner"),
    [(3, 2, "bottom_right"), (6, -1, "top_right"), (8, 1, "bottom_left")],
)
def test_exif_orientation_is_applied(
    orientation: int, quarter_turns_ccw: int, marked_corner: str
) -> None:
    stored = np.full((80, 120, 3), 128, np.uint8)  # stored 120 wide, 80 tall
    stored[:16, :16] = (255, 0, 0)  # mark the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    tagged = decode_image(encoded(stored, "JPEG", quality=95, exif=exif))
    untagged = decode_image(encoded(stored, "JPEG", quality=95))

    np.testing.assert_array_equal(tagged, np.rot90(untagged, quarter_turns_ccw))
    height, width = tagged.shape[:2]
    corners = {
        "top_left": tagged[:8, :8],
        "top_right": tagged[:8, width - 8 :],
        "bottom_left": tagged[height - 8 :, :8],
        "bottom_right": tagged[height - 8 :, width - 8 :],
    }
    for name, corner in corners.items():
        is_red = corner[..., 0].mean() > 200 and corner[..., 1].mean() < 60
        assert is_red == (name == marked_corner), name


def matrix_shaper_icc(
    red: tuple[float, float, float],
    green: tuple[float, float, float],
    blue: tuple[float, float, float],
    gamma: float = 2.2,
) -> bytes:
    """A minimal ICC v2 RGB display profile: colorants as D50 XYZ, one gamma for all three.

    ImageCms can only create sRGB, LAB and XYZ profiles, so other RGB profiles are
    written by hand (ICC.1:2001-04: 128-byte header, tag table, XYZ and curv tags).
    """

    def s15fixed16(*values: float) -> bytes:
        return b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    d50_white = (0.9642, 1.0, 0.8249)
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    blobs = {
        b"wtpt": b"XYZ " + bytes(4) + s15fixed16(*d50_white),
        b"rXYZ": b"XYZ " + bytes(4) + s15fixed16(*red),
        b"gXYZ": b"XYZ " + bytes(4) + s15fixed16(*green),
        b"bXYZ": b"XYZ " + bytes(4) + s15fixed16(*blue),
        b"rTRC": curve,
        b"gTRC": curve,
        b"bTRC": curve,
    }
    table_size = 4 + 12 * len(blobs)
    offset = 128 + table_size
    table, payload = struct.pack(">I", len(blobs)), b""
    for signature, blob in blobs.items():
        table += signature + struct.pack(">II", offset + len(payload), len(blob))
        payload += blob  # every blob is a multiple of 4 bytes long
    size = 128 + table_size + len(payload)
    header = (
        struct.pack(">I", size)
        + bytes(4)
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(24)
        + struct.pack(">I", 0)  # perceptual intent
        + s15fixed16(*d50_white)
        + bytes(48)
    )
    assert len(header) == 128
    return header + table + payload


def srgb_colorants() -> tuple[tuple[float, float, float], ...]:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).profile
    return tuple(
        c[0] for c in (profile.red_colorant, profile.green_colorant, profile.blue_colorant)
    )


def test_icc_profile_is_converted_to_srgb() -> None:
    # A profile whose red primary is sRGB's green and vice versa: an exact, visible
    # colour-space conversion (built by hand, see matrix_shaper_icc).
    red, green, blue = srgb_colorants()
    swapped = matrix_shaper_icc(red=green, green=red, blue=blue)
    swatches = np.zeros((64, 256, 3), np.uint8)
    swatches[:, :64] = (255, 0, 0)
    swatches[:, 64:128] = (0, 255, 0)
    swatches[:, 128:192] = (0, 0, 255)
    swatches[:, 192:] = (255, 255, 255)

    decoded = decode_image(encoded(swatches, "PNG", icc_profile=swapped))

    expected = swatches.copy()
    expected[:, :128] = expected[:, :128, [1, 0, 2]]  # red <-> green
    assert np.abs(decoded.astype(int) - expected).max() <= 3
    # And the same pixels with no profile are taken as sRGB, untouched.
    np.testing.assert_array_equal(decode_image(encoded(swatches, "PNG")), swatches)


def test_srgb_profile_leaves_pixels_alone() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    decoded = decode_image(encoded(ASTRONAUT, "PNG", icc_profile=srgb))
    assert np.abs(decoded.astype(int) - ASTRONAUT).max() <= 1


def test_srgb_profile_from_another_process_is_not_converted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The sRGB profile our outputs embed carries its creation time in the header (bytes
    # 24-35), so a client's copy made another second differs byte for byte from ours; it
    # must still be recognised as sRGB and the ~100 ms conversion skipped.
    srgb = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    srgb[24:36] = bytes([0x07, 0xE0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5])  # 2016-01-02 03:04:05
    data_bytes = encoded(ASTRONAUT, "PNG", icc_profile=bytes(srgb))

    def no_conversion(*args: object, **kwargs: object) -> None:
        raise AssertionError("an sRGB image was colour-converted")

    monkeypatch.setattr(ImageCms, "profileToProfile", no_conversion)
    np.testing.assert_array_equal(decode_image(data_bytes), ASTRONAUT)


def test_broken_icc_profile_is_ignored() -> None:
    data_bytes = encoded(ASTRONAUT, "PNG", icc_profile=b"this is not an ICC profile" * 8)
    assert Image.open(io.BytesIO(data_bytes)).info.get("icc_profile")  # it was stored
    np.testing.assert_array_equal(decode_image(data_bytes), ASTRONAUT)


def rgba_test_card() -> np.ndarray:
    """(64, 96, 4): opaque astronaut | fully transparent black | half-transparent black."""
    rgba = np.zeros((64, 96, 4), np.uint8)
    rgba[:, :32, :3] = ASTRONAUT[:64, :32]
    rgba[:, :32, 3] = 255
    rgba[:, 64:, 3] = 128
    return rgba


def check_flattened_card(decoded: np.ndarray) -> None:
    np.testing.assert_array_equal(decoded[:, :32], ASTRONAUT[:64, :32])
    assert (decoded[:, 32:64] == 255).all()  # transparent → white
    assert np.abs(decoded[:, 64:].astype(int) - 127).max() <= 1  # half black on white


@pytest.mark.parametrize(("fmt", "options"), [("PNG", {}), ("WEBP", {"lossless": True})])
def test_alpha_is_flattened_onto_white(fmt: str, options: dict[str, object]) -> None:
    check_flattened_card(decode_image(encoded(rgba_test_card(), fmt, **options)))


def test_grey_alpha_png_is_flattened_onto_white() -> None:
    grey_alpha = np.zeros((64, 64, 2), np.uint8)
    grey_alpha[:, :32] = (40, 255)  # opaque dark grey | transparent
    decoded = decode_image(encoded(Image.fromarray(grey_alpha, "LA"), "PNG"))
    assert (decoded[:, :32] == 40).all() and (decoded[:, 32:] == 255).all()


def test_palette_transparency_is_flattened_onto_white() -> None:
    indices = np.zeros((64, 64), np.uint8)
    indices[:, 32:] = 1
    palette_image = Image.fromarray(indices, "P")
    palette_image.putpalette([10, 20, 30, 200, 0, 0] + [0, 0, 0] * 254)
    decoded = decode_image(encoded(palette_image, "PNG", transparency=1))
    assert (decoded[:, :32] == (10, 20, 30)).all()
    assert (decoded[:, 32:] == 255).all()  # index 1 is transparent, its red is not shown


def test_greyscale_becomes_three_equal_channels() -> None:
    grey = cv2.cvtColor(ASTRONAUT, cv2.COLOR_RGB2GRAY)
    decoded = decode_image(encoded(grey, "PNG"))
    assert decoded.shape == (*grey.shape, 3)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], grey)


def test_16bit_greyscale_is_scaled_not_clipped() -> None:
    levels = np.tile(np.arange(256, dtype=np.uint16), (64, 1))  # (64, 256) ramp
    decoded = decode_image(encoded(levels * 257, "PNG"))  # 16-bit PNG, full range
    np.testing.assert_array_equal(decoded[..., 1], levels.astype(np.uint8))


def test_16bit_rgb_is_reduced_to_8bit() -> None:
    levels = np.tile(np.arange(256, dtype=np.uint16), (64, 1))
    rgb16 = np.stack([levels, levels[:, ::-1], np.full_like(levels, 128)], axis=-1) * 257
    ok, png16 = cv2.imencode(".png", rgb16[..., ::-1])  # OpenCV writes BGR
    assert ok
    decoded = decode_image(png16.tobytes())
    np.testing.assert_array_equal(decoded, (rgb16 // 257).astype(np.uint8))


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = np.zeros((64, 64, 4), np.uint8)
    cmyk[..., 0] = 255  # pure cyan ink
    decoded = decode_image(encoded(Image.fromarray(cmyk, "CMYK"), "JPEG", quality=95))
    red, green, blue = decoded.reshape(-1, 3).mean(axis=0)
    assert decoded.shape == (64, 64, 3)
    assert red < 30 and green > 225 and blue > 225


# --- size limits ----------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(5000, 3000), (2000, 6000)])
def test_large_images_are_downscaled_to_the_long_side_limit(width: int, height: int) -> None:
    gradient = np.full((height, width, 3), 90, np.uint8)
    gradient[..., 0] = np.arange(width) * 255 // (width - 1)  # black to red, left to right
    gradient[..., 1] = (np.arange(height) * 255 // (height - 1))[:, None]  # and top to bottom
    decoded = decode_image(encoded(gradient, "JPEG", quality=75))

    scale = MAX_LONG_SIDE / max(width, height)
    assert decoded.shape == (round(height * scale), round(width * scale), 3)
    assert max(decoded.shape[:2]) == MAX_LONG_SIDE
    # The content is scaled, not cropped: the corners keep their gradient colours.
    assert decoded[0, 0, 0] < 10 and decoded[-1, -1, 0] > 245 and decoded[-1, -1, 1] > 245


def test_image_at_the_long_side_limit_is_not_resized() -> None:
    flat = np.full((100, MAX_LONG_SIDE, 3), 77, np.uint8)
    assert decode_image(encoded(flat, "PNG")).shape == flat.shape


def test_smallest_allowed_image_is_accepted() -> None:
    assert decode_image(encoded(ASTRONAUT[:MIN_SIDE, :MIN_SIDE], "PNG")).shape == (64, 64, 3)


def test_too_small_names_the_size() -> None:
    with pytest.raises(ImageError) as caught:
        decode_image(encoded(ASTRONAUT[:100, : MIN_SIDE - 1], "PNG"))
    assert caught.value.code == "too_small"
    assert "63\N{MULTIPLICATION SIGN}100" in str(caught.value)
    assert "64 px" in str(caught.value)


def test_too_elongated_to_keep_64px_after_downscaling_is_too_small() -> None:
    strip = np.full((100, 2 * MAX_LONG_SIDE, 3), 200, np.uint8)  # becomes 4096x50
    assert error_code(encoded(strip, "PNG")) == "too_small"


def test_max_pixels_is_checked() -> None:
    png = encoded(ASTRONAUT, "PNG")
    assert decode_image(png, max_pixels=512 * 512).shape == ASTRONAUT.shape
    with pytest.raises(ImageError) as caught:
        decode_image(png, max_pixels=512 * 512 - 1)
    assert caught.value.code == "too_many_pixels"
    assert "512\N{MULTIPLICATION SIGN}512" in str(caught.value)


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width`` x ``height`` RGB pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (10_001, 10_000),  # just over MAX_PIXELS; Pillow itself only warns here
        (30_000, 30_000),  # over Pillow's hard limit, which raises inside Image.open
    ],
)
def test_bomb_header_is_refused_before_decoding(width: int, height: int) -> None:
    bomb = png_claiming_size(width, height)
    assert len(bomb) < 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not leak
        assert error_code(bomb) == "too_many_pixels"


# --- other errors ---------------------------------------------------------------------


@pytest.mark.parametrize("source", [b"", "", "  \n\t ", "data:image/png;base64,", bytearray()])
def test_empty_input(source: bytes | str) -> None:
    assert error_code(source) == "empty"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert error_code(path) == "empty"


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        decode_image(tmp_path / "nope.png")


@pytest.mark.parametrize(
    "text",
    [
        "not base64!!",
        "abcde",  # 5 characters: no base64 text has this length
        "data:image/png;base64",  # no comma
        "https://example.com/cat.jpg",
        "Zm9v\u00e9YmFy",  # non-ASCII
    ],
)
def test_bad_base64(text: str) -> None:
    assert error_code(text) == "bad_base64"


@pytest.mark.parametrize(
    "garbage",
    [b"hello, this is definitely not an image" * 4, np.random.default_rng(0).bytes(4096)],
)
def test_undecodable_bytes(garbage: bytes) -> None:
    with pytest.raises(ImageError) as caught:
        decode_image(garbage)
    assert caught.value.code == "undecodable"
    assert SUPPORTED_LIST in str(caught.value)


def test_corrupt_png_is_undecodable_not_truncated() -> None:
    png = bytearray(encoded(ASTRONAUT, "PNG"))
    png[200:1200] = bytes(1000)  # zero out compressed pixel data, keep the file length
    assert error_code(bytes(png)) == "undecodable"


@pytest.mark.parametrize(
    ("fmt", "options", "kept_bytes"),
    [
        ("JPEG", {"quality": 95}, "half"),
        ("JPEG", {"quality": 95}, 100),  # cut inside the header: Image.open itself fails
        ("PNG", {}, "half"),
        ("PNG", {}, 20),  # cut inside the IHDR chunk
        ("WEBP", {"quality": 90}, "half"),
        ("HEIF", {"quality": 90}, "half"),
    ],
)
def test_truncated_files(fmt: str, options: dict[str, object], kept_bytes: int | str) -> None:
    whole = encoded(ASTRONAUT, fmt, **options)
    assert decode_image(whole).shape == ASTRONAUT.shape
    cut = len(whole) // 2 if kept_bytes == "half" else kept_bytes
    assert error_code(whole[:cut]) == "truncated"


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_unsupported_formats_are_named(fmt: str) -> None:
    with pytest.raises(ImageError) as caught:
        decode_image(encoded(ASTRONAUT, fmt))
    assert caught.value.code == "unsupported_format"
    assert fmt in str(caught.value)
    assert SUPPORTED_LIST in str(caught.value)


def test_image_error_is_a_value_error_with_a_message() -> None:
    with pytest.raises(ValueError, match="empty"):
        decode_image(b"")


def test_image_error_survives_pickling() -> None:
    with pytest.raises(ImageError) as caught:
        decode_image(b"")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.code, str(copy)) == (caught.value.code, str(caught.value))


def test_non_image_source_type_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        decode_image(12345)  # type: ignore[arg-type]


# --- encoding -------------------------------------------------------------------------


def test_jpeg_encoding_quality_subsampling_and_profile() -> None:
    jpeg = encode_image(ASTRONAUT, "jpg")
    opened = Image.open(io.BytesIO(jpeg))
    assert isinstance(opened, JpegImagePlugin.JpegImageFile)
    assert JpegImagePlugin.get_sampling(opened) == 0  # 4:4:4

    def tables(quality: int) -> dict[int, list[int]]:
        return Image.open(io.BytesIO(encoded(ASTRONAUT, "JPEG", quality=quality))).quantization

    assert opened.quantization == tables(95)
    assert opened.quantization != tables(94)

    profile = ImageCms.ImageCmsProfile(io.BytesIO(opened.info["icc_profile"]))
    assert "sRGB" in ImageCms.getProfileDescription(profile)
    assert mean_abs_error(decode_image(jpeg), ASTRONAUT) < 2.0


def test_png_encoding_is_lossless_and_plain() -> None:
    png = encode_image(ASTRONAUT, "png")
    opened = Image.open(io.BytesIO(png))
    assert opened.format == "PNG" and opened.mode == "RGB"
    assert "icc_profile" not in opened.info
    np.testing.assert_array_equal(np.asarray(opened), ASTRONAUT)


def test_encoding_accepts_non_contiguous_views() -> None:
    mirrored = ASTRONAUT[:, ::-1]
    assert not mirrored.flags.c_contiguous
    np.testing.assert_array_equal(decode_image(encode_image(mirrored, "png")), mirrored)


@pytest.mark.parametrize(
    "bad",
    [
        ASTRONAUT[..., 0],
        np.dstack([ASTRONAUT, ASTRONAUT[..., :1]]),
        ASTRONAUT.astype(np.float32),
        np.zeros((0, 10, 3), np.uint8),
        [[[0, 0, 0]]],
    ],
    ids=["2d", "4 channels", "float", "empty", "list"],
)
def test_encoding_rejects_bad_arrays(bad: object) -> None:
    with pytest.raises(ValueError, match="encode_image"):
        encode_image(bad, "png")  # type: ignore[arg-type]


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="gif"):
        encode_image(ASTRONAUT, "gif")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gif"):
        media_type("gif")  # type: ignore[arg-type]


def test_media_types_match_what_is_encoded() -> None:
    for fmt, pil_format in (("jpg", "JPEG"), ("png", "PNG")):
        encoded_bytes = encode_image(ASTRONAUT, fmt)  # type: ignore[arg-type]
        assert media_type(fmt) == Image.MIME[pil_format]  # type: ignore[arg-type]
        assert Image.open(io.BytesIO(encoded_bytes)).format == pil_format
