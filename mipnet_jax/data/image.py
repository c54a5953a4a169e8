"""Image decoding and the top-down crop, with the reference's pixels.

OpenCV crops: the reference uses ``cv2.warpAffine(INTER_LINEAR)``, whose fixed-point
bilinear weights (1/32 steps) and constant-0 border a hand-written warp would only
approximate. JPEGs decode through libjpeg-turbo's TurboJPEG API (simplejpeg): the same
library and algorithms as ``cv2.imdecode`` (accurate integer IDCT, fancy upsampling), so the
same pixels (tests compare them), 1.0-2.4x faster per image on the sample data
(scripts/bench_pipeline.py). OpenCV decodes every other format, CMYK JPEGs and any JPEG that
TurboJPEG reports as damaged, as the reference would.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import simplejpeg

COLORS = ("rgb", "bgr")


class ImageError(ValueError):
  """An image that cannot be used; the message names the file (and the record), ``kind``
  says what is wrong (for the data report's counts)."""

  def __init__(self, message: str, kind: str = "unusable image"):
    super().__init__(message)
    self.kind = kind


def read_image(path: str, color: str = "rgb", record: str = "") -> np.ndarray:
  """Decodes an image file to uint8 [H, W, 3] in ``color`` order (see ``decode_image``).
  A missing file raises ImageError."""
  where = f"{path}{f' ({record})' if record else ''}"
  if not os.path.isfile(path):
    raise ImageError(f"{where}: image file not found", "image file not found")
  return decode_image(np.fromfile(path, np.uint8), color, where)


def decode_image(data: np.ndarray, color: str = "rgb", where: str = "image",
                 reduce: int = 1) -> np.ndarray:
  """Encoded bytes (uint8 [n]) -> uint8 [H / reduce, W / reduce, 3] in ``color`` order, EXIF
  orientation ignored as the reference reads it. ``reduce`` in (1, 2, 4, 8) decodes a JPEG at
  reduced size (libjpeg DCT scaling, size rounded up). Unreadable or truncated data raises
  ImageError naming ``where``."""
  if color not in COLORS:
    raise ValueError(f"color must be one of {COLORS}, got {color!r}")
  if data.size >= 2 and data[0] == 0xFF and data[1] == 0xD8:
    if not _jpeg_complete(data):
      raise ImageError(f"{where}: truncated JPEG (no end-of-image marker)", "truncated JPEG")
    image = _decode_turbojpeg(data, color, reduce)
    if image is not None:
      return image
  image = cv2.imdecode(data, _REDUCED_FLAGS[reduce] | cv2.IMREAD_IGNORE_ORIENTATION)
  if image is None:
    raise ImageError(f"{where}: not a readable image", "not a readable image")
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if color == "rgb" else image


_REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
                  4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def _decode_turbojpeg(data: np.ndarray, color: str, reduce: int) -> np.ndarray | None:
  """A YCbCr, RGB or grey JPEG at 1/``reduce`` size (libjpeg's DCT scaling, size rounded up,
  as cv2's IMREAD_REDUCED_*) in ``color`` order; None where OpenCV should decide: CMYK / YCCK
  (OpenCV's own conversion), data TurboJPEG rejects or warns about (strict mode)."""
  try:
    h, w, space, _ = simplejpeg.decode_jpeg_header(data)
    if space not in ("YCbCr", "RGB", "Gray"):
      return None
    size = (-(-h // reduce), -(-w // reduce))
    image = simplejpeg.decode_jpeg(data, color.upper(), min_height=size[0], min_width=size[1])
  except ValueError:
    return None
  return image if image.shape[:2] == size else None


def _jpeg_complete(data: np.ndarray) -> bool:
  tail = data[-16:]
  return bool(np.any((tail[:-1] == 0xFF) & (tail[1:] == 0xD9)))


def warp_crop(image: np.ndarray, trans: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
  """The input crop: image [H, W, 3] warped by the [2, 3] affine to [h, w, 3] (bilinear,
  zero border), exactly ``cv2.warpAffine(image, trans, (w, h), flags=INTER_LINEAR)``."""
  h, w = input_hw
  return cv2.warpAffine(image, trans, (int(w), int(h)), flags=cv2.INTER_LINEAR)

