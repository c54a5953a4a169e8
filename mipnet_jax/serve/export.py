"""``--mode=export``: a model as an inference bundle (layout and contract in serve/bundle.py).

The exported function takes the variables as its first argument instead of baking them in
as constants: the serialized function holds the graph only (0.17 MB for the quick HRNet), the
weights are the orbax checkpoint that evaluation and fine-tuning read as well, and one function
file serves every checkpoint of the architecture. The price is that the loader needs the
variables' tree, which bundle.json stores (shape and dtype of every array), so loading needs
orbax but not flax or the model code. The batch dimension is symbolic
(``jax.export.symbolic_shape("b")``). With ``--export_onnx`` the bundle also holds model.onnx,
the same function with the weights inside (serve/onnx_export.py).
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from mipnet_jax import checkpoints
from mipnet_jax.core.geometry import BOX_PADDING
from mipnet_jax.data import inputs
from mipnet_jax.eval import predict_step
from mipnet_jax.eval.protocol import evaluated_n
from mipnet_jax.models.load import FRESH, load_model, resolve_checkpoint
from mipnet_jax.serve import bundle


def require_device_decode(config) -> None:
  """Export and predict decode on the device: a ValueError unless config.eval.decode is
  "quarter" or the model is UDP's (its UDP-DARK decoding runs on the device; cheap, callers
  check before loading weights)."""
  if config.eval.decode != "quarter" and not bundle.uses_udp(config):
    raise ValueError(f"export and predict decode on the device: config.eval.decode must be "
                     f"'quarter', got {config.eval.decode!r} (DARK needs the heatmaps on the "
                     f"host)")


def serving_function(config, model, num_instances: int):
  """``predict_step.image_joints_fn`` with ``config.eval``'s flip test, the data's heatmap
  size and the model's geometry: ``f(variables, crops, centers, scales) -> (keypoints,
  maxvals)``; the device decodes (quarter offset, or UDP-DARK for UDP models)."""
  require_device_decode(config)
  return predict_step.image_joints_fn(model, num_instances, flip_permutation(config),
                                      tuple(config.data.heatmap_hw), udp=bundle.uses_udp(config))


def flip_permutation(config):
  """The model joints' flip permutation when ``config.eval.flip`` tests flipped crops, else
  None."""
  return inputs.model_meta(config).flip_permutation if config.eval.flip else None


def _tree_spec(tree) -> dict:
  """Variables -> {name: subtree | {"shape", "dtype"}} (bundle.json's "variables")."""
  if isinstance(tree, dict):
    return {k: _tree_spec(v) for k, v in tree.items()}
  return dict(shape=list(tree.shape), dtype=np.dtype(tree.dtype).name)


def make_manifest(config, variables: dict, num_instances: int, weights: str,
                  platforms: tuple[str, ...]) -> dict:
  """bundle.json: the contract's sizes and settings, the variables' tree and provenance."""
  return dict(
      format=bundle.BUNDLE_FORMAT, version=bundle.BUNDLE_VERSION,
      experiment=config.experiment, architecture=config.model.name, weights=weights,
      dataset=config.data.name, input_hw=list(config.data.image_hw),
      heatmap_hw=list(config.data.heatmap_hw), num_instances=num_instances,
      num_keypoints=int(config.model.num_keypoints), color=config.data.color,
      box_padding=BOX_PADDING, flip=bool(config.eval.flip),
      decode="udp_dark" if bundle.uses_udp(config) else "quarter", udp=bundle.uses_udp(config),
      batch_size=int(config.eval.batch_size), platforms=list(platforms),
      jax_version=jax.__version__, onnx=None,
      inputs=["variables", "crops uint8 [b, h, w, 3]", "centers float32 [b, 2]",
              "scales float32 [b, 2]"],
      outputs=["keypoints float32 [b, N, K, 2] image (x, y)", "maxvals float32 [b, N, K]"],
      variables=_tree_spec({k: variables[k] for k in ("params", "batch_stats")}))


def export_function(model, variables: dict, config, num_instances: int,
                    platforms: tuple[str, ...] | None = None) -> jax.export.Exported:
  """``serving_function`` of ``config`` exported with a symbolic batch size ``b``."""
  fn = serving_function(config, model, num_instances)
  b, = jax.export.symbolic_shape("b")
  h, w = config.data.image_hw
  args = (jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), variables),
          jax.ShapeDtypeStruct((b, h, w, 3), jnp.uint8),
          jax.ShapeDtypeStruct((b, 2), jnp.float32), jax.ShapeDtypeStruct((b, 2), jnp.float32))
  return jax.export.export(jax.jit(fn), platforms=platforms)(*args)


