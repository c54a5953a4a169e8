"""The CrowdPose keypoint protocol, on top of pycocotools' COCOeval.

Reproduces the official CrowdPose API: ``Jeff-sjtu/CrowdPose``,
``crowdpose-api/PythonAPI/crowdposetools/cocoeval.py`` (read at commits 08cb339 and af9df17,
which differ only in how the easy/medium/hard lines are printed); MIPNet evaluates CrowdPose
with a vendored copy of it (``lib/crowdpose-api``). That file is pycocotools' COCOeval with
these changes, each taken over here:

1. OKS scale (``computeOks``): the GT area is ``0.53 * bbox_w * bbox_h``, not the
   annotation's ``area`` field (CrowdPose annotations have none). The same 0.53-scaled box
   area decides whether a GT lies in an area range (``evaluateImg``). Here the GT
   annotations get ``area = w * h * 0.53`` once, before indexing (an ``area`` field in the
   file is overwritten, as the official code never reads it); pycocotools' computeOks and
   evaluateImg then compute bit for bit what the official overrides compute.
2. Sigmas (``computeOks``): the 14 CrowdPose sigmas
   [.79,.79,.72,.72,.62,.62,1.07,1.07,.87,.87,.89,.89,.79,.79]/10, hard-coded there; read
   from ``mipnet_jax.data.meta`` here (``params.kpt_oks_sigmas``).
3. Summary (``summarize`` / ``_summarizeKps``): 11 stats. [0] AP, [1] AP50, [2] AP75 (over
   area 'all', maxDets 20; AP50/AP75 take the threshold within 0.01 of .50/.75, the same
   index pycocotools' exact match finds), [3] and [4] stay 0 (no APM/APL), [5] AR, [6] AR50,
   [7] AR75, [8]/[9]/[10] AP easy/medium/hard. A mean over no valid entry is -1.
4. Difficulty split (``get_type_result(first=0.2, second=0.8)`` and ``split``): every image
   of the annotation file (``images`` order, whether or not it has people) is easy when its
   ``crowdIndex`` < 0.2, medium when < 0.8, else hard. Per class, the evaluation is re-run
   on those image ids only (evaluate + accumulate) and its AP is
   ``round(np.mean(precision[:, :, :, 0, :]), 4)``: rounded to 4 decimals, and the mean
   does NOT drop -1 entries, so a class with no image, or with no non-ignored GT, gives -1.
   An empty class is answered -1.0 here without running pycocotools (the official call
   ends with an all -1 precision array in that case, the same value).

Identical to pycocotools (checked line by line): ``params`` (OKS thresholds .50:.05:.95,
101 recall thresholds, ``maxDets = [20]``, area ranges all / medium [32², 96²] / large
[96², 1e10]); GT ``ignore`` = ``iscrowd`` or ``num_keypoints == 0`` (CrowdPose's
``num_keypoints`` counts only v = 2 joints, so a GT with only v = 1 joints is ignored);
OKS over the GT's v > 0 joints, or, for a GT with none, the distance to its box doubled on
each side; predictions sorted by score (mergesort), the top 20 per image kept; greedy
matching with crowd/ignored GT last; unmatched predictions outside an area range ignored;
the precision envelope and recall accumulation (``npig == 0`` skipped). Results are loaded
with pycocotools' ``loadRes`` (prediction ``area``/``bbox`` from the keypoints' extent, as in
xtcocotools, which descends from crowdposetools' coco.py; that file itself was not
available to read). A prediction's area only matters when it is unmatched and outside an
area range, which for the 'all' range [0, 1e10] never happens.

Not taken over from mmpose's xtcocotools (``keypoints_crowd``): it drops predictions whose
keypoint confidences are all 0, which the official API does not.
"""

from __future__ import annotations

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mipnet_jax.core.meta import DatasetMeta, JointMap
from mipnet_jax.data.coco_format import AnnotationError
from mipnet_jax.eval.metrics.coco import BOX_AREA_FACTOR, MAX_DETS, KeypointMetric

CROWDPOSE_METRICS = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium",
                     "AP_hard")
OKS_AREA_FACTOR = BOX_AREA_FACTOR     # official computeOks / evaluateImg
CROWD_INDEX_BOUNDS = (0.2, 0.8)       # official get_type_result(first=0.2, second=0.8)
# stats indices of the official summarize, in CROWDPOSE_METRICS order.
_STAT_INDEX = (0, 1, 2, 5, 6, 7, 8, 9, 10)


