"""Pose networks: HRNet and SimpleBaseline, each with optional MIMBs (MIPNet).

``build_model`` (models/build.py) turns a config's ``model`` section into a flax module;
``models/load.py`` gives its variables (abstract, fresh, or from a checkpoint).
"""

from mipnet_jax.models.build import ARCHITECTURES, build_model
from mipnet_jax.models.hrnet import HRNet
from mipnet_jax.models.mimb import MIMB, encode_lambda, lambda_width
from mipnet_jax.models.simple_baseline import SimpleBaseline
from mipnet_jax.models.topdown import TopDownNet

__all__ = ["ARCHITECTURES", "HRNet", "MIMB", "SimpleBaseline", "TopDownNet", "build_model",
           "encode_lambda", "lambda_width"]
