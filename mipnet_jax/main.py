"""mipnet_jax entry point.

    python -m mipnet_jax.main --config=configs/hrnet_w32_coco_256x192.py --mode=summary
    python -m mipnet_jax.main --config=configs/sbl_r50_coco_256x192.py:baseline --mode=summary --json
    python -m mipnet_jax.main --config=configs/hrnet_w32_coco_256x192.py --config.model.mimb_reduce=2 ...

Modes:
  summary  parameter count and per-box inference cost for N=1..4 (``--json``: one JSON line).
  data     the data report of the config's splits: person boxes, the multi-instance
           statistic, skipped records by reason, detection boxes (``--check_images``
           decodes every image once; ``--json``: one JSON line).
  eval     evaluates ``config.eval.checkpoint`` (or fresh weights, a smoke run) on
           ``config.eval.splits`` with the protocol of ``config.eval``; writes results,
           metrics and a table per split under WORKDIR/eval.
  sweep    AP of the N=1 baseline and MIPNet versus the detector's minimum box
           confidence on the first eval split: table and PNG under WORKDIR/eval.
  train    trains in WORKDIR (resumes from its newest checkpoint; SIGTERM saves and stops).
  train_and_eval  the same, evaluating config.eval.splits every train.eval_every_epochs
           and at the end (merged and lambda=0-only APs).
  export   an inference bundle of ``config.eval.checkpoint`` (else WORKDIR's newest, else fresh
           weights with a warning) under --export_dir or WORKDIR/export: the jax.export
           function (symbolic batch), an orbax variables checkpoint, bundle.json, config.json
           (serve/bundle.py; ``--export_platforms=cpu,cuda`` to lower for more backends;
           ``--export_onnx``: model.onnx too, for onnxruntime, serve/onnx_export.py).
  predict  poses for --images=FILE|DIR|GLOB on the boxes of --boxes=DETS.json (COCO
           detections; images matched by --annotations=ANN.json or by COCO-style numeric file
           names) or on whole images: predictions.json (COCO results + "lambda"), images.json
           and a PNG per image under --output_dir or WORKDIR/predict. The model is the
           config's (checkpoint as in export) or, with --bundle=DIR instead of --config, an
           exported bundle (``--runtime=onnx``: its model.onnx under onnxruntime).
           ``--detector=NAME|FILE.onnx`` finds the people; ``--video=FILE`` instead of
           --images writes an annotated MP4 and one JSONL line per frame with track ids.

    python -m mipnet_jax.main --config=configs/hrnet_w32_synthetic_256x192.py:quick \
        --workdir=runs/demo --mode=export
    python -m mipnet_jax.main --bundle=runs/demo/export --mode=predict --output_dir=out \
        --images='data/coco/val2017/*.jpg' --boxes=dets.json --annotations=ann.json

Multi-host: --coordinator_address=HOST:PORT --num_processes=P --process_id=I on every host
(or the environment JAX reads on TPU / SLURM with --distributed).
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import logging as pylogging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mipnet_jax import checkpoints, experiments
from mipnet_jax.core import runtime
from mipnet_jax.data import inputs, stats
from mipnet_jax.eval import evaluators, sweep
from mipnet_jax.models import summary
from mipnet_jax.models.build import build_model
from mipnet_jax.serve import export, predict
from mipnet_jax.train import loop

USER_ERRORS = (ValueError, OSError, checkpoints.CheckpointError)

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py"
                                          "[:ARG]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_MODE = flags.DEFINE_enum("mode", "summary", ("summary", "data", "eval", "sweep", "train",
                                              "train_and_eval", "export", "predict"),
                          "What to run.")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON line instead of a table.")
_CHECK_IMAGES = flags.DEFINE_bool("check_images", False, "data: decode every image once.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "Multi-host: HOST:PORT of process 0's coordinator.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: process count.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Multi-host from the environment (TPU pods, SLURM).")
_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "export: the bundle folder (default "
                                  "WORKDIR/export; must be new or empty).")
_EXPORT_PLATFORMS = flags.DEFINE_string("export_platforms", "", "export: comma list of "
                                        "cpu, cuda, rocm, tpu (default: this JAX's backend).")
_EXPORT_ONNX = flags.DEFINE_bool("export_onnx", False, "export: also write model.onnx (the "
                                  "same function for onnxruntime; needs the onnx package).")
_IMAGES = flags.DEFINE_string("images", None, "predict: an image file, a folder or a glob.")
_BOXES = flags.DEFINE_string("boxes", "", "predict: COCO-format detection file (default: "
                             "each whole image is one box).")
_DETECTOR = flags.DEFINE_string("detector", "", "predict: a person detector giving the boxes: "
                                "yolox_tiny_humanart or yolox_m_humanart (fetched on first "
                                "use) or an ONNX file (serve/detector.py); needs the onnx "
                                "extra.")
_VIDEO = flags.DEFINE_string("video", "", "predict: a video file (instead of --images): an "
                             "annotated MP4 and one JSONL line per frame, with track ids.")
_DET_EVERY = flags.DEFINE_integer("det_every", 5, "predict --video: run the detector every K "
                                  "frames (in between, boxes follow the previous poses).")
_ANNOTATIONS = flags.DEFINE_string("annotations", "", "predict: COCO file whose images map "
                                   "file names to the detection file's image ids.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "predict: output folder (default "
                                  "WORKDIR/predict).")
_BUNDLE = flags.DEFINE_string("bundle", None, "predict: an exported bundle to run instead of "
                              "--config's model.")
_RUNTIME = flags.DEFINE_enum("runtime", "jax", ("jax", "onnx"), "predict --bundle: run the "
                             "bundle's jax.export function or its model.onnx (onnxruntime).")
_DRAW_MIN_SCORE = flags.DEFINE_float("draw_min_score", 0.3, "predict: poses scoring below are "
                                     "not drawn (predictions.json keeps them).")


def _workdir(mode: str) -> str:
  if not _WORKDIR.value:
    raise app.UsageError(f"--mode={mode} writes its files under --workdir")
  return _WORKDIR.value


def mode_summary(config) -> str:
  result = summary.model_report(config)
  return json.dumps(result) if _JSON.value else summary.format_report(result)


def mode_data(config) -> str:
  reports, errors = inputs.data_report(config, _CHECK_IMAGES.value)
  if _JSON.value:
    return json.dumps(dict(reports=reports, errors=errors))
  return "\n".join([stats.format_reports(reports)] +
                   [f"{name}: {message}" for name, message in errors.items()])


def mode_eval(config) -> str:
  return "\n".join(r.summary() for r in evaluators.run_eval(config, _workdir("eval")))


def mode_sweep(config) -> str:
  return sweep.run_sweep(config, _workdir("sweep")).summary()


def train(config, workdir: str, with_eval: bool = False) -> loop.TrainSummary:
  """``--mode=train`` (``with_eval``: ``train_and_eval``): the training loop, handed the
  split evaluators (merged and lambda=0 AP) when it evaluates; scripts call it too."""
  evals = ()
  if with_eval:         # process 0 evaluates; the evaluators check the config up front
    model = build_model(config.model, config.num_instances)
    evals = evaluators.from_config(config, model, os.path.join(workdir, "eval"),
                                   with_lambda0=True)
  return loop.train_and_evaluate(config, workdir, evals)


def mode_train(config, with_eval: bool = False) -> str:
  return train(config, _workdir(_MODE.value), with_eval).summary()


def mode_export(config) -> str:
  return export.run_export(config, _WORKDIR.value, _EXPORT_DIR.value or "",
                           _EXPORT_PLATFORMS.value, _EXPORT_ONNX.value).summary()


def mode_predict(config) -> str:
  """With the config's model, or with --bundle when ``config`` is None."""
  if bool(_IMAGES.value) == bool(_VIDEO.value):
    raise app.UsageError("--mode=predict needs --images=FILE|DIR|GLOB or --video=FILE")
  out_dir = _OUTPUT_DIR.value or (os.path.join(_WORKDIR.value, "predict")
                                  if _WORKDIR.value else None)
  if not out_dir:
    raise app.UsageError("--mode=predict writes under --output_dir or WORKDIR/predict")
  return predict.predict_mode(config, _BUNDLE.value, _IMAGES.value, out_dir, _BOXES.value,
                              _ANNOTATIONS.value, _WORKDIR.value, _DRAW_MIN_SCORE.value,
                              _DETECTOR.value, _VIDEO.value, _DET_EVERY.value,
                              _RUNTIME.value).summary()


