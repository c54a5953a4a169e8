"""Record -> sample transforms: instance targets on the right people in real images, the folded
flip against the reference's mirror-then-warp, reduced JPEG decoding, evaluation crops."""

import cv2
import numpy as np
import pytest

from conftest import load_oracle
from mipnet_jax.core import codec, geometry, meta
from mipnet_jax.data import augment, boxes, coco_format, image, instances, transforms

INPUT_HW, HEATMAP_HW = (256, 192), (64, 48)
NO_AUG = (0.0, 0.0, 0.0, False)


def _records(shared_data, name, dataset_meta):
  folder = shared_data / name
  return coco_format.load_person_records(str(folder / f"test_{name}.json"), dataset_meta,
                                         str(folder), INPUT_HW)[0]


def _to_image(sample, record):
  """Peaks of the rendered targets, mapped back to image pixels: [N, K, 2]."""
  maps = codec.render_heatmaps(sample["target_windows"], sample["target_weight"], HEATMAP_HW,
                               2.0)
  coords, _ = codec.decode_heatmaps(maps)                       # [N, K, 2]
  return codec.heatmap_to_image(coords[None], record.center[None], record.scale[None],
                                HEATMAP_HW)[0]


@pytest.mark.parametrize("name,dataset_meta,ann_id", [("ochuman", meta.OCHUMAN, 3),
                                                      ("crowdpose", meta.CROWDPOSE, None)])
def test_lambda0_on_the_owner_and_lambda1_on_the_other_person(shared_data, name,
                                                              dataset_meta, ann_id):
  records = _records(shared_data, name, dataset_meta)
  make = transforms.TrainSample(dataset_meta, 2, transforms.CropSpec(INPUT_HW),
                                HEATMAP_HW, 2.0, *NO_AUG)
  # A box whose nearest other person has 4+ joints inside its crop (multi-instance box).
  record = next(r for r in records if (ann_id is None or r.ann_id == ann_id)
                and coco_format.count_multi_instance([r]) == 1)
  sample = make.random_map(record, np.random.default_rng(0))
  assert sample["joints"].shape == (2, dataset_meta.num_keypoints, 3)
  back = _to_image(sample, record)
  px = 200 * record.scale[0] / HEATMAP_HW[1]       # image pixels per heatmap pixel
  for lam, person in ((0, record.keypoints), (1, record.others[0])):
    w = sample["target_weight"][lam] > 0
    assert w.sum() >= instances.MIN_VISIBLE_IN_CROP
    np.testing.assert_array_less(np.abs(back[lam][w] - person[w, :2]), 0.75 * px)
  # The two targets are different people: their mean joint distance is many pixels.
  both = (sample["target_weight"][0] > 0) & (sample["target_weight"][1] > 0)
  assert np.linalg.norm(back[0][both] - back[1][both], axis=-1).mean() > 3 * px


def _reference_draw(record, seed: int):
  """The reference order for one draw of ``seed``: (augmentation, image, keypoints, others),
  the image and both joint sets mirrored first when the draw flips."""
  aug = augment.sample_augmentation(
      record.keypoints, record.center, record.scale, record.image_hw[1], meta.COCO,
      INPUT_HW, scale_factor=0.35, rotation_factor=45.0, half_body_prob=0.3, flip=True,
      rng=np.random.default_rng(seed))
  img = image.read_image(record.image_path)
  kp, others = record.keypoints, record.others
  if aug.flip:
    img = np.ascontiguousarray(img[:, ::-1])
    kp = augment.flip_keypoints(kp, record.image_hw[1], meta.COCO)
    others = augment.flip_keypoints(others, record.image_hw[1], meta.COCO)
  return aug, img, kp, others


def test_augmented_sample_equals_the_reference_path(shared_data):
  """Same draws, reference order: mirror image and joints, then warp and encode."""
  record = _records(shared_data, "coco", meta.COCO)[0]
  make = transforms.TrainSample(meta.COCO, 2, transforms.CropSpec(INPUT_HW), HEATMAP_HW, 2.0,
                                0.35, 45.0, 0.3, True)
  flips = []
  for seed in range(6):
    sample = make.random_map(record, np.random.default_rng(seed))
    aug, img, kp, others = _reference_draw(record, seed)
    trans = geometry.get_affine_transform(aug.center, aug.scale, aug.rotation, INPUT_HW)
    crop = cv2.warpAffine(img, trans, (192, 256), flags=cv2.INTER_LINEAR)
    xy, vis = instances.select_instances(kp, others, trans, 2, INPUT_HW)
    maps, weight = codec.encode_heatmaps(xy, vis, INPUT_HW, HEATMAP_HW, 2.0)
    np.testing.assert_array_equal(sample["target_weight"], weight)
    np.testing.assert_array_equal(
        codec.render_heatmaps(sample["target_windows"], weight, HEATMAP_HW, 2.0), maps)
    diff = np.abs(sample["image"].astype(int) - crop.astype(int))
    if not aug.flip:
      assert diff.max() == 0
    flips.append(aug.flip)
    # Folded flip: only cv2's 1/32-pixel rounding of mirrored sample positions differs.
    assert diff.mean() < 0.05 and (diff > 0).mean() < 0.02, (seed, diff.mean())
  assert any(flips) and not all(flips)


