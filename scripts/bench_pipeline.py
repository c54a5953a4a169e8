"""Training-sample throughput of the data pipeline on real COCO JPEGs, side by side with the
official HRNet sample path (tests/oracles/reference_pipeline.py, N=1), one core per process.

  python scripts/bench_pipeline.py [--samples 400] [--rounds 3] [--workers 0 1 2]

Per input size and variant (median of interleaved rounds): samples/s on one core and the time split (ms per sample) into
decode, warp, targets (augmentation draws, instance selection, target windows) and host
normalisation. Then the grain pipeline's throughput with 0, 1, 2 worker processes. Prints a
table, then one JSON line. Absolute numbers on a shared CPU are noisy; compare within a run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np
from absl import flags

from mipnet_jax.data import augment, coco_format, image, pipeline, transforms
from mipnet_jax.core import meta

# The test oracles (tests/oracles/): independent re-implementations of the references.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests", "oracles"))
import reference_pipeline  # noqa: E402

SHARED = os.environ.get("MIPNET_SHARED_DATA", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"))
SIZES = {"256x192": ((256, 192), 2.0), "384x288": ((384, 288), 3.0)}
AUG = dict(scale_factor=0.35, rotation_factor=45.0, half_body_prob=0.3, flip=True)


def load_records(input_hw):
  folder = os.path.join(SHARED, "coco")
  if not os.path.isdir(folder):
    raise SystemExit(f"needs the real COCO sample images in {folder} (set MIPNET_SHARED_DATA)")
  records, _ = coco_format.load_person_records(os.path.join(folder, "test_coco.json"),
                                               meta.COCO, folder, input_hw)
  return records


def bench_reference(records, input_hw, heatmap_hw, sigma, n):
  stages = {k: 0.0 for k in ("decode", "warp", "targets", "normalize")}
  start = time.perf_counter()
  for i in range(n):
    r = records[i % len(records)]
    t0 = time.perf_counter()
    aug = augment.sample_augmentation(r.keypoints, r.center, r.scale, r.image_hw[1], meta.COCO,
                                      input_hw, rng=np.random.default_rng(i), **AUG)
    stages["targets"] += time.perf_counter() - t0
    for k, v in reference_pipeline.reference_stages(
        r.image_path, r.keypoints, aug, meta.COCO, input_hw, heatmap_hw, sigma,
        time.perf_counter).items():
      stages[k] += v
  total = time.perf_counter() - start
  return total, stages


def bench_ours(records, input_hw, heatmap_hw, sigma, n, num_instances, reduce):
  spec = transforms.CropSpec(input_hw, "rgb", reduce)
  make = transforms.TrainSample(meta.COCO, num_instances, spec, heatmap_hw, sigma, **AUG)
  data = [np.fromfile(r.image_path, np.uint8) for r in records]
  start = time.perf_counter()
  samples = [make.random_map(records[i % len(records)], np.random.default_rng(i))
             for i in range(n)]
  total = time.perf_counter() - start
  stages = {"decode": 0.0, "warp": 0.0, "normalize": 0.0}
  for i, s in enumerate(samples):       # the same crops again, stage by stage
    r, raw = records[i % len(records)], data[i % len(records)]
    t0 = time.perf_counter()
    red = transforms.choose_reduction(s["scale"], input_hw, True) if reduce else 1
    image.decode_image(raw, "rgb", reduce=red)
    t1 = time.perf_counter()
    trans = transforms.crop_transform(s["center"], s["scale"], float(s["rotation"]),
                                      input_hw, spec.udp)
    transforms.cut_crop(raw, trans, s["scale"], bool(s["flipped"]), r.image_hw[1], spec, "")
    t2 = time.perf_counter()
    stages["decode"] += t1 - t0
    stages["warp"] += (t2 - t1) - (t1 - t0)
  stages["targets"] = total - stages["decode"] - stages["warp"] - stages["normalize"]
  return total, stages


def opencv_decoding(fn, *args):
  """``fn(*args)`` with every JPEG decoded by cv2.imdecode, as before TurboJPEG (the same
  pixels: tests/data/test_image.py), to show the decoder's share side by side."""
  turbo = image._decode_turbojpeg
  image._decode_turbojpeg = lambda *_: None
  try:
    return fn(*args)
  finally:
    image._decode_turbojpeg = turbo


