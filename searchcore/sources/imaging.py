"""Image decoding: untrusted bytes → an upright RGB picture plus the bytes to store."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from searchcore.errors import ImageDecodeError
from searchcore.records import naive_seconds

# Decompression bombs are refused from the header's size, before any pixel is decoded: decode_image checks it
# itself rather than setting PIL's process-wide Image.MAX_IMAGE_PIXELS (whose default is this same number).
MAX_PIXELS = 89_478_485
BROWSER_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP"}
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif", "BMP": "image/bmp"}
ORIENTATION = 0x0112
DATE_TIME, EXIF_IFD, DATE_TIME_ORIGINAL = 0x0132, 0x8769, 0x9003
# A JPEG whose shorter side is at least BIG times the model's input is decoded by libjpeg at 1/2, 1/4 or 1/8 scale
# (DCT scaling, no smaller than the input) for the model; the preprocessing's bicubic resize does the rest. Smaller
# ones decode exactly. BIG was 4 (to twice the input): 2 takes 18-35% off decoding and resizing an 800x600 to a
# 1600x1200 JPEG (docs/PERFORMANCE.md), and the model cannot tell (tests/sources/test_big_images.py).
BIG = 2
THUMBNAIL_SIDE = 512  # a folder picture's stored thumbnail: its long side at most this many pixels
THUMBNAIL_QUALITY = 85
DEVICE_MODES = ("RGB", "L")  # JPEG colour spaces a device decoder turns into the same RGB as to_rgb (not CMYK)
JPEG_END = b"\xff\xd9"


@dataclass
class DecodedImage:
    """An upright RGB picture for the model and what to store for it (width and height are the original's)."""

    image: Image.Image  # decoded at reduced scale when much larger than decode_image's target
    data: bytes
    format: str
    width: int
    height: int
    sha256: str
    taken: int = 0  # EXIF DateTimeOriginal (else DateTime) as naive seconds; 0 when the picture has none
    deferred: bool = False  # checked from its header only: image is unread, its pixels are left to the device


def decode_image(data: bytes, max_bytes: int | None = None, target: int | None = None,
                 sha256: str | None = None, *, thumbnail: bool = False, defer: bool = False) -> DecodedImage:
    """Decode, check and normalise one image; raise ImageDecodeError with a reason.

    With a target (the model's input resolution), a picture much larger than it is decoded at reduced scale
    for the model; the width and height are still the full picture's. The bytes to store are the original's
    (browser-ready), or with thumbnail a JPEG of the upright picture at most THUMBNAIL_SIDE pixels long (a
    folder picture, whose original stays in its file). sha256 is the digest of data when the caller has it
    already.

    With defer, a JPEG stored as it is (upright, RGB or greyscale, ending in its end marker) is checked from its
    header only and comes back deferred, for a device decoder (models/gpu_decode.py); when that one refuses
    it, decoding it again without defer decides, as for any other picture.
    """
    _register_formats()
    if not data:
        raise ImageDecodeError("image_empty")
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageDecodeError("image_too_big", size_mb=len(data) / 2**20, limit_mb=max_bytes / 2**20)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ImageDecodeError("image_too_many_pixels", width=width, height=height, limit=MAX_PIXELS)
        fmt = image.format or "PNG"
        image.seek(0)  # the first frame of an animation
        if defer and not thumbnail and deferrable(image, data):
            digest = sha256 or hashlib.sha256(data).hexdigest()
            return DecodedImage(image, data, fmt, width, height, digest, exif_taken(image.getexif()), deferred=True)
        drafted = False
        if (target is not None and fmt == "JPEG" and min(width, height) >= BIG * target
                and (thumbnail or image.getexif().get(ORIENTATION, 1) == 1)):
            # Only when the original bytes are stored as they are: a re-encoded picture needs every pixel.
            side = max(target, THUMBNAIL_SIDE) if thumbnail else target
            image.draft("RGB", (side, side))
            drafted = True
        image.load()
        exif = image.getexif()
        orientation = exif.get(ORIENTATION, 1)
        taken = exif_taken(exif)
        upright = ImageOps.exif_transpose(image) if orientation != 1 else image
        rgb = to_rgb(upright)
        turned = orientation in (5, 6, 7, 8)  # EXIF orientations that swap width and height
        full_size = ((height, width) if turned else (width, height)) if drafted else rgb.size
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("image_too_large_to_decode", reason=str(exc)) from None
    except UnidentifiedImageError:
        raise ImageDecodeError("image_unknown_format") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError("image_corrupt", reason=str(exc)) from None
    digest = sha256 or hashlib.sha256(data).hexdigest()
    if thumbnail:
        small = rgb.copy()
        small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
        buffer = io.BytesIO()
        small.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
        # format stays what the whole picture is stored or shown as (below), the thumbnail is always a JPEG.
        shown = fmt if orientation == 1 and fmt in BROWSER_FORMATS else "JPEG"
        return DecodedImage(rgb, buffer.getvalue(), shown, *full_size, digest, taken)
    stored, stored_format = data, fmt
    if orientation != 1 or fmt not in BROWSER_FORMATS:
        buffer = io.BytesIO()
        rgb.save(buffer, format="JPEG", quality=95)
        stored, stored_format = buffer.getvalue(), "JPEG"
        if max_bytes is not None and len(stored) > max_bytes:
            raise ImageDecodeError("image_too_big_stored", size_mb=len(stored) / 2**20, limit_mb=max_bytes / 2**20)
    return DecodedImage(rgb, stored, stored_format, *full_size, digest, taken)


def deferrable(image: Image.Image, data: bytes) -> bool:
    """Whether an opened, unread picture may be left to a device decoder: a complete JPEG whose stored bytes are
    its own (upright) and whose colours need no conversion of Pillow's (CMYK, YCCK and the rest stay here)."""
    return (image.format == "JPEG" and image.mode in DEVICE_MODES and image.getexif().get(ORIENTATION, 1) == 1
            and data[-64:].rstrip(b"\0").endswith(JPEG_END))


def exif_taken(exif: Image.Exif) -> int:
    """When the picture was taken by its EXIF (DateTimeOriginal, else DateTime), as naive seconds; 0 if absent
    or unreadable (cameras write "0000:00:00 00:00:00" and worse)."""
    try:
        value = exif.get_ifd(EXIF_IFD).get(DATE_TIME_ORIGINAL) or exif.get(DATE_TIME)
    except Exception:  # noqa: BLE001 - a broken EXIF block is no reason to refuse the picture
        return 0
    if not isinstance(value, str):
        return 0
    try:
        moment = dt.datetime.strptime(value.strip().rstrip("\x00")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return 0
    return naive_seconds(moment) if moment.year >= 1971 else 0


@functools.cache
def _register_formats() -> None:
    # HEIC/HEIF come from pillow-heif (AVIF and TIFF are Pillow's own); registered on first use, not on import.
    try:
        from pillow_heif import register_heif_opener
    except ImportError:  # a declared dependency; missing only where searchcore runs uninstalled (bench/gpu_bench.sh)
        logging.getLogger(__name__).warning("pillow-heif is not installed: HEIC/HEIF pictures cannot be read")
        return
    register_heif_opener()


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode → 8-bit RGB, flattening transparency onto white and scaling 16-bit data."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        gray = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def stored_picture(data: bytes, size: tuple[int, int] | None = None) -> Image.Image:
    """A stored image's bytes (decoded and checked once at ingest) as an RGB picture to show; a thumbnail of at
    most size when given."""
    _register_formats()
    image = Image.open(io.BytesIO(data))
    if size is not None:
        image.draft("RGB", size)  # JPEG decodes at a reduced scale: much faster for big photos
    picture = to_rgb(image)
    if size is not None:
        picture.thumbnail(size)
    return picture


def mime_type(fmt: str) -> str:
    """The content type for a stored image format."""
    return MIME.get(fmt.upper(), "application/octet-stream")
