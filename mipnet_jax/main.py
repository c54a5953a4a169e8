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
           (mipnet_jax/serving.py; ``--export_platforms=cpu,cuda`` to lower for more backends).
  predict  poses for --images=FILE|DIR|GLOB on the boxes of --boxes=DETS.json (COCO
           detections; images matched by --annotations=ANN.json or by COCO-style numeric file
           names) or on whole images: predictions.json (COCO results + "lambda"), images.json
           and a PNG per image under --output_dir or WORKDIR/predict. The model is the
           config's (checkpoint as in export) or, with --bundle=DIR instead of --config, an
           exported bundle.

    python -m mipnet_jax.main --config=configs/hrnet_w32_synthetic_256x192.py:quick \
        --workdir=runs/demo --mode=export
    python -m mipnet_jax.main --bundle=runs/demo/export --mode=predict --output_dir=out \
        --images='data/coco/val2017/*.jpg' --boxes=dets.json --annotations=ann.json

Multi-host: --coordinator_address=HOST:PORT --num_processes=P --process_id=I on every host
(or the environment JAX reads on TPU / SLURM with --distributed).
"""

from __future__ import annotations

import json
import logging as pylogging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mipnet_jax import (checkpoints, eval_job, export, predict, report, runtime, serving,
                        trainer)
from mipnet_jax.data import inputs, stats

MODES = ("summary", "data", "eval", "sweep", "train", "train_and_eval", "export", "predict")
USER_ERRORS = (ValueError, OSError, checkpoints.CheckpointError)

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py"
                                          "[:ARG]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_MODE = flags.DEFINE_enum("mode", "summary", MODES, "What to run.")
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
_IMAGES = flags.DEFINE_string("images", None, "predict: an image file, a folder or a glob.")
_BOXES = flags.DEFINE_string("boxes", "", "predict: COCO-format detection file (default: "
                             "each whole image is one box).")
_ANNOTATIONS = flags.DEFINE_string("annotations", "", "predict: COCO file whose images map "
                                   "file names to the detection file's image ids.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "predict: output folder (default "
                                  "WORKDIR/predict).")
_BUNDLE = flags.DEFINE_string("bundle", None, "predict: an exported bundle to run instead of "
                              "--config's model.")
_DRAW_MIN_SCORE = flags.DEFINE_float("draw_min_score", 0.3, "predict: poses scoring below are "
                                     "not drawn (predictions.json keeps them).")


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
  if _MODE.value == "predict" and _BUNDLE.value:
    if config is not None:
      raise app.UsageError("--bundle replaces --config (the bundle holds its own config)")
    run_predict(None)
    return
  if config is None:
    raise app.UsageError("--config is required, e.g. --config=configs/hrnet_w32_coco_256x192.py")
  runtime.configure_cpu_xla(config.model.name)   # before the first JAX computation
  if _COORDINATOR.value or _DISTRIBUTED.value:
    import jax
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if _MODE.value == "summary":
    result = report.model_report(config)
    print(json.dumps(result) if _JSON.value else report.format_report(result))
  elif _MODE.value == "data":
    reports, errors = inputs.data_report(config, _CHECK_IMAGES.value)
    if _JSON.value:
      print(json.dumps(dict(reports=reports, errors=errors)))
    else:
      print(stats.format_reports(reports))
      for name, message in errors.items():
        print(f"{name}: {message}")
  elif _MODE.value in ("eval", "sweep"):
    if not _WORKDIR.value:
      raise app.UsageError(f"--mode={_MODE.value} writes its files under --workdir")
    if _MODE.value == "eval":
      for done in eval_job.run_eval(config, _WORKDIR.value):
        print(done["table"])
        print(json.dumps(dict(split=done["protocol"]["split"], metrics=done["metrics"],
                              results=done["paths"]["results"])))
    else:
      done = eval_job.run_sweep(config, _WORKDIR.value)
      print(done["title"] + "\n" + done["table"])
      print(json.dumps(dict(rows=done["rows"], png=done["paths"]["png"])))
  elif _MODE.value in ("train", "train_and_eval"):
    if not _WORKDIR.value:
      raise app.UsageError(f"--mode={_MODE.value} needs --workdir")
    done = trainer.train_and_evaluate(config, _WORKDIR.value, _MODE.value == "train_and_eval")
    print(trainer.format_summary(config, done))
  elif _MODE.value == "export":
    done = export.run_export(config, _WORKDIR.value, _EXPORT_DIR.value or "",
                             _EXPORT_PLATFORMS.value)
    print(json.dumps(dict(bundle=os.path.dirname(done["paths"]["manifest"]),
                          weights=done["weights"], platforms=done["platforms"],
                          function_bytes=done["bytes"])))
  elif _MODE.value == "predict":
    run_predict(config)


def run_predict(config) -> None:
  """--mode=predict with the config's model, or with --bundle when ``config`` is None."""
  if not _IMAGES.value:
    raise app.UsageError("--mode=predict needs --images=FILE|DIR|GLOB")
  out_dir = _OUTPUT_DIR.value or (os.path.join(_WORKDIR.value, "predict")
                                  if _WORKDIR.value else None)
  if not out_dir:
    raise app.UsageError("--mode=predict writes under --output_dir or WORKDIR/predict")
  # Cheap input checks first: a bad glob or detection file fails before the model loads.
  paths = predict.list_images(_IMAGES.value)
  ids = predict.image_ids(paths, _ANNOTATIONS.value, need_ids=bool(_BOXES.value))
  if _BOXES.value:
    predict.detections_by_image(_BOXES.value, ids, _ANNOTATIONS.value)
  if config is None:
    runtime.configure_cpu_xla(serving.read_manifest(_BUNDLE.value)["architecture"])
    predictor = predict.Predictor.from_bundle(_BUNDLE.value)
  else:
    checkpoint = eval_job.resolve_checkpoint(config, _WORKDIR.value)
    predictor = predict.Predictor.from_config(config, checkpoint)
  done = predict.run_predict(predictor, _IMAGES.value, out_dir, _BOXES.value,
                             _ANNOTATIONS.value, draw_min_score=_DRAW_MIN_SCORE.value)
  print(json.dumps(dict(predictions=done["paths"]["predictions"], images=done["images"],
                        poses=done["poses"], boxes=done["boxes"], weights=done["weights"],
                        output_dir=out_dir)))


if __name__ == "__main__":
  app.run(main)
