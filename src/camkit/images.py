"""Reading image files: any mode and bit depth as RGB in [0, 1], at a bounded size.

What a file holds is mapped to the picture the model sees, never clipped:

* 8-bit modes (RGB, L, P, RGBA, CMYK, ...) are converted to RGB and divided by 255. Alpha is
  dropped (a transparent palette goes through RGBA first, so its colours stay right).
* 16-bit and 32-bit integer images are scaled linearly from their own minimum to their own
  maximum (a 12-bit sensor stored in 16 bits fills [0, 1] as an 8-bit photo does).
* Float images already inside [0, 1] are kept; others are scaled from their minimum to their
  maximum. NaN or infinite pixels are refused.
* A constant image of any high-bit mode becomes 0 (black).
* EXIF orientation is applied (a phone photo is explained upright).

Size is bounded: an image whose longer side exceeds `max_side` is scaled down (antialiased) to
that side before anything else, so a 4096 x 4096 photo costs what a 1024 x 1024 one does. Files
that would decode to more than `MAX_PIXELS` pixels (decompression bombs) are refused.
"""

from __future__ import annotations

import contextlib
import os
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from camkit.errors import first_line

MAX_SIDE = 1024
"""Default bound on the longer side of an image read for the model and drawn (pixels)."""

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
"""The file suffixes camkit reads as images when it looks through a folder."""

MAX_PIXELS = 89_478_485
"""Files decoding to more pixels than this are refused (Pillow's decompression-bomb limit)."""

_HIGH_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


class ImageReadError(ValueError):
    """A file that cannot be read as an image; the message says why."""


def read_image(path: str | Path, max_side: int | None = MAX_SIDE) -> Tensor:
    """The image in a file as float32 RGB (3, H, W) in [0, 1], longer side at most `max_side`.

    `max_side=None` (or 0) keeps the full size. Raises `ImageReadError` (a `ValueError`) for
    files that are missing, not images, decompression bombs or hold non-finite pixels.

    Examples:
        >>> import tempfile, numpy as np
        >>> from PIL import Image
        >>> with tempfile.NamedTemporaryFile(suffix=".png") as f:
        ...     Image.fromarray(np.full((4, 8), 4095, np.uint16)).save(f.name)  # 16-bit grey
        ...     read_image(f.name).shape
        torch.Size([3, 4, 8])
    """
    path = Path(path)
    try:
        with warnings.catch_warnings(), _open_regular(path) as handle:
            # Pillow only warns between 1x and 2x its limit; camkit refuses both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(handle) as image:
                pixels = image.width * image.height
                if pixels > MAX_PIXELS:
                    raise ImageReadError(_too_large(image.width, image.height))
                return image_to_tensor(ImageOps.exif_transpose(image), max_side or None)
    except FileNotFoundError:
        raise ImageReadError("no such file") from None
    except IsADirectoryError:
        raise ImageReadError("is a folder, not an image file") from None
    except PermissionError:
        raise ImageReadError("cannot be read: permission denied") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        head = str(error).split(",")[0].rstrip(". ")
        raise ImageReadError(f"{head} (a decompression bomb?): refused") from None
    except UnidentifiedImageError:
        raise ImageReadError("not a readable image (unknown format)") from None
    except (OSError, SyntaxError, ValueError) as error:
        if isinstance(error, ImageReadError):
            raise
        # Pillow reports truncated or malformed data as OSError, SyntaxError or ValueError.
        raise ImageReadError(f"not a readable image ({first_line(error)})") from None


_SPECIAL = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


@contextlib.contextmanager
def _open_regular(path: Path) -> Iterator[BinaryIO]:
    """The file at `path` opened for reading, if it is a regular file (links followed). A named
    pipe, socket or device is refused without waiting on it: opening is non-blocking, and the
    kind is checked on the open file, so it cannot change between the check and the read."""
    if stat.S_ISSOCK(os.stat(path).st_mode):  # a socket cannot even be opened
        raise ImageReadError(f"is {_SPECIAL[stat.S_IFSOCK]}, not an image file: skipped")
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        kind = stat.S_IFMT(os.fstat(descriptor).st_mode)
        if kind == stat.S_IFDIR:
            raise IsADirectoryError(path)
        if kind != stat.S_IFREG:
            raise ImageReadError(
                f"is {_SPECIAL.get(kind, 'not a regular file')}, not an image file: skipped"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
        handle = os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
    with handle:
        yield handle


def _too_large(width: int, height: int) -> str:
    return (
        f"image of {width} x {height} = {width * height:,} pixels is over the limit of "
        f"{MAX_PIXELS:,} (a decompression bomb?): refused"
    )


def _bounded(width: int, height: int, max_side: int | None) -> tuple[int, int] | None:
    """The (width, height) to scale to, or None when the image is within the bound."""
    if max_side is None or max(width, height) <= max_side:
        return None
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def image_to_tensor(image: Image.Image, max_side: int | None = None) -> Tensor:
    """A PIL image of any mode as float32 RGB (3, H, W) in [0, 1] (see the module notes).

    Examples:
        >>> image_to_tensor(Image.new("I;16", (3, 2), 40000)).shape
        torch.Size([3, 2, 3])
    """
    if image.mode in _HIGH_BIT_MODES:
        return _high_bit_picture(image, max_side)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    size = _bounded(image.width, image.height, max_side)
    if size is not None:
        image.draft("RGB", size)  # JPEG: decode at a reduced scale; a no-op for other formats
        image = image.convert("RGB").resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    image = image.convert("RGB")
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.view(image.height, image.width, 3).permute(2, 0, 1).float() / 255


def _high_bit_picture(image: Image.Image, max_side: int | None) -> Tensor:
    is_float = image.mode == "F"
    grey = image.convert("F")  # exact for 16-bit; 32-bit integers round to float32
    values = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.float32)
    values = values.view(1, grey.height, grey.width)
    if not bool(torch.isfinite(values).all()):
        raise ImageReadError("has NaN or infinite pixel values")
    low, high = float(values.min()), float(values.max())
    if not (is_float and low >= 0.0 and high <= 1.0):
        values = (values - low) / (high - low) if high > low else torch.zeros_like(values)
    size = _bounded(grey.width, grey.height, max_side)
    if size is not None:
        values = F.interpolate(
            values[None], size=(size[1], size[0]), mode="bilinear", antialias=True
        )[0].clamp(0, 1)
    return values.expand(3, -1, -1).contiguous()
