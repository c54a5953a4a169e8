"""The grain pipeline: determinism, sharding across processes, exact resume, epochs."""

import numpy as np
import pytest
from absl import flags

from mipnet_jax.data import boxes, coco_format, pipeline, transforms
from mipnet_jax.core import meta

INPUT_HW = (64, 48)


@pytest.fixture(scope="module")
def records(shared_data):
  folder = shared_data / "coco"
  return coco_format.load_person_records(str(folder / "test_coco.json"), meta.COCO,
                                         str(folder), INPUT_HW)[0]


def _transform(num_instances=2):
  return transforms.TrainSample(meta.COCO, num_instances, transforms.CropSpec(INPUT_HW), (16, 12),
                                2.0, 0.35, 45.0, 0.3, True)


def _equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_batches_carry_every_instance_and_repeat_per_seed(records):
  ds = pipeline.train_dataset(records, _transform(3), 0, pipeline.Loading(4))
  b = ds[0]
  assert b["image"].shape == (4, 64, 48, 3) and b["image"].dtype == np.uint8
  assert b["joints"].shape == (4, 3, 17, 3) and b["target_windows"].shape == (4, 3, 17, 4)
  assert b["target_weight"].shape == (4, 3, 17)
  _equal(ds[5], pipeline.train_dataset(records, _transform(3), 0, pipeline.Loading(4))[5])
  other = pipeline.train_dataset(records, _transform(3), 1, pipeline.Loading(4))[0]
  assert not np.array_equal(other["ann_id"], b["ann_id"]) or not np.array_equal(
      other["center"], b["center"])


def test_epochs_cover_every_record_once_and_reshuffle(records):
  n = len(records)                                 # 12 boxes: 3 batches of 4 per epoch
  ds = pipeline.train_dataset(records, _transform(), 0, pipeline.Loading(4))
  epoch = [np.concatenate([ds[t]["ann_id"] for t in range(e * 3, e * 3 + 3)])
           for e in range(2)]
  want = sorted(r.ann_id for r in records)
  assert n == 12 and sorted(epoch[0]) == want and sorted(epoch[1]) == want
  assert not np.array_equal(epoch[0], epoch[1])
  finite = pipeline.train_dataset(records, _transform(), 0, pipeline.Loading(5), num_epochs=1)
  assert len(finite) == 2                          # 12 // 5, the remainder dropped


def test_the_global_batch_does_not_depend_on_the_process_count(records):
  one = pipeline.train_dataset(records, _transform(), 7, pipeline.Loading(4))
  halves = [pipeline.train_dataset(records, _transform(), 7, pipeline.Loading(2, p, 2))
            for p in range(2)]
  for t in (0, 4):
    whole = one[t]
    for p in range(2):     # process p holds samples p, p + 2 of the global batch
      part = halves[p][t]
      for k in whole:
        np.testing.assert_array_equal(part[k], whole[k][p::2], err_msg=k)
  with pytest.raises(ValueError, match="process_index 2"):
    pipeline.train_dataset(records, _transform(), 7, pipeline.Loading(2, 2, 2))


@pytest.mark.parametrize("num_workers", [0, 1])
def test_restored_iterator_continues_with_the_same_batches(records, num_workers):
  flags.FLAGS.mark_as_parsed()                     # grain workers read absl flags
  loading = pipeline.Loading(4, num_workers=num_workers)
  ds = pipeline.train_dataset(records, _transform(), 3, loading)
  it = pipeline.iterate(ds, loading)
  for _ in range(4):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  restored = pipeline.iterate(ds, loading)
  restored.set_state(state)
  for want in expected:
    _equal(next(restored), want)
  _equal(expected[0], ds[4])                       # the iterator walks the dataset in order


def test_eval_batches_keep_box_order_and_the_short_tail(records):
  gt = boxes.gt_boxes(records)
  ds = pipeline.eval_dataset(gt, transforms.EvalSample(transforms.CropSpec(INPUT_HW)),
                             pipeline.Loading(5))
  assert [len(ds[i]["image_id"]) for i in range(len(ds))] == [5, 5, 2]
  np.testing.assert_array_equal(np.concatenate([ds[i]["source_id"] for i in range(3)]),
                                [b.source_id for b in gt])
  with pytest.raises(ValueError, match="no training records"):
    pipeline.train_dataset([], _transform(), 0, pipeline.Loading(4))
