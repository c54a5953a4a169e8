"""The data report: per split, the person boxes, the paper's multi-instance statistic, what was
skipped and why, detection boxes, and (optionally) every image decoded once.

  python -m mipnet_jax.data.stats --dataset crowdpose \
      --annotations ../shared/data/crowdpose/official_api/crowdpose_val.json [--images DIR] \
      [--detections DETS.json --min_score 0.0] [--check_images] [--json]

``python -m mipnet_jax.main --config=CFG --mode=data`` reports the config's splits.
"""

from __future__ import annotations

import argparse
import collections
import json
import os

import numpy as np

from mipnet_jax.data import boxes, coco_format, image
from mipnet_jax.core import meta as meta_lib

MAX_LISTED_ERRORS = 5


def check_images(records: list[coco_format.PersonRecord]) -> dict:
  """Decodes every image of ``records`` once: counts readable ones and errors by kind, lists
  the first few messages, and flags sizes that differ from the annotation's."""
  seen = {}
  for r in records:
    seen.setdefault(r.image_path, r)
  errors, messages = collections.Counter(), []
  for path, r in seen.items():
    try:
      img = image.read_image(path, record=f"image {r.image_id}")
      if img.shape[:2] != tuple(r.image_hw):
        raise image.ImageError(f"{path} (image {r.image_id}): size {img.shape[:2]} differs "
                               f"from the annotation's (h, w) {tuple(r.image_hw)}",
                               "size differs from the annotation")
    except image.ImageError as e:
      errors[e.kind] += 1
      if len(messages) < MAX_LISTED_ERRORS:
        messages.append(str(e))
  return dict(checked=len(seen), bad=sum(errors.values()), errors=dict(errors),
              first_errors=messages)


def split_report(ann_path: str, dataset: str | meta_lib.DatasetMeta, image_dir: str = "",
                 input_hw: tuple[int, int] = (256, 192), det_path: str = "",
                 min_score: float = 0.0, decode_images: bool = False) -> dict:
  """The report of one annotation file (and its detection file): a JSON-able dict;
  ``dataset`` is its keypoint metadata or a built-in dataset's name."""
  meta = meta_lib.get_meta(dataset) if isinstance(dataset, str) else dataset
  dataset = meta.name
  records, report = coco_format.load_person_records(ann_path, meta, image_dir, input_hw)
  multi = coco_format.count_multi_instance(records)
  others = np.array([len(r.others) for r in records]) if records else np.zeros(0)
  out = dict(file=ann_path, dataset=dataset, images=report.num_images, boxes=len(records),
             multi_instance_boxes=multi,
             multi_instance_fraction=round(multi / max(1, len(records)), 4),
             boxes_in_images_with_2plus_people=int((others > 0).sum()),
             skipped=dict(sorted(report.skipped.items())))
  if det_path and not os.path.isfile(det_path):
    out["detections"] = dict(file=det_path, missing=True)
  elif det_path:
    dets, det_report = boxes.load_detections(det_path, ann_path, image_dir, input_hw, min_score)
    out["detections"] = dict(file=det_path, min_score=min_score, boxes=len(dets),
                             images=det_report.num_images,
                             skipped=dict(sorted(det_report.skipped.items())))
  if decode_images:
    out["image_check"] = check_images(records)
  return out


def format_reports(reports: dict[str, dict]) -> str:
  """A table, one row per split, then skips and image problems."""
  w = max([14] + [len(name) for name in reports])
  lines = [f"{'split':{w}} {'images':>7} {'boxes':>7} {'2+ people':>9} {'multi-inst':>10} "
           f"{'%':>6}  skipped"]
  for name, r in reports.items():
    skips = ", ".join(f"{k}: {v}" for k, v in r["skipped"].items()) or "none"
    lines.append(f"{name:{w}} {r['images']:7d} {r['boxes']:7d} "
                 f"{r['boxes_in_images_with_2plus_people']:9d} {r['multi_instance_boxes']:10d} "
                 f"{100 * r['multi_instance_fraction']:6.2f}  {skips}")
  for name, r in reports.items():
    if r.get("detections", {}).get("missing"):
      lines.append(f"{name}: detection file {r['detections']['file']} not found")
    elif "detections" in r:
      d = r["detections"]
      skips = ", ".join(f"{k}: {v}" for k, v in d["skipped"].items()) or "none"
      lines.append(f"{name}: detections {d['boxes']} boxes in {d['images']} images "
                   f"(score >= {d['min_score']:g}); skipped {skips}")
    if "image_check" in r:
      c = r["image_check"]
      lines.append(f"{name}: decoded {c['checked']} images, {c['bad']} unusable {c['errors']}")
      lines.extend(f"  {m}" for m in c["first_errors"])
  lines.append("multi-inst: boxes whose padded crop holds 4+ labelled joints of another "
               "person (the paper's statistic).")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description="Data report of a COCO-format keypoint file.")
  parser.add_argument("--dataset", required=True, choices=sorted(meta_lib.DATASETS))
  parser.add_argument("--annotations", required=True)
  parser.add_argument("--images", default="", help="image folder (for --check_images)")
  parser.add_argument("--detections", default="")
  parser.add_argument("--min_score", type=float, default=0.0)
  parser.add_argument("--input_hw", type=int, nargs=2, default=(256, 192))
  parser.add_argument("--check_images", action="store_true")
  parser.add_argument("--json", action="store_true", help="print only the JSON report")
  args = parser.parse_args(argv)
  if args.check_images and not args.images:
    parser.error("--check_images needs --images")
  report = split_report(args.annotations, args.dataset, args.images, tuple(args.input_hw),
                        args.detections, args.min_score, args.check_images)
  name = os.path.splitext(os.path.basename(args.annotations))[0]
  if not args.json:
    print(format_reports({name: report}))
  print(json.dumps(report))


if __name__ == "__main__":
  main()
