"""Test helpers of tests/train, not tests: a stand-in network, a fixed-output 'model', the
shrunk quick config, random batches and the reference loss (imported by test_step.py,
test_losses.py and test_loop.py).

``TinyNet`` (conv -> BatchNorm -> lambda embedding -> conv, with the ``instances`` method of
the real networks) is a different network on purpose: it stands in wherever the network
itself is not under test and compiles in about a second. The real model's sharded,
multi-process and kill-and-resume runs are in test_distributed.py.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from mipnet_jax import experiments
from mipnet_jax.core import codec

IMAGE_HW = (64, 64)
HEATMAP_HW = (16, 16)


class TinyNet(nn.Module):
  """A stand-in network: images [B, 64, 64, 3] -> heatmaps [B, 16, 16, K] with BatchNorm
  and a lambda input, plus the ``instances`` method ``step.loss_and_stats`` calls."""

  num_keypoints: int = 17
  lambda_dim: int = 2

  @nn.compact
  def __call__(self, images, lam, train: bool = False):
    x = nn.Conv(4, (4, 4), strides=(4, 4))(images)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    x = x + nn.Dense(4)(lam)[:, None, None, :]
    return nn.Conv(self.num_keypoints, (1, 1))(x)

  def instances(self, images, num_instances: int, *, train: bool):
    b = images.shape[0]
    lam = jax.nn.one_hot(jnp.repeat(jnp.arange(num_instances), b), self.lambda_dim)
    heat = self(jnp.tile(images, (num_instances, 1, 1, 1)), lam, train)
    return jnp.swapaxes(heat.reshape((num_instances, b) + heat.shape[1:]), 0, 1)


class FixedHeatmaps:
  """A 'model' whose ``instances`` output is its params["heat"]: loss_and_stats on known
  predictions."""

  instances = "instances"

  def apply(self, variables, images, num_instances, *, train, method, mutable):
    assert train and method == "instances" and mutable == ["batch_stats"]
    heat = variables["params"]["heat"]
    assert heat.shape[:2] == (images.shape[0], num_instances)
    return heat, {"batch_stats": {"seen": jnp.asarray(images.shape[0])}}


def quick_config(root: pathlib.Path, workdir_steps: int = 4):
  """The quick synthetic config shrunk to 64x64 inputs and 8 generated training images."""
  c = experiments.experiment("hrnet_w32", "synthetic", (256, 192), "quick")
  c.data.update(root=str(root), image_hw=IMAGE_HW, heatmap_hw=HEATMAP_HW, batch_size=8)
  c.data.synthetic.update(num_train=8, num_val=2, image_hw=(128, 128))
  c.train.update(total_steps=workdir_steps, checkpoint_every_steps=2, log_every_steps=1,
                 progress_every_s=1000.0)
  return c


def random_batch(rng: np.random.Generator, batch: int = 4, num_instances: int = 2) -> dict:
  joints = rng.uniform(0, IMAGE_HW[0], (batch, num_instances, 17, 2))
  visible = (rng.random((batch, num_instances, 17)) > 0.3).astype(np.float32)
  windows, weight = codec.heatmap_windows(joints, visible, IMAGE_HW, HEATMAP_HW, 2.0)
  return dict(image=rng.integers(0, 256, (batch, *IMAGE_HW, 3), dtype=np.uint8),
              target_windows=windows, target_weight=weight)


def reference_joints_mse(pred: np.ndarray, gt: np.ndarray, weight: np.ndarray) -> float:
  """HRNet's JointsMSELoss(use_target_weight=True), written as the PyTorch reference:
  pred / gt [rows, K, h, w], weight [rows, K]; per joint 0.5 * MSELoss(mean) of the
  weighted flattened maps, summed over joints, divided by K. float64."""
  rows, k = pred.shape[:2]
  pred = pred.reshape(rows, k, -1).astype(np.float64)
  gt = gt.reshape(rows, k, -1).astype(np.float64)
  loss = 0.0
  for j in range(k):
    w = weight[:, j:j + 1].astype(np.float64)
    loss += 0.5 * np.mean((pred[:, j] * w - gt[:, j] * w) ** 2)
  return loss / k
