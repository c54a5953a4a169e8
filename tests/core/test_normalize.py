import numpy as np

from mipnet_jax.core.normalize import normalize


def test_normalize():
  crop = np.full((2, 2, 3), 255, np.uint8)
  np.testing.assert_allclose(normalize(crop)[0, 0],
                             (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225],
                             rtol=1e-6)


def test_normalize_on_the_device_equals_the_host():
  import jax.numpy as jnp
  crop = np.random.default_rng(0).integers(0, 256, (2, 4, 3), dtype=np.uint8)
  np.testing.assert_allclose(np.asarray(normalize(jnp.asarray(crop))), normalize(crop),
                             rtol=1e-6, atol=1e-6)

