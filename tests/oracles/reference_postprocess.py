"""The reference's post-processing loop, re-implemented for side-by-side measurements and as
the test oracle of mipnet_jax.postprocess.

It follows [MIP] ``validate_lambda_quantitative`` (the λ discount on the box score),
``coco.py::evaluate_lambda`` (per-candidate dicts grouped by image, the per-joint rescoring
loop, the merge of the "mode" lists) and [HR] ``nms.py`` (``oks_iou`` with its per-candidate
loop, ``oks_nms``, ``rescore``, ``soft_oks_nms``) statement by statement, so it is as slow as
the original. The one generalisation: the paper's γ^λ discount next to the code's constant.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def oks_iou(g, d, a_g, a_d, sigmas=None, in_vis_thre=None):
  """[HR] ``oks_iou``: g [K*3], d [n, K*3], a_g scalar, a_d [n] -> [n] OKS.

  The ``in_vis_thre`` branch keeps the reference's bug: ``list(a) and list(b)`` is ``list(b)``,
  so only the candidate d's maxvals filter the joints (unused: the callers pass None).
  """
  if not isinstance(sigmas, np.ndarray):
    sigmas = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                       .87, .87, .89, .89]) / 10.0
  variances = (sigmas * 2) ** 2
  xg, yg, vg = g[0::3], g[1::3], g[2::3]
  ious = np.zeros(d.shape[0])
  for n_d in range(d.shape[0]):
    xd, yd, vd = d[n_d, 0::3], d[n_d, 1::3], d[n_d, 2::3]
    dx = xd - xg
    dy = yd - yg
    e = (dx ** 2 + dy ** 2) / variances / ((a_g + a_d[n_d]) / 2 + np.spacing(1)) / 2
    if in_vis_thre is not None:
      ind = list(vg > in_vis_thre) and list(vd > in_vis_thre)
      e = e[ind]
    ious[n_d] = np.sum(np.exp(-e)) / e.shape[0] if e.shape[0] != 0 else 0.0
  return ious


def _db_arrays(kpts_db):
  scores = np.array([kpts_db[i]['score'] for i in range(len(kpts_db))])
  kpts = np.array([kpts_db[i]['keypoints'].flatten() for i in range(len(kpts_db))])
  areas = np.array([kpts_db[i]['area'] for i in range(len(kpts_db))])
  return scores, kpts, areas


def oks_nms(kpts_db, thresh, sigmas=None, in_vis_thre=None):
  """[HR] ``oks_nms``: greedy, drops OKS > thresh -> kept indices into kpts_db."""
  if len(kpts_db) == 0:
    return []
  scores, kpts, areas = _db_arrays(kpts_db)
  order = scores.argsort()[::-1]
  keep = []
  while order.size > 0:
    i = order[0]
    keep.append(i)
    oks_ovr = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, in_vis_thre)
    inds = np.where(oks_ovr <= thresh)[0]
    order = order[inds + 1]
  return keep


def _rescore(overlap, scores, thresh, type='gaussian'):
  """[HR] ``rescore`` (the soft-NMS decay)."""
  assert overlap.shape[0] == scores.shape[0]
  if type == 'linear':
    inds = np.where(overlap >= thresh)[0]
    scores[inds] = scores[inds] * (1 - overlap[inds])
  else:
    scores = scores * np.exp(- overlap ** 2 / thresh)
  return scores


def soft_oks_nms(kpts_db, thresh, sigmas=None, in_vis_thre=None):
  """[HR] ``soft_oks_nms``: at most 20 kept indices in pick order (decayed scores dropped)."""
  if len(kpts_db) == 0:
    return []
  scores, kpts, areas = _db_arrays(kpts_db)
  order = scores.argsort()[::-1]
  scores = scores[order]
  max_dets = 20
  keep = np.zeros(max_dets, dtype=np.intp)
  keep_cnt = 0
  while order.size > 0 and keep_cnt < max_dets:
    i = order[0]
    oks_ovr = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, in_vis_thre)
    order = order[1:]
    scores = _rescore(oks_ovr, scores[1:], thresh)
    tmp = scores.argsort()[::-1]
    order = order[tmp]
    scores = scores[tmp]
    keep[keep_cnt] = i
    keep_cnt += 1
  return keep[:keep_cnt]


def discounted_score(score, lam, gamma, gamma_mode):
  """The validation loop's box score of instance λ: the code multiplies every λ > 0 by a
  constant (``DECAY_THRE``), the paper by γ^λ."""
  if lam == 0:
    return score
  return score * gamma if gamma_mode == "constant" else score * gamma ** lam


def _mode(lam, num_lambdas):
  """The code's stored "mode": N = 2 stores lambda_a (1 = primary), N > 2 stores λ."""
  return 1 - lam if num_lambdas == 2 else lam


def _collect(keypoints, box_score, area, image_id, lam, gamma, gamma_mode):
  """evaluate_lambda's per-candidate dicts, grouped by image (first appearance)."""
  num_lambdas = int(np.max(lam)) + 1 if len(lam) else 1
  kpts = defaultdict(list)
  for idx in range(len(keypoints)):
    kpts[image_id[idx]].append({
        'keypoints': keypoints[idx],
        'area': area[idx],
        'score': discounted_score(box_score[idx], int(lam[idx]), gamma, gamma_mode),
        'mode': _mode(int(lam[idx]), num_lambdas),
        'row': idx,
    })
  return kpts, num_lambdas


def _rescore_image(img_kpts, num_joints, in_vis_thre):
  for n_p in img_kpts:
    box_score = n_p['score']
    kpt_score = 0
    valid_num = 0
    for n_jt in range(num_joints):
      t_s = n_p['keypoints'][n_jt][2]
      if t_s > in_vis_thre:
        kpt_score = kpt_score + t_s
        valid_num = valid_num + 1
    if valid_num != 0:
      kpt_score = kpt_score / valid_num
    n_p['score'] = kpt_score * box_score


def reference_postprocess(keypoints, box_score, area, image_id, lam, sigmas, *, gamma=0.5,
                          gamma_mode="constant", in_vis_thre=0.2, nms="oks",
                          nms_threshold=0.9, keep_lambda=None):
  """Flat arrays (keypoints [M, K, 3], box_score/area/image_id/lam [M]) -> (rows, scores):
  the kept candidates' rows and final scores, images by first appearance, each in the
  reference's keep order."""
  kpts, num_lambdas = _collect(keypoints, box_score, area, image_id, lam, gamma, gamma_mode)
  sigmas = np.asarray(sigmas, np.float64)
  num_joints = keypoints.shape[1]
  out = []
  for img in kpts:
    img_kpts = kpts[img]
    _rescore_image(img_kpts, num_joints, in_vis_thre)
    by_mode = [[p for p in img_kpts if p['mode'] == m] for m in range(num_lambdas)]
    if keep_lambda is None:
      chosen = [p for mode_list in by_mode for p in mode_list]
    else:
      chosen = by_mode[_mode(keep_lambda, num_lambdas)]
    if nms == "none":
      keep = []
      chosen = img_kpts if keep_lambda is None else chosen
    elif nms == "oks":
      keep = oks_nms(chosen, nms_threshold, sigmas)
    else:
      keep = soft_oks_nms(chosen, nms_threshold, sigmas)
    out.extend(chosen if len(keep) == 0 else [chosen[k] for k in keep])
  return [p['row'] for p in out], [p['score'] for p in out]
