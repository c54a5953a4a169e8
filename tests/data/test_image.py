"""Image decoding (TurboJPEG against OpenCV, the reference's decoder), its errors and the
crop warp."""

import io

import cv2
import numpy as np
import pytest

from mipnet_jax.core import geometry
from mipnet_jax.data import image


def test_read_real_jpeg_in_both_orders(shared_data):
  path = str(shared_data / "coco" / "000000000785.jpg")
  rgb = image.read_image(path, "rgb")
  bgr = image.read_image(path, "bgr")
  assert rgb.shape == (425, 640, 3) and rgb.dtype == np.uint8   # the annotation's size
  np.testing.assert_array_equal(rgb, bgr[..., ::-1])


def _opencv(data: np.ndarray, color: str, reduce: int = 1) -> np.ndarray:
  """The reference's decoding: cv2.imdecode, BGR, EXIF orientation ignored."""
  flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
           8: cv2.IMREAD_REDUCED_COLOR_8}[reduce] | cv2.IMREAD_IGNORE_ORIENTATION
  bgr = cv2.imdecode(data, flags)
  return bgr[..., ::-1] if color == "rgb" else bgr


@pytest.mark.parametrize("reduce", [1, 2, 4, 8])
def test_every_sample_jpeg_decodes_to_opencvs_pixels(shared_data, reduce):
  """All JPEGs of the three datasets' samples (4:4:4 and 4:2:0, 333-1000 pixels), full and
  DCT-scaled, in both channel orders: bit for bit what cv2.imdecode gives."""
  files = sorted(shared_data.glob("*/*.jpg"))
  assert len(files) >= 9
  for path in files:
    data = np.fromfile(path, np.uint8)
    for color in ("rgb", "bgr"):
      ours = image.decode_image(data, color, str(path), reduce)
      np.testing.assert_array_equal(ours, _opencv(data, color, reduce), err_msg=str(path))


def _encoded(mode: str, **save) -> np.ndarray:
  from PIL import Image
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (37, 53, 3), np.uint8)
  pixels[10:30, 5:40] = [200, 40, 90]                       # structure, not only noise
  picture = Image.fromarray(pixels).convert(mode)
  buffer = io.BytesIO()
  picture.save(buffer, "JPEG", quality=90, **save)
  return np.frombuffer(buffer.getvalue(), np.uint8)


@pytest.mark.parametrize("kind", ["grey", "cmyk", "progressive", "extraneous bytes"])
def test_other_jpegs_give_opencvs_pixels(kind):
  """Grey (TurboJPEG), CMYK (left to OpenCV's conversion), progressive, and a JPEG with junk
  between its segments (TurboJPEG's strict mode refuses it; OpenCV decodes it, as the
  reference would)."""
  data = {"grey": lambda: _encoded("L"), "cmyk": lambda: _encoded("CMYK"),
          "progressive": lambda: _encoded("RGB", progressive=True),
          "extraneous bytes": lambda: _encoded("RGB")}[kind]()
  if kind == "extraneous bytes":
    sos = int(np.flatnonzero((data[:-1] == 0xFF) & (data[1:] == 0xDA))[0])
    data = np.concatenate([data[:sos], np.array([1, 2, 3], np.uint8), data[sos:]])
  for reduce in (1, 2):
    expected = _opencv(data, "rgb", reduce)
    assert expected is not None and expected.shape[2] == 3
    np.testing.assert_array_equal(image.decode_image(data, "rgb", kind, reduce), expected)


def test_bad_images_are_named(tmp_path, shared_data):
  with pytest.raises(image.ImageError, match=r"missing\.jpg \(ann 5\): image file not found"):
    image.read_image(str(tmp_path / "missing.jpg"), record="ann 5")
  data = (shared_data / "coco" / "000000000785.jpg").read_bytes()
  cut = tmp_path / "cut.jpg"
  cut.write_bytes(data[: len(data) // 2])
  with pytest.raises(image.ImageError, match="cut.jpg: truncated JPEG"):
    image.read_image(str(cut))
  junk = tmp_path / "junk.png"
  junk.write_bytes(b"not an image at all")
  with pytest.raises(image.ImageError, match="junk.png: not a readable image"):
    image.read_image(str(junk))


def test_warp_crop_places_the_box_and_pads_with_zero():
  img = np.zeros((100, 80, 3), np.uint8)
  img[40:60, 30:50] = 200                      # a 20 x 20 block centred at (40, 50)
  c, s = np.array([40.0, 50.0]), np.array([0.2, 0.2])   # a 40 x 40 crop around it
  t = geometry.get_affine_transform(c, s, 0.0, (64, 64))
  crop = image.warp_crop(img, t, (64, 64))
  assert crop.shape == (64, 64, 3)
  assert crop[32, 32, 0] == 200 and crop[2, 2, 0] == 0          # block centre, background
  far = geometry.get_affine_transform(np.array([0.0, 0.0]), s, 0.0, (64, 64))
  assert image.warp_crop(img, far, (64, 64))[:, :20].max() == 0   # outside: zero border
