"""Model-variables checkpoints: exact round trip, and named mismatches."""

import jax
import numpy as np
import pytest

from mipnet_jax import checkpoints
from mipnet_jax.experiments import QUICK_ARCHS
from mipnet_jax.models import build_model, init_variables

CFG = dict(name="simple_baseline", depth=50, num_keypoints=17,
           mimb_slots=(False, False, True, True), mimb_reduce=4, mimb_only_embed=False,
           lambda_code="one_hot", dtype="float32", **QUICK_ARCHS["simple_baseline"])


def test_round_trip_and_mismatch(tmp_path):
  mip = build_model(CFG, 2)
  v = init_variables(mip, (64, 48), jax.random.key(0))
  path = checkpoints.save_variables(str(tmp_path / "ck"), v)
  abstract = jax.eval_shape(lambda: init_variables(mip, (64, 48), jax.random.key(1)))
  back = checkpoints.load_variables(path, abstract)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves({k: v[k] for k in back})):
    np.testing.assert_array_equal(a, b)
  baseline = build_model(CFG, 1)       # MIPNet weights into a baseline: MIMBs unexpected
  with pytest.raises(checkpoints.CheckpointError, match=r"does not fit the model: unexpected"):
    checkpoints.load_variables(path, jax.eval_shape(
        lambda: init_variables(baseline, (64, 48), jax.random.key(1))))
  with pytest.raises(checkpoints.CheckpointError, match="checkpoint directory not found"):
    checkpoints.load_variables(str(tmp_path / "nothing"), abstract)
