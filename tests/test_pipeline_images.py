"""Image loading: upright frame, clear errors for unusable bytes, pixel-content hashing."""

import io

import numpy as np
import pytest
from PIL import Image

from pipeline import ImageError, load_image


def jpeg_bytes(array: np.ndarray, orientation: int | None = None) -> bytes:
    image = Image.fromarray(array)
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def test_exif_orientation_is_applied(photo):
    rotated = load_image(jpeg_bytes(photo, orientation=6))  # 6: stored sideways, shown rotated 90 degrees clockwise
    plain = load_image(jpeg_bytes(photo))
    assert (rotated.width, rotated.height) == (480, 640)
    assert np.array_equal(rotated.array, np.rot90(plain.array, k=-1))


def test_same_pixels_hash_the_same_whatever_the_encoding(photo):
    as_png = io.BytesIO()
    Image.fromarray(photo).save(as_png, format="PNG")
    assert load_image(as_png.getvalue()).sha1 == load_image(photo).sha1
    assert load_image(photo[:, ::-1].copy()).sha1 != load_image(photo).sha1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"<html>not an image</html>", "not a readable image"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 40, "not a readable image"),
    ],
)
def test_unusable_bytes_raise_a_clear_error(data, message):
    with pytest.raises(ImageError, match=message):
        load_image(data)


def test_truncated_jpeg_raises_a_clear_error(photo):
    data = jpeg_bytes(photo)
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_zero_pixel_image_is_refused():
    with pytest.raises(ImageError, match="no pixels"):
        load_image(Image.new("RGB", (0, 0)))


def test_image_over_the_pixel_limit_is_refused_before_decoding():
    buffer = io.BytesIO()
    Image.new("L", (3000, 2000)).save(buffer, format="PNG")
    with pytest.raises(ImageError, match="over the limit of 5,000,000"):
        load_image(buffer.getvalue(), limit=5_000_000)
