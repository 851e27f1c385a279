"""Reading image files: every mode and bit depth mapped by its real range, size bounded."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camkit.images import MAX_PIXELS, ImageReadError, image_to_tensor, read_image


def test_16_bit_greyscale_is_scaled_by_its_range_not_clipped(tmp_path) -> None:
    values = np.linspace(60000, 64000, 64 * 48).reshape(48, 64).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    picture = read_image(tmp_path / "g16.png")
    assert picture.shape == (3, 48, 64)
    assert picture.dtype == torch.float32
    assert float(picture.min()) == 0.0
    assert float(picture.max()) == 1.0
    assert float((picture == 1.0).float().mean()) < 0.01  # was 99.6% white before
    expected = torch.from_numpy((values.astype(np.float64) - 60000) / 4000).float()
    torch.testing.assert_close(picture[0], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(picture[1], picture[0])


def test_12_bit_data_in_16_bits_fills_the_range(tmp_path) -> None:
    values = (np.arange(40 * 30) % 4096).reshape(30, 40).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g12.png")
    picture = read_image(tmp_path / "g12.png")
    assert float(picture.max()) == 1.0
    assert float(picture.min()) == 0.0


def test_float_tiff_outside_the_unit_range_is_scaled_and_inside_is_kept(tmp_path) -> None:
    wide = np.linspace(-500, 500, 32 * 16).reshape(16, 32).astype(np.float32)
    Image.fromarray(wide).save(tmp_path / "wide.tiff")
    picture = read_image(tmp_path / "wide.tiff")
    assert float(picture.min()) == 0.0
    assert float(picture.max()) == 1.0
    assert float((picture == 0).float().mean()) < 0.01  # was all black before
    unit = np.linspace(0.2, 0.7, 32 * 16).reshape(16, 32).astype(np.float32)
    Image.fromarray(unit).save(tmp_path / "unit.tiff")
    torch.testing.assert_close(read_image(tmp_path / "unit.tiff")[0], torch.from_numpy(unit))


def test_32_bit_integer_and_constant_images(tmp_path) -> None:
    values = (np.arange(20 * 10).reshape(10, 20) * 100_000).astype(np.int32)
    Image.fromarray(values).save(tmp_path / "i32.tiff")
    picture = read_image(tmp_path / "i32.tiff")
    assert float(picture.min()) == 0.0
    assert float(picture.max()) == 1.0
    constant = image_to_tensor(Image.new("I;16", (5, 4), 40000))
    assert constant.shape == (3, 4, 5)
    assert float(constant.abs().max()) == 0.0


def test_non_finite_float_pixels_are_refused(tmp_path) -> None:
    values = np.ones((8, 8), np.float32)
    values[3, 3] = np.nan
    Image.fromarray(values).save(tmp_path / "nan.tiff")
    with pytest.raises(ImageReadError, match="NaN or infinite"):
        read_image(tmp_path / "nan.tiff")


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "1", "CMYK", "P", "I;16"])
def test_every_mode_becomes_rgb_in_the_unit_range(tmp_path, mode) -> None:
    rgb = Image.fromarray((np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8))
    image = rgb.convert(mode) if mode != "I;16" else Image.new("I;16", (30, 20), 7)
    path = tmp_path / ("x.png" if mode != "CMYK" else "x.tiff")
    image.save(path)
    picture = read_image(path)
    assert picture.shape == (3, 20, 30)
    assert 0 <= float(picture.min()) <= float(picture.max()) <= 1
    if mode in ("RGBA", "P"):
        expected = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1) / 255
        torch.testing.assert_close(picture, expected.float())


def test_a_palette_with_transparency_keeps_its_colours(tmp_path) -> None:
    image = Image.new("P", (6, 4))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (0, 0, 3, 4))
    image.info["transparency"] = 0
    image.save(tmp_path / "p.png", transparency=0)
    picture = read_image(tmp_path / "p.png")
    assert picture[:, 0, 0].tolist() == [0.0, 0.0, 1.0]
    assert picture[:, 0, 5].tolist() == [1, 0, 0]


def test_exif_orientation_is_applied(tmp_path) -> None:
    image = Image.new("RGB", (40, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    image.save(tmp_path / "phone.jpg", exif=exif)
    assert read_image(tmp_path / "phone.jpg").shape == (3, 40, 20)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_large_images_are_bounded_unless_full_size_is_asked(tmp_path, suffix) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((1000, 3000, 3)) * 255).astype(np.uint8)).save(
        tmp_path / f"w{suffix}"
    )
    assert read_image(tmp_path / f"w{suffix}").shape == (3, 341, 1024)
    assert read_image(tmp_path / f"w{suffix}", max_side=300).shape == (3, 100, 300)
    assert read_image(tmp_path / f"w{suffix}", max_side=None).shape == (3, 1000, 3000)
    values = np.full((500, 2000), 50000, np.uint16)
    Image.fromarray(values).save(tmp_path / "w16.png")
    assert read_image(tmp_path / "w16.png", max_side=400).shape == (3, 100, 400)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims a size but holds almost no data: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    data = zlib.compress(b"\0" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize("side", [10_000, 40_000])  # just over the limit (Pillow warns), far over
def test_decompression_bombs_are_refused_with_a_value_error(tmp_path, side) -> None:
    assert side * side > MAX_PIXELS
    path = png_header_only(tmp_path / "bomb.png", side, side)
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_image(path)


def test_missing_broken_and_truncated_files(tmp_path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="not a readable image"):
        read_image(tmp_path / "text.png")
    Image.new("RGB", (64, 64), "red").save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:80])
    with pytest.raises(ImageReadError, match="not a readable image"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def test_an_unreadable_file_says_permission_denied(tmp_path, monkeypatch) -> None:
    # Simulated: the tests may run as root, who can read any file.
    path = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(path)

    def denied(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("camkit.images.os.open", denied)
    with pytest.raises(ImageReadError, match="^cannot be read: permission denied$"):
        read_image(path)