def split_by_crowd_index(images: list[dict], first: float = CROWD_INDEX_BOUNDS[0],
                         second: float = CROWD_INDEX_BOUNDS[1]
                         ) -> tuple[list[int], list[int], list[int]]:
  """Image ids (file order) with crowdIndex < first, < second, and the rest."""
  easy, medium, hard = [], [], []
  for img in images:
    index = img["crowdIndex"]
    (easy if index < first else medium if index < second else hard).append(img["id"])
  return easy, medium, hard


def _mean_valid(values: np.ndarray) -> float:
  """Mean over entries > -1, or -1 when there is none (pycocotools' _summarize)."""
  valid = values[values > -1]
  return float(np.mean(valid)) if valid.size else -1.0


class CrowdPoseCOCOeval(COCOeval):
  """pycocotools' COCOeval with the CrowdPose summary; the GT must carry the 0.53 area."""

  def __init__(self, gt: COCO, dt: COCO, sigmas: tuple[float, ...]):
    super().__init__(gt, dt, "keypoints")
    p = self.params
    p.useSegm = None
    p.kpt_oks_sigmas = np.array(sigmas)
    p.maxDets = [MAX_DETS]
    p.areaRng = [[0 ** 2, 1e5 ** 2], [32 ** 2, 96 ** 2], [96 ** 2, 1e5 ** 2]]
    p.areaRngLbl = ["all", "medium", "large"]

  def _summary(self, ap: bool, iou: float | None = None) -> float:
    """AP (precision [T,R,K,A,M]) or AR (recall [T,K,A,M]) at area 'all', maxDets 20."""
    p = self.params
    values = self.eval["precision"] if ap else self.eval["recall"]
    if iou is not None:
      values = values[np.where(np.abs(iou - p.iouThrs) < 0.01)[0]]
    a = p.areaRngLbl.index("all")
    m = p.maxDets.index(MAX_DETS)
    return _mean_valid(values[..., a, m])

  def type_ap(self, image_ids: list[int]) -> float:
    """AP of one difficulty class: re-evaluated on its images, -1 entries kept, 4 decimals."""
    if not image_ids:
      return -1.0
    self.params.imgIds = image_ids
    self.evaluate()
    self.accumulate()
    return float(round(np.mean(self.eval["precision"][:, :, :, 0, :]), 4))

  def summarize(self) -> None:
    """Fills ``self.stats`` [11] as the official API does (indices 3 and 4 stay 0)."""
    if not self.eval:
      raise RuntimeError("CrowdPoseCOCOeval.summarize: run accumulate() first")
    stats = np.zeros(11)
    stats[0], stats[1], stats[2] = (self._summary(True), self._summary(True, .5),
                                    self._summary(True, .75))
    stats[5], stats[6], stats[7] = (self._summary(False), self._summary(False, .5),
                                    self._summary(False, .75))
    # The split re-runs the evaluation on subsets: stats above must be taken first.
    for i, ids in enumerate(split_by_crowd_index(self.cocoGt.dataset["images"])):
      stats[8 + i] = self.type_ap(ids)
    self.stats = stats


class CrowdPoseMetric(KeypointMetric):
  """The CrowdPose protocol (see the module docstring); metrics ``CROWDPOSE_METRICS``."""

  metric_names = CROWDPOSE_METRICS
  ann_fields = ("iscrowd", "num_keypoints")
  default_area_rule = "box_0.53"

  def __init__(self, annotations: str | dict, dataset: str | DatasetMeta = "crowdpose", *,
               verbose: bool = False, joints: JointMap | None = None,
               area_rule: str | None = None):
    if area_rule not in (None, "box_0.53"):
      raise ValueError(f"the CrowdPose protocol's area rule is box_0.53, got {area_rule!r}")
    super().__init__(annotations, dataset, verbose=verbose, joints=joints)

  def _prepare_ground_truth(self, data: dict) -> dict:
    """Checks ``crowdIndex`` (every GT ``area`` is already 0.53 x box w x h)."""
    for img in data["images"]:
      index = img.get("crowdIndex")
      if isinstance(index, bool) or not isinstance(index, (int, float)):
        raise AnnotationError(f"{self.annotations_name}: image {img['id']!r}: field "
                              f"'crowdIndex' missing or not a number")
    return data

  def _evaluate(self, dt: COCO) -> np.ndarray:
    """[9] AP, AP50, AP75, AR, AR50, AR75, AP easy / medium / hard."""
    crowd_eval = CrowdPoseCOCOeval(self.gt, dt, tuple(self.sigmas))
    crowd_eval.evaluate()
    crowd_eval.accumulate()
    crowd_eval.summarize()
    return crowd_eval.stats[list(_STAT_INDEX)]
