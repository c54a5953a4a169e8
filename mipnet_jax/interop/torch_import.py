"""Official PyTorch weights <-> our flax variables: read, convert, check, write.

Names follow models/torch_names.py (the rules as data). A *pose* file (the official COCO models,
the authors' MIPNet checkpoints) must match the model key for key; a *backbone* file
(ImageNet HRNet ``hrnetv2_w32_imagenet_pretrained.pth``, torchvision ``resnet50-19c8e357.pth``)
lacks the pose head (final_layer, deconv_layers, MIMBs), which starts fresh from the model's
init, and carries classifier keys, which are skipped. ``kind="auto"`` calls a file a backbone
when it holds none of the model's head keys. An MAE pretrain encoder
(``mae_pretrain_vit_base.pth``) is a backbone file of ViTPose: mae.py renames it, resizes its
position embedding and lists what it skips.

    variables = from_state_dict(read_state_dict("pose_hrnet_w32_256x192.pth"), model)
    convert("resnet50-19c8e357.pth", config, "ckpt/r50_imagenet")  # -> --config.init_from=

``.pth`` files are read with ``torch.load(weights_only=True)`` (no arbitrary unpickling);
without torch, convert them to ``.npz`` elsewhere (``write_npz``) and read that.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from typing import Any, Iterable, Mapping

import jax
import numpy as np
from flax import traverse_util

from mipnet_jax import checkpoints
from mipnet_jax.interop import mae
from mipnet_jax.models import torch_names
from mipnet_jax.models.build import build_model
from mipnet_jax.models.variables import abstract_variables, fresh_variables
from mipnet_jax.models.topdown import TopDownNet

KINDS = ("auto", "pose", "backbone")
TORCH_SUFFIXES = (".pth", ".pt", ".pth.tar")
# Any input size the models accept: their variables do not depend on it.
PROBE_HW = (64, 64)
MAX_LISTED = 8

log = logging.getLogger(__name__)


class StateDictError(ValueError):
  """A weights file that cannot be read or does not fit the model; names file and keys."""


@dataclasses.dataclass(frozen=True)
class Entry:
  """Where one torch key lives in our variables."""

  collection: str                        # "params" or "batch_stats"
  path: tuple[str, ...]                  # flax path inside the collection
  perm: tuple[int, ...] | None           # our axes -> torch's (None: same layout)
  shape: tuple[int, ...]                 # our shape

  @property
  def torch_shape(self) -> tuple[int, ...]:
    return self.shape if self.perm is None else tuple(self.shape[a] for a in self.perm)


@dataclasses.dataclass
class ImportReport:
  """What an import did, by torch key."""

  source: str
  kind: str                                              # "pose" or "backbone"
  loaded: list[str] = dataclasses.field(default_factory=list)
  fresh: list[str] = dataclasses.field(default_factory=list)    # model init kept
  skipped: list[str] = dataclasses.field(default_factory=list)  # in the file, unused
  ignored: int = 0                                       # num_batches_tracked buffers
  notes: list[str] = dataclasses.field(default_factory=list)    # conversions applied

  def summary(self) -> str:
    lines = [f"{self.source}: {self.kind} weights, {len(self.loaded)} arrays loaded, "
             f"{len(self.fresh)} fresh, {len(self.skipped)} skipped, {self.ignored} "
             "num_batches_tracked ignored"]
    if self.fresh:
      lines.append(f"  fresh (model init): {_modules(self.fresh)}")
    if self.skipped:
      lines.append(f"  skipped (not used by the model): {_listing(self.skipped)}")
    lines += [f"  {note}" for note in self.notes]
    return "\n".join(lines)


def _modules(keys: list[str]) -> str:
  """'deconv_layers.* (35), final_layer.* (2)': keys counted by top-level module."""
  counts: dict[str, int] = {}
  for key in keys:
    top = key.split(".")[0]
    counts[top] = counts.get(top, 0) + 1
  return ", ".join(f"{top}.* ({n})" for top, n in counts.items())


def _listing(keys: list[str], limit: int = MAX_LISTED) -> str:
  shown = ", ".join(keys[:limit])
  return f"{shown} ... and {len(keys) - limit} more" if len(keys) > limit else shown


# ---------------------------------------------------------------------------- name maps


def _entries(variables: Mapping[str, Any]) -> dict[str, Entry]:
  """{torch key: Entry} for our variables (arrays or ShapeDtypeStructs), in torch order."""
  out = {}
  for collection in ("params", "batch_stats"):
    for path, leaf in traverse_util.flatten_dict(variables.get(collection, {})).items():
      key, perm = torch_names.torch_key(collection, path)
      out[key] = Entry(collection, path, perm, tuple(leaf.shape))
  return {k: out[k] for k in sorted(out, key=torch_names.torch_sort_key)}


@functools.lru_cache(maxsize=16)
def _model_entries(model: TopDownNet, image_hw: tuple[int, int]) -> tuple[Any, dict[str, Entry]]:
  """The model's variables as ShapeDtypeStructs (``jax.eval_shape`` of its init, no compile)
  and their entries; cached, since modules are hashable dataclasses and equal models share
  one trace."""
  abstract = abstract_variables(model, tuple(image_hw))
  return abstract, _entries(abstract)


def torch_layout(model: TopDownNet, image_hw: tuple[int, int] = PROBE_HW) -> dict[str, tuple]:
  """{torch key: torch shape} of ``model``, in the official ``state_dict()`` order (no
  num_batches_tracked). Derived from the model's own variables (jax.eval_shape, no compile)."""
  return {k: e.torch_shape for k, e in _model_entries(model, tuple(image_hw))[1].items()}


