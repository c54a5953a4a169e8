"""Image decoding errors, the crop warp and normalisation."""

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