def test_reduced_decoding_folds_into_the_affine(shared_data):
  path = str(shared_data / "coco" / "000000000785.jpg")
  data = np.fromfile(path, np.uint8)
  center, scale = np.array([320.0, 212.0]), np.array([3.0, 4.0])   # 600 px wide crop
  assert transforms.choose_reduction(scale, INPUT_HW, True) == 2   # 3.1 px per input px
  assert transforms.choose_reduction(scale, INPUT_HW, False) == 1
  assert transforms.choose_reduction(np.array([8.0, 8.0]), INPUT_HW, True) == 8
  trans = geometry.get_affine_transform(center, scale, 10.0, INPUT_HW)
  full = transforms.cut_crop(data, trans, scale, False, 640, transforms.CropSpec(INPUT_HW), "")
  reduced = transforms.cut_crop(data, trans, scale, False, 640,
                                transforms.CropSpec(INPUT_HW, decode_reduce=True), "")
  # Same content, smoother pixels: close on average, not identical.
  diff = np.abs(full.astype(float) - reduced.astype(float))
  assert 0 < diff.mean() < 6
  # A half-pixel misregistration of the reduced image would show up as a shifted
  # correlation peak; the unshifted alignment must be the best one.
  g1, g2 = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(float) for x in (full, reduced))
  errs = {s: np.abs(np.roll(g2, s, axis=1) - g1)[:, 4:-4].mean() for s in (-1, 0, 1)}
  assert min(errs, key=errs.get) == 0


def test_eval_crop_and_named_image_errors(shared_data, tmp_path):
  records = _records(shared_data, "coco", meta.COCO)
  box = boxes.gt_boxes(records)[0]
  sample = transforms.EvalSample(transforms.CropSpec(INPUT_HW, color="bgr")).map(box)
  trans = geometry.get_affine_transform(box.center, box.scale, 0.0, INPUT_HW)
  expected = cv2.warpAffine(cv2.imread(box.image_path), trans, (192, 256),
                            flags=cv2.INTER_LINEAR)
  np.testing.assert_array_equal(sample["image"], expected)
  assert sample["score"] == 1.0 and sample["image_id"] == box.image_id
  missing = boxes.BoxRecord(7, str(tmp_path / "gone.jpg"), (10, 10), box.box, box.center,
                            box.scale, 1.0, 3)
  with pytest.raises(image.ImageError, match=r"gone\.jpg: image file not found"):
    transforms.EvalSample(transforms.CropSpec(INPUT_HW)).map(missing)


def test_udp_augmented_sample_equals_the_mmpose_path(shared_data):
  """UDP (mmpose's TopDownAffine(use_udp=True) + UDP targets), same draws in the reference
  order: mirror image and joints, warp with get_warp_matrix (joints in float32), targets."""
  oracle = load_oracle("reference_udp")
  record = _records(shared_data, "coco", meta.COCO)[0]
  spec = transforms.CropSpec(INPUT_HW, udp=True)
  make = transforms.TrainSample(meta.COCO, 2, spec, HEATMAP_HW, 2.0, 0.35, 45.0, 0.3, True)
  flips = []
  for seed in range(4):
    sample = make.random_map(record, np.random.default_rng(seed))
    aug, img, kp, _ = _reference_draw(record, seed)
    trans = oracle.warp_matrix(aug.rotation, aug.center * 2.0, np.array([191.0, 255.0]),
                               aug.scale * 200.0)
    crop = cv2.warpAffine(img, trans, (192, 256), flags=cv2.INTER_LINEAR)
    joints = oracle.warp_joints(np.asarray(kp[:, :2], np.float32), trans)
    vis = sample["joints"][0, :, 2]                   # MIPNet's in-crop visibility rule
    np.testing.assert_array_equal(sample["joints"][0, vis > 0, :2], joints[vis > 0])
    want, want_w = oracle.udp_target(joints, vis, (192, 256), (48, 64), 2)
    np.testing.assert_array_equal(sample["target_weight"][0], want_w)
    maps = codec.render_heatmaps(sample["target_windows"], sample["target_weight"], HEATMAP_HW,
                                 2.0)
    np.testing.assert_array_equal(np.moveaxis(maps[0], -1, 0), want)
    diff = np.abs(sample["image"].astype(int) - crop.astype(int))
    assert diff.max() == 0 if not aug.flip else diff.mean() < 0.05
    flips.append(aug.flip)
  assert any(flips) and not all(flips)


def test_udp_eval_crop_is_the_warp_of_the_box(shared_data):
  """Evaluation crop under UDP: the box's corners on the first and last input pixels."""
  box = boxes.gt_boxes(_records(shared_data, "coco", meta.COCO))[0]
  sample = transforms.EvalSample(transforms.CropSpec(INPUT_HW, udp=True)).map(box)
  trans = geometry.udp_crop_transform(box.center, box.scale, 0.0, INPUT_HW)
  expected = cv2.warpAffine(image.read_image(box.image_path), trans, (192, 256),
                            flags=cv2.INTER_LINEAR)
  np.testing.assert_array_equal(sample["image"], expected)
  hrnet = transforms.EvalSample(transforms.CropSpec(INPUT_HW)).map(box)
  assert np.abs(hrnet["image"].astype(int) - expected).mean() > 1     # another geometry