MODES = {"summary": mode_summary, "data": mode_data, "eval": mode_eval, "sweep": mode_sweep,
         "train": mode_train, "train_and_eval": lambda c: mode_train(c, with_eval=True),
         "export": mode_export, "predict": mode_predict}


class _QuietLibraries(pylogging.Filter):
  """Drops the INFO chatter of orbax and JAX internals from the log (warnings stay)."""

  def filter(self, record: pylogging.LogRecord) -> bool:
    return record.levelno >= pylogging.WARNING or not any(
        part in record.pathname for part in ("/orbax/", "/jax/_src/", "/grain/"))


def main(argv):
  logging.get_absl_handler().addFilter(_QuietLibraries())
  try:
    run(argv)
  except USER_ERRORS as e:          # bad config, data or checkpoint: one line, no traceback
    logging.error("%s: %s", type(e).__name__, e)
    sys.exit(2)


def run(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = _CONFIG.value
  if _RUNTIME.value != "jax" and not (_MODE.value == "predict" and _BUNDLE.value):
    raise app.UsageError(f"--runtime={_RUNTIME.value} runs an exported bundle: use it with "
                         f"--mode=predict --bundle=DIR")
  if _MODE.value == "predict" and _BUNDLE.value:
    if config is not None:
      raise app.UsageError("--bundle replaces --config (the bundle holds its own config)")
    print(mode_predict(None))
    return
  if config is None:
    raise app.UsageError("--config is required, e.g. --config=configs/hrnet_w32_coco_256x192.py")
  experiments.check_renamed(config)
  runtime.configure_cpu_xla(config.model.name)   # before the first JAX computation
  if _COORDINATOR.value or _DISTRIBUTED.value:
    import jax
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  print(MODES[_MODE.value](config))


def config_override_error(argv: list[str], error: Exception) -> str | None:
  """One line for a ``--config.FIELD=VALUE`` that names no field of the config (the nearest
  field, or the new name of a renamed one); None when ``error`` is about something else."""
  overrides = [a[len("--config."):].split("=", 1)[0] for a in argv if a.startswith("--config.")]
  message = str(error).splitlines()[0] if str(error) else type(error).__name__
  for name in overrides:
    new = experiments.renamed_field(name)
    if new:
      return f"--config.{name}: config.{name.split('.')[0]} was renamed: use --config.{new}"
  config = _config_of(argv)
  if config is None:
    return None
  fields = _field_paths(config)
  for name in overrides:
    if name not in fields:
      near = difflib.get_close_matches(name, fields, n=1, cutoff=0.5)
      hint = f"; did you mean --config.{near[0]}?" if near else ""
      return f"--config.{name}: the config has no field {name!r}{hint}"
  return f"--config override: {message}" if overrides and "--config." in message else None


def _config_of(argv: list[str]):
  """The config that ``--config=FILE[:ARG]`` in ``argv`` names, loaded as config_flags does
  (FILE's ``get_config(ARG)``), or None when it cannot be loaded."""
  spec = next((a[len("--config="):] for a in reversed(argv) if a.startswith("--config=")), "")
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    return None
  try:
    loader = importlib.util.spec_from_file_location("_mipnet_config_probe", path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()
  except Exception:       # noqa: BLE001  (the file itself fails: ml_collections says why)
    return None


def _field_paths(config, prefix: str = "") -> list[str]:
  out = []
  for key, value in config.items():
    out.append(prefix + key)
    if hasattr(value, "items"):
      out += _field_paths(value, f"{prefix}{key}.")
  return out


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a misspelt or renamed ``--config.FIELD`` reported in one line
  (exit 2, like the other user errors) instead of ml_collections' traceback."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:      # noqa: BLE001  (ml_collections raises KeyError/AttributeError)
    line = config_override_error(argv, e)
    if line is None:
      if isinstance(e, flags.Error):
        sys.stderr.write(f"FATAL Flags parsing error: {e}\n")
        sys.exit(1)
      raise
    sys.stderr.write(f"error: {line}\n")
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
