"""Image loading: EXIF orientation applied, size limits enforced, content hashed for the caches."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .settings import DEFAULT_MAX_PIXELS

# Images are measured from their header, before any pixel is decoded, so a decompression bomb costs nothing. Pillow
# refuses more than ~179 MP (2 x Image.MAX_IMAGE_PIXELS) whatever GROUNDLABEL_MAX_PIXELS says.


@dataclass(frozen=True)
class LoadedImage:
    """An RGB image in the frame a person sees it (EXIF rotation applied) and a hash of its pixels."""

    pil: Image.Image
    sha1: str

    @property
    def width(self) -> int:
        return self.pil.width

    @property
    def height(self) -> int:
        return self.pil.height

    @property
    def array(self) -> np.ndarray:
        """HxWx3 uint8 RGB."""
        return np.asarray(self.pil)


def load_image(
    source: LoadedImage | bytes | str | Path | Image.Image | np.ndarray, limit: int = DEFAULT_MAX_PIXELS
) -> LoadedImage:
    """Decode ``source`` into an upright RGB image; raise ``ImageError`` with a reason when it is unusable (more
    than ``limit`` pixels among them: ``PipelineSettings.max_pixels``)."""
    if isinstance(source, LoadedImage):
        return source
    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
            raise ImageError(f"Expected an HxWx3 uint8 RGB array, got shape {source.shape} and dtype {source.dtype}.")
        image = Image.fromarray(source)
    elif isinstance(source, Image.Image):
        image = source
    else:
        image = _open(Path(source).read_bytes() if isinstance(source, (str, Path)) else source, limit)
    _check_size(image.width, image.height, limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            upright = ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageError(f"The image could not be decoded (truncated or corrupt?): {error}") from None
    return LoadedImage(pil=upright, sha1=_pixel_hash(upright))


def check_image_file(path: str | Path, limit: int = DEFAULT_MAX_PIXELS) -> None:
    """``ImageError`` (``OSError`` for a file that cannot be read) unless ``path`` holds an image of at most ``limit``
    pixels, judged from its header alone: ``python -m pipeline`` checks every input so before a model loads."""
    image = _open(Path(path).read_bytes(), limit)
    _check_size(image.width, image.height, limit)


def _open(data: bytes, limit: int) -> Image.Image:
    """The image in ``data``, its header read and no pixel decoded yet."""
    if not data:
        raise ImageError("The image is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(f"The data is not a readable image ({len(data):,} bytes in no format Pillow reads).") from None
    except Image.DecompressionBombError:  # Pillow's own guard, at twice Image.MAX_IMAGE_PIXELS (~179 MP)
        raise ImageError(_over_limit(f"more than {2 * Image.MAX_IMAGE_PIXELS:,}", limit)) from None


def _check_size(width: int, height: int, limit: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"The image has no pixels ({width}x{height}).")
    if width * height > limit:
        raise ImageError(_over_limit(f"{width}x{height} = {width * height:,}", limit))


def _over_limit(pixels: str, limit: int) -> str:
    return f"The image is {pixels} pixels, over the limit of {limit:,} (set GROUNDLABEL_MAX_PIXELS to raise it)."


def _pixel_hash(image: Image.Image) -> str:
    """Hash decoded pixels, so the same picture re-encoded or with other metadata hits the same cache entries."""
    digest = hashlib.sha1(f"{image.width}x{image.height}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()