def bench_workers(records, input_hw, heatmap_hw, sigma, workers, batches=12, batch=32):
  flags.FLAGS.mark_as_parsed()
  make = transforms.TrainSample(meta.COCO, 2, transforms.CropSpec(input_hw), heatmap_hw, sigma,
                                **AUG)
  out = {}
  for w in workers:
    loading = pipeline.Loading(batch, num_workers=w, num_threads=1, prefetch=4)
    it = pipeline.iterate(pipeline.train_dataset(records, make, 0, loading), loading)
    next(it)                                          # start-up and warm-up excluded
    start = time.perf_counter()
    for _ in range(batches):
      next(it)
    out[w] = batches * batch / (time.perf_counter() - start)
    del it
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--samples", type=int, default=400)
  parser.add_argument("--rounds", type=int, default=3, help="median of this many runs")
  parser.add_argument("--workers", type=int, nargs="*", default=[0, 1, 2])
  args = parser.parse_args()
  cv2.setNumThreads(1)
  results = {}
  print(f"{'size':8} {'variant':23} {'samples/s':>9} {'x ref':>6}   ms/sample: "
        f"{'decode':>6} {'warp':>6} {'targets':>7} {'norm':>6}")
  for size, (input_hw, sigma) in SIZES.items():
    heatmap_hw = (input_hw[0] // 4, input_hw[1] // 4)
    records = load_records(input_hw)
    variants = {
        "official N=1": lambda: bench_reference(records, input_hw, heatmap_hw, sigma,
                                                args.samples),
        "ours N=1": lambda: bench_ours(records, input_hw, heatmap_hw, sigma, args.samples, 1,
                                       False),
        "ours N=2": lambda: bench_ours(records, input_hw, heatmap_hw, sigma, args.samples, 2,
                                       False),
        "ours N=2 cv2.imdecode": lambda: opencv_decoding(
            bench_ours, records, input_hw, heatmap_hw, sigma, args.samples, 2, False),
        "ours N=2 reduced decode": lambda: bench_ours(records, input_hw, heatmap_hw, sigma,
                                                      args.samples, 2, True),
    }
    for fn in variants.values():                     # warm-up: file cache, cv2, allocators
      fn()
    rounds = {name: [] for name in variants}
    for _ in range(args.rounds):                     # interleaved, so drift hits all alike
      for name, fn in variants.items():
        rounds[name].append(fn())
    runs = {name: sorted(r, key=lambda x: x[0])[len(r) // 2] for name, r in rounds.items()}
    ref_rate = args.samples / runs["official N=1"][0]
    for name, (total, stages) in runs.items():
      rate = args.samples / total
      ms = {k: 1000 * v / args.samples for k, v in stages.items()}
      results[f"{size} {name}"] = dict(samples_per_s=round(rate, 1),
                                       vs_official=round(rate / ref_rate, 2),
                                       ms={k: round(v, 3) for k, v in ms.items()})
      print(f"{size:8} {name:23} {rate:9.1f} {rate / ref_rate:6.2f}   {'':10} "
            f"{ms['decode']:6.2f} {ms['warp']:6.2f} {ms['targets']:7.2f} "
            f"{ms['normalize']:6.2f}")
  # 100 copies of the 12 sample boxes: grain's index shuffle costs ~2 ms per draw on a
  # 12-element dataset but ~30 us at 1,200 and ~4 us at COCO's 150k.
  scaling = bench_workers(load_records((256, 192)) * 100, (256, 192), (64, 48), 2.0,
                          args.workers)
  for w, rate in scaling.items():
    print(f"grain pipeline, N=2 256x192, {w} worker process(es): {rate:.1f} samples/s")
  results["workers_samples_per_s"] = {str(w): round(r, 1) for w, r in scaling.items()}
  results["cpu_count"] = os.cpu_count()
  print(json.dumps(results))


if __name__ == "__main__":
  main()
