"""The grain input pipeline: records -> shuffled, augmented, sharded, batched samples.

    records --shuffle(seed, per epoch)--> repeat --[process::processes]--> TrainSample
            --batch(B per process)--> iterator (worker processes, checkpointable state)

Everything random derives from one seed: grain reseeds the shuffle every epoch and gives each
position of the (global) sample stream its own ``np.random.Generator`` for augmentation. A
process takes every ``process_count``-th sample of that stream, so the global batch of step
t is the same for any number of hosts, and a pipeline restored from ``get_state()``
continues with exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import grain

from mipnet_jax.data.boxes import BoxRecord
from mipnet_jax.data.coco_format import PersonRecord
from mipnet_jax.data.transforms import EvalSample, TrainSample


@dataclasses.dataclass(frozen=True)
class Loading:
  """How batches are produced on one process.

  Attributes:
    batch_size: samples per batch on this process (global batch / process_count).
    process_index / process_count: this process's shard of the sample stream.
    num_workers: worker processes (0: decode in the calling thread pool).
    num_threads: reader threads per worker (or of the caller when num_workers is 0).
    prefetch: batches buffered ahead.
  """

  batch_size: int
  process_index: int = 0
  process_count: int = 1
  num_workers: int = 0
  num_threads: int = 1
  prefetch: int = 2


def _shard(ds: grain.MapDataset, loading: Loading) -> grain.MapDataset:
  if not 0 <= loading.process_index < loading.process_count:
    raise ValueError(f"process_index {loading.process_index} outside 0..{loading.process_count}")
  return ds[loading.process_index::loading.process_count] if loading.process_count > 1 else ds


def train_dataset(records: Sequence[PersonRecord], transform: TrainSample, seed: int,
                  loading: Loading, num_epochs: int | None = None) -> grain.MapDataset:
  """Random-access dataset of training batches: element t is this process's batch of step t.

  ``num_epochs`` None repeats forever; the last incomplete global batch of a finite run is
  dropped, as the reference's ``drop_last`` loader does with a shuffled epoch."""
  if not records:
    raise ValueError("no training records (see the data report for what was skipped)")
  ds = grain.MapDataset.source(list(records)).seed(seed).shuffle().repeat(num_epochs)
  ds = _shard(ds.random_map(transform), loading)     # lazy: a process maps only its share
  return ds.batch(loading.batch_size, drop_remainder=True)


def eval_dataset(boxes: Sequence[BoxRecord], transform: EvalSample,
                 loading: Loading) -> grain.MapDataset:
  """Batches of evaluation crops in box order, this process's share; the last batch may be
  short (the caller pads it to the device batch)."""
  ds = _shard(grain.MapDataset.source(list(boxes)), loading).map(transform)
  return ds.batch(loading.batch_size, drop_remainder=False)


def iterate(ds: grain.MapDataset, loading: Loading) -> grain.DatasetIterator:
  """A checkpointable iterator over ``ds`` (``get_state`` / ``set_state``), with worker
  processes when ``loading.num_workers`` > 0 (they need parsed absl flags, see main)."""
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=loading.num_threads,
                                            prefetch_buffer_size=loading.prefetch))
  if loading.num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=loading.num_workers))
  return iter(it)