def to_state_dict(variables: Mapping[str, Any],
                  model: TopDownNet | None = None) -> dict[str, np.ndarray]:
  """Our {'params', 'batch_stats'} -> {torch key: array in torch layout}, in state_dict order.

  With ``model``, the variables must be exactly the model's (names and shapes)."""
  entries = _entries(variables)
  if model is not None:
    want = torch_layout(model)
    got = {k: e.torch_shape for k, e in entries.items()}
    if got != want:
      raise StateDictError(f"variables do not fit the model: {_problems(got, want)}")
  out = {}
  for key, e in entries.items():
    arr = np.asarray(jax.device_get(_get(variables[e.collection], e.path)))
    out[key] = arr if e.perm is None else np.ascontiguousarray(arr.transpose(e.perm))
  return out


def _get(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
  for part in path:
    tree = tree[part]
  return tree


# ------------------------------------------------------------------------------ import


def normalize_keys(state_dict: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
  """Strips DataParallel's ``module.`` prefix and drops num_batches_tracked buffers.
  Returns (state dict, number of dropped buffers)."""
  prefix = torch_names.DATA_PARALLEL_PREFIX
  out, ignored = {}, 0
  for key, value in state_dict.items():
    key = key[len(prefix):] if key.startswith(prefix) else key
    if key.endswith(torch_names.IGNORED_SUFFIXES):
      ignored += 1
    else:
      out[key] = value
  return out, ignored


def detect_kind(keys: Iterable[str], model_keys: Iterable[str]) -> str:
  """'backbone' if the file holds none of the model's pose-head keys, else 'pose'."""
  head = {k for k in model_keys if torch_names.matches_any(k, torch_names.HEAD_PATTERNS)}
  return "pose" if head & set(keys) else "backbone"


def _problems(have: Mapping[str, tuple], want: Mapping[str, tuple],
              missing_ok: Iterable[str] = (), unknown_ok: Iterable[str] = ()) -> str:
  """'' if ``have`` fits ``want``, else the unknown / missing / mis-shaped keys."""
  missing_ok, unknown_ok = set(missing_ok), set(unknown_ok)
  unknown = [k for k in have if k not in want and k not in unknown_ok]
  missing = [k for k in want if k not in have and k not in missing_ok]
  shapes = [f"{k} {tuple(have[k])} (model {tuple(want[k])})"
            for k in want if k in have and tuple(have[k]) != tuple(want[k])]
  parts = [f"{len(keys)} {name}: {_listing(keys)}"
           for name, keys in (("unknown", unknown), ("missing", missing),
                              ("mis-shaped", shapes)) if keys]
  return "; ".join(parts)


def fresh_patterns(allow_fresh: Iterable[str]) -> tuple[str, ...]:
  """Regexes of ``allow_fresh``: aliases (torch_names.FRESH_ALIASES) expanded."""
  allow_fresh = (allow_fresh,) if isinstance(allow_fresh, str) else allow_fresh
  return tuple(p for item in allow_fresh
               for p in torch_names.FRESH_ALIASES.get(item, (item,)))


def plan_import(state_dict: Mapping[str, Any], entries: Mapping[str, Entry], *,
                kind: str = "auto", allow_fresh: Iterable[str] = (), source: str = "state_dict",
                ignored: int = 0) -> ImportReport:
  """Checks a (normalised) state dict against the model's entries; raises StateDictError
  listing every unknown, missing and mis-shaped key at once.

  ``allow_fresh``: model keys that keep the model's init when the file lacks them or holds
  them in another shape (that array is skipped), as regexes matched at the key's start or
  names of torch_names.FRESH_ALIASES: ``"mimb"`` starts MIPNet from a baseline pose file,
  ``"final_layer"`` a 14-keypoint model from a 17-keypoint file. A backbone file may also
  lack the head keys and carry the classifier keys (skipped)."""
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  if kind == "auto":
    kind = detect_kind(state_dict, entries)
  backbone, user_ok = kind == "backbone", fresh_patterns(allow_fresh)
  want = {k: e.torch_shape for k, e in entries.items()}
  have = {k: tuple(np.shape(v)) for k, v in state_dict.items()}
  reshaped = [k for k in want if k in have and have[k] != want[k]
              and torch_names.matches_any(k, user_ok)]
  have = {k: s for k, s in have.items() if k not in reshaped}
  fresh_ok = user_ok + (torch_names.HEAD_PATTERNS if backbone else ())
  skip_ok = torch_names.BACKBONE_EXTRA_PATTERNS if backbone else ()
  fresh = [k for k in want if k not in have and torch_names.matches_any(k, fresh_ok)]
  skipped = [k for k in have if k not in want and torch_names.matches_any(k, skip_ok)]
  problems = _problems(have, want, fresh, skipped)
  if problems:
    raise StateDictError(f"{source}: {kind} weights do not fit the model: {problems}")
  loaded = [k for k in want if k in have]
  return ImportReport(source, kind, loaded, fresh, skipped + reshaped, ignored)


def _prepare(state_dict: Mapping[str, Any], model: TopDownNet, image_hw: tuple[int, int],
             kind: str, allow_fresh: Iterable[str], source: str):
  state_dict, ignored = normalize_keys(state_dict)
  abstract, entries = _model_entries(model, tuple(image_hw))
  state_dict, mae_skipped, notes = _adapt_mae(state_dict, model, image_hw, source)
  if notes is not None:
    allow_fresh = tuple(fresh_patterns(allow_fresh)) + mae.FRESH_PATTERNS
  report = plan_import(state_dict, entries, kind=kind, allow_fresh=allow_fresh, source=source,
                       ignored=ignored)
  report.skipped[:0] = mae_skipped
  report.notes += notes or []
  return state_dict, abstract, entries, report


def _adapt_mae(state_dict: Mapping[str, Any], model: TopDownNet, image_hw: tuple[int, int],
               source: str) -> tuple[Mapping[str, Any], list[str], list[str] | None]:
  """(state dict, skipped keys, notes) for an MAE encoder file into a ViT model (mae.py);
  other files pass unchanged with notes None."""
  patch = getattr(model, "patch_size", None)
  if patch is None or not mae.is_mae(state_dict):
    return state_dict, [], None
  pad = model.patch_padding
  grid = tuple((s + 2 * pad - patch) // patch + 1 for s in image_hw)
  out, skipped, notes = mae.adapt(state_dict, grid, (patch, patch), source)
  return out, skipped, ["MAE pretrain encoder (backbone.* prefixed)"] + notes


def check_state_dict(state_dict: Mapping[str, Any], model: TopDownNet,
                     image_hw: tuple[int, int] = PROBE_HW, *, kind: str = "auto",
                     allow_fresh: Iterable[str] = (), source: str = "state_dict") -> ImportReport:
  """Dry run of ``import_state_dict`` (only shapes are read): the report, or the error."""
  return _prepare(state_dict, model, image_hw, kind, allow_fresh, source)[3]


def import_state_dict(state_dict: Mapping[str, Any], model: TopDownNet,
                      image_hw: tuple[int, int] = PROBE_HW, *, kind: str = "auto",
                      allow_fresh: Iterable[str] = (), rng: jax.Array | None = None,
                      source: str = "state_dict") -> tuple[dict, ImportReport]:
  """A torch state dict -> ({'params', 'batch_stats'} of ``model``, ImportReport).

  Arrays are transposed to our layout and cast to the model's dtypes (float32). Keys the
  report lists as fresh keep the model's init (``rng``, default key 0, inputs ``image_hw``).
  See ``plan_import`` for ``kind`` and ``allow_fresh``; the summary is logged at INFO."""
  state_dict, abstract, entries, report = _prepare(state_dict, model, image_hw, kind,
                                                   allow_fresh, source)
  if report.fresh:
    rng = jax.random.key(0) if rng is None else rng
    base = fresh_variables(model, tuple(image_hw), rng)
  else:
    base = abstract
  flat = {c: traverse_util.flatten_dict(base[c]) for c in ("params", "batch_stats")}
  for key in report.loaded:
    e = entries[key]
    arr = np.asarray(state_dict[key])
    arr = arr if e.perm is None else arr.transpose(np.argsort(e.perm))
    flat[e.collection][e.path] = np.ascontiguousarray(
        arr.astype(flat[e.collection][e.path].dtype))
  log.info("%s", report.summary())
  return {c: traverse_util.unflatten_dict(flat[c]) for c in flat}, report


def from_state_dict(state_dict: Mapping[str, Any], model: TopDownNet,
                    image_hw: tuple[int, int] = PROBE_HW, *, kind: str = "auto",
                    allow_fresh: Iterable[str] = (), rng: jax.Array | None = None,
                    source: str = "state_dict") -> dict:
  """``import_state_dict`` without the report: {'params', 'batch_stats'} of ``model``."""
  return import_state_dict(state_dict, model, image_hw, kind=kind, allow_fresh=allow_fresh,
                           rng=rng, source=source)[0]


# ------------------------------------------------------------------------------- files


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """{key: array} of a ``.pth`` / ``.pt`` / ``.pth.tar`` (torch, ``weights_only=True``; a
  top-level {'state_dict': ...} or, as MAE's files, {'model': ...} is unwrapped, in the
  official loader's order) or ``.npz`` file (no pickles)."""
  if path.endswith(".npz"):
    return _read_npz(path)
  if path.endswith(TORCH_SUFFIXES):
    return _read_torch(path)
  raise StateDictError(f"{path}: unsupported weights file; expected one of "
                       f"{', '.join(TORCH_SUFFIXES + ('.npz',))}")


def _read_npz(path: str) -> dict[str, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  except ValueError as e:       # object arrays need pickle: refused
    raise StateDictError(f"{path}: cannot read without unpickling ({e})") from None


def _read_torch(path: str) -> dict[str, np.ndarray]:
  try:
    import torch
  except ImportError:
    raise StateDictError(
        f"{path}: reading .pth files needs torch (pip install '.[torch]'); or convert it to "
        ".npz where torch is installed (scripts/convert_torch_checkpoint.py --npz=OUT.npz) "
        "and pass the .npz") from None
  try:
    data = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:        # torch raises UnpicklingError, RuntimeError, ...
    raise StateDictError(f"{path}: torch.load(weights_only=True) failed: {e}") from None
  for wrapper in ("state_dict", "model"):
    if isinstance(data, Mapping) and isinstance(data.get(wrapper), Mapping):
      data = data[wrapper]
      break
  if not isinstance(data, Mapping):
    raise StateDictError(f"{path}: expected a state dict, got {type(data).__name__}")
  bad = [k for k, v in data.items() if not isinstance(v, torch.Tensor)]
  if bad:
    raise StateDictError(f"{path}: not a state dict of tensors; non-tensor entries: "
                         f"{_listing(bad)}")
  return {k: _tensor_to_numpy(v) for k, v in data.items()}


def _tensor_to_numpy(t: Any) -> np.ndarray:
  t = t.detach().cpu()
  if t.dtype.is_floating_point and t.dtype.itemsize < 4:   # bf16 / fp16 -> float32
    t = t.float()
  return t.numpy()


def write_npz(state_dict: Mapping[str, Any], path: str) -> str:
  """Writes {key: array} to ``path`` (.npz, no pickles), readable without torch; returns the
  path written (numpy appends .npz when missing)."""
  path = path if path.endswith(".npz") else f"{path}.npz"
  arrays = {k: np.asarray(v) for k, v in state_dict.items()}
  if any(a.dtype == object for a in arrays.values()):
    raise StateDictError(f"{path}: object arrays cannot be written without pickle")
  np.savez(path, **arrays)
  return path


def convert(path: str, config: Any, out_dir: str, *, kind: str = "auto",
            allow_fresh: Iterable[str] = (), seed: int = 0) -> ImportReport:
  """Reads the weights file ``path`` into the model of ``config`` (``config.model``,
  ``config.num_instances``) and writes a variables checkpoint to ``out_dir`` that
  ``--config.init_from`` and ``--config.eval.checkpoint`` accept. Fresh keys come from the
  model's init with ``seed``."""
  if os.path.exists(out_dir):
    raise FileExistsError(f"{out_dir}: already exists; give a new checkpoint directory")
  model = build_model(config.model, config.num_instances)
  state_dict = read_state_dict(path)
  variables, report = import_state_dict(
      state_dict, model, tuple(config.data.image_hw), kind=kind, allow_fresh=allow_fresh,
      rng=jax.random.key(seed), source=path)
  checkpoints.save_variables(out_dir, variables)
  return report