def export_bundle(config, model, variables: dict, out_dir: str, weights: str = "",
                  platforms: tuple[str, ...] | None = None,
                  with_onnx: bool = False) -> dict[str, str]:
  """Writes the bundle of ``model`` with ``variables`` to the new or empty folder
  ``out_dir``; returns its files by kind (function, variables, manifest, config and, with
  ``with_onnx``, onnx: serve/onnx_export.py's model.onnx)."""
  if os.path.exists(out_dir) and os.listdir(out_dir):
    raise ValueError(f"{out_dir}: export folder exists and is not empty (remove it or pass "
                     f"another --export_dir)")
  if with_onnx:
    bundle.require_onnx_geometry(config)
  variables = {k: variables[k] for k in ("params", "batch_stats")}
  n = evaluated_n(config)
  exported = export_function(model, variables, config, n, platforms)
  os.makedirs(out_dir, exist_ok=True)
  paths = dict(function=os.path.join(out_dir, bundle.FUNCTION),
               variables=os.path.join(out_dir, bundle.VARIABLES),
               manifest=os.path.join(out_dir, bundle.MANIFEST),
               config=os.path.join(out_dir, bundle.CONFIG))
  with open(paths["function"], "wb") as f:
    f.write(exported.serialize())
  checkpoints.save_variables(paths["variables"], variables)
  manifest = make_manifest(config, variables, n, weights, exported.platforms)
  if with_onnx:
    from mipnet_jax.serve import onnx_export    # needs the onnx package (the onnx extra)
    paths["onnx"] = os.path.join(out_dir, bundle.ONNX)
    onnx_export.export_onnx(config, model, variables, n, flip_permutation(config),
                            paths["onnx"])
    manifest["onnx"] = bundle.ONNX
  with open(paths["manifest"], "w") as f:
    json.dump(manifest, f, indent=1)
  with open(paths["config"], "w") as f:
    f.write(config.to_json(indent=1))
  return paths


@dataclasses.dataclass(frozen=True)
class ExportResult:
  """A written bundle: its files, the weights it holds, the platforms it was lowered for
  and the serialized function's size (and model.onnx's, 0 without it)."""

  paths: dict[str, str]
  weights: str
  platforms: tuple[str, ...]
  function_bytes: int
  onnx_bytes: int = 0

  def summary(self) -> str:
    """One JSON line: bundle folder, weights, platforms, function and ONNX sizes."""
    return json.dumps(dict(bundle=os.path.dirname(self.paths["manifest"]), weights=self.weights,
                           platforms=list(self.platforms), function_bytes=self.function_bytes,
                           onnx_bytes=self.onnx_bytes))


def run_export(config, workdir: str | None, export_dir: str = "",
               platforms: str = "", with_onnx: bool = False) -> ExportResult:
  """``--mode=export``: the bundle of the configured checkpoint (``resolve_checkpoint``)
  under ``export_dir`` (default WORKDIR/export); ``platforms`` a comma list (cpu, cuda, rocm,
  tpu; default this JAX's backend); ``with_onnx``: model.onnx too (``--export_onnx``)."""
  out_dir = export_dir or (os.path.join(workdir, "export") if workdir else "")
  if not out_dir:
    raise ValueError("--mode=export writes under --export_dir or WORKDIR/export: pass one")
  require_device_decode(config)
  if with_onnx:
    bundle.require_onnx_geometry(config)
  loaded = load_model(config, evaluated_n(config), resolve_checkpoint(config, workdir))
  if loaded.weights == FRESH:
    logging.warning("exporting FRESHLY INITIALISED weights (no config.eval.checkpoint and no "
                    "checkpoint in --workdir): the bundle predicts nothing useful")
  names = tuple(p.strip() for p in platforms.split(",") if p.strip()) or None
  paths = export_bundle(config, loaded.model, loaded.variables, out_dir, loaded.weights, names,
                        with_onnx)
  return ExportResult(paths, loaded.weights, tuple(bundle.read_manifest(out_dir)["platforms"]),
                      os.path.getsize(paths["function"]),
                      os.path.getsize(paths["onnx"]) if with_onnx else 0)
