"""The DALI backend: the one module that imports nvidia.dali.

- In-memory arrays (CIFAR, Fashion-MNIST): `external_source` feeds uint8 batches in the EpochOrder;
  pad-4 crop + flip (offsets drawn exactly as the torch backend draws them, so both backends give
  the same batches) + normalise run in DALI.
- Image folders (ImageNet): training reads this rank's files in the EpochOrder through an external_source,
  one pipeline per run (DALI's PyTorch iterator goes from epoch to epoch); evaluation `readers.file` in file
  order; decoding on the GPU ("mixed") when CUDA is present, else on the CPU; random-resized-crop + flip +
  normalise for training, resize + centre crop for evaluation. Damaged files are screened once per run
  (folders.screen_images), not per epoch.
DALI on the CPU uses `device_id=None`; asking for the GPU without CUDA is an error, never a fallback.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..seeding import derive_seed
from .arrays import ArrayDataset
from .folders import CorruptImageLog, damaged_paths, decode_rgb, screen_images
from .order import EpochOrder
from .torch_backend import array_eval_sets, crop_flip_params
from .types import Batch, Subset


DALI_DEVICES = ("auto", "cpu", "gpu")
"""data.dali_device: where DALI runs (auto: the GPU when CUDA is present)."""


def require_dali(cfg) -> str:
    """'gpu' or 'cpu': where DALI runs for `cfg.dali_device` (auto = gpu when CUDA is present)."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError as err:
        raise ImportError(f"data.backend=dali needs NVIDIA DALI (pip install nvidia-dali-cuda130, the flavour of "
                          f"torch 2.14's CUDA 13): {err}") from None
    if cfg.dali_device == "gpu" and not torch.cuda.is_available():
        raise ValueError("data.dali_device=gpu: no CUDA device is visible (DALI mixed/GPU decoding needs a GPU); "
                         "use data.dali_device=cpu or auto")
    if cfg.dali_device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return cfg.dali_device


def _pipeline(batch_size: int, num_threads: int, dali_device: str, device, seed: int, fed: bool = False):
    """A DALI pipeline on this rank's device. `fed` (external_source via feed_input): one batch in, one out."""
    from nvidia.dali.pipeline import Pipeline
    device_id = (device.index or 0) if dali_device == "gpu" else None
    pipelining = {"prefetch_queue_depth": 1, "exec_pipelined": False, "exec_async": False} if fed else \
        {"prefetch_queue_depth": 2}
    return Pipeline(batch_size=batch_size, num_threads=max(num_threads, 1), device_id=device_id,
                    seed=seed % (2 ** 31), **pipelining)


def _to_torch(tensor_list, device) -> torch.Tensor:
    """A dense DALI batch as a torch tensor on `device` (copied device-to-device on the GPU)."""
    if hasattr(tensor_list, "as_cpu") and not hasattr(tensor_list, "as_array"):  # TensorListGPU
        from nvidia.dali.plugin.pytorch import feed_ndarray
        tensor = tensor_list.as_tensor()
        out = torch.empty(tensor.shape(), dtype=torch.float32 if tensor.dtype.name == "FLOAT" else torch.int32,
                          device=device)
        feed_ndarray(tensor, out, cuda_stream=torch.cuda.current_stream(device))
        return out
    return torch.from_numpy(tensor_list.as_array()).to(device)


def _normalise_op(images, mean, std, mirror=None, crop=None):
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    kwargs = {"crop": crop} if crop else {}
    if mirror is not None:
        kwargs["mirror"] = mirror
    return fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", mean=[255 * m for m in mean],
                                    std=[255 * s for s in std], **kwargs)


class DaliArrayTrainStream:
    """In-memory training split through a DALI pipeline fed by external_source."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, batch_size: int, mean, std, augment: str, device,
                 shard=(0, 1), dali_device: str = "cpu", num_threads: int = 1, pad: int = 4):
        import nvidia.dali.fn as fn
        import nvidia.dali.types as types
        self.images, self.labels = np.ascontiguousarray(images), torch.from_numpy(labels).to(device)
        self.order = EpochOrder(len(labels), batch_size, shard)
        self.batch_size, self.batches_per_epoch = batch_size, self.order.batches_per_epoch
        self.augment, self.device, self.pad = augment, device, pad
        height, width = images.shape[1:3]
        self.pipe = _pipeline(batch_size, num_threads, dali_device, device, 0, fed=True)
        with self.pipe:
            batch = fn.external_source(name="images", layout="HWC", dtype=types.UINT8)
            start = fn.external_source(name="start", dtype=types.INT32)
            mirror = fn.external_source(name="mirror", dtype=types.INT32)
            if dali_device == "gpu":
                batch = batch.gpu()
            if augment == "crop_flip":  # out-of-bounds rows/columns read as 0: the zero padding
                batch = fn.slice(batch, start=start, shape=[height, width], axis_names="HW",
                                 out_of_bounds_policy="pad", fill_values=0)
            self.pipe.set_outputs(_normalise_op(batch, mean, std, mirror=mirror))
        self.pipe.build()

    skipped_images = 0  # in-memory arrays have nothing to skip

    def iterate(self, stream_seed: int, start_step: int = 0):
        step, order, order_epoch = start_step, None, -1
        while True:
            epoch, position = divmod(step, self.batches_per_epoch)
            if epoch != order_epoch:
                order, order_epoch = self.order.epoch_order(stream_seed, epoch), epoch
            index = order[position * self.batch_size:(position + 1) * self.batch_size]
            offsets = torch.zeros(2, len(index), dtype=torch.int64)
            flips = torch.zeros(len(index), dtype=torch.bool)
            if self.augment == "crop_flip":
                generator = torch.Generator().manual_seed(derive_seed(stream_seed, "augment", step))
                offsets, flips = crop_flip_params(len(index), generator, self.pad)
                offsets = offsets - self.pad  # offsets in the padded image -> start in the original one
            self.pipe.feed_input("images", self.images[index])
            if self.augment == "crop_flip":  # without a crop DALI prunes the unused "start" input
                self.pipe.feed_input("start", np.ascontiguousarray(offsets.T.numpy(), dtype=np.int32))
            self.pipe.feed_input("mirror", flips.numpy().astype(np.int32))
            (images,) = self.pipe.run()
            index = torch.from_numpy(index).to(self.device)
            yield Batch(_to_torch(images, self.device), self.labels[index], index)
            step += 1


class DaliFileTrainStream:
    """Image-folder training split: ONE pipeline per `iterate()` (a run, or a search episode), whose
    external_source reads this rank's files in the EpochOrder, epoch after epoch (DALI's PyTorch iterator
    resets at each epoch end); decoding, the augmentation (train_transform's), and normalise run in DALI. Damaged files
    (screened once, `damaged`) are left out of the order: fail naming them, or skip them (counted)."""

    def __init__(self, paths: np.ndarray, labels: np.ndarray, *, batch_size: int, mean, std, image_size: int, device,
                 shard=(0, 1), dali_device: str = "cpu", num_threads: int = 1, on_corrupt: str = "fail",
                 damaged: np.ndarray | None = None, augment: str = "random_resized_crop"):
        self.paths, self.labels = paths, torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
        self.augment = augment
        self.mean, self.std, self.image_size, self.device = mean, std, image_size, device
        self.dali_device, self.num_threads, self.on_corrupt = dali_device, num_threads, on_corrupt
        self.corrupt = CorruptImageLog(paths)
        damaged = screen_images(paths) if damaged is None else np.asarray(damaged, dtype=np.int64)
        if len(damaged):
            self._handle_unreadable(damaged)
        self.readable = np.setdiff1d(np.arange(len(paths)), damaged)  # the order runs over these positions
        self.order = EpochOrder(len(self.readable), batch_size, shard)
        self.batch_size, self.batches_per_epoch = batch_size, self.order.batches_per_epoch

    @property
    def skipped_images(self) -> int:
        return len(self.corrupt.skipped)

    def _positions(self, stream_seed: int, epoch: int, position: int) -> np.ndarray:
        """Positions in the split of this rank's batch `position` of `epoch`."""
        keys = self.order.epoch_order(stream_seed, epoch)[position * self.batch_size:(position + 1) * self.batch_size]
        return self.readable[keys]

    def iterate(self, stream_seed: int, start_step: int = 0):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator
        first_epoch, first_position = divmod(start_step, self.batches_per_epoch)
        recent = []  # positions of the batches handed to DALI and not yet out: to name a file DALI cannot decode
        reader = ThreadPoolExecutor(max(self.num_threads, 1))

        def source(info):  # DALI's batch_info: the iteration within the DALI epoch, and that epoch's index
            epoch = first_epoch + info.epoch_idx
            position = info.iteration + (first_position if info.epoch_idx == 0 else 0)
            if position >= self.batches_per_epoch:
                raise StopIteration  # the epoch ends: the iterator resets, the next one starts in its own order
            positions = self._positions(stream_seed, epoch, position)
            recent.append(positions)
            del recent[:-4]  # prefetch depth 2, one in flight, one in hand
            encoded = list(reader.map(lambda p: np.fromfile(self.paths[p], dtype=np.uint8), positions))
            return encoded, [np.array([p], dtype=np.int64) for p in positions]

        pipe = self._build(source, derive_seed(stream_seed, "augment", start_step, self.order.shard_id))
        batches = None
        while True:
            try:  # the iterator's constructor already runs the first batches
                if batches is None:  # (not `or`: the iterator has a length)
                    batches = DALIGenericIterator(pipe, ["images", "positions"], auto_reset=True)
                outputs = next(batches)
            except StopIteration:
                continue  # epoch boundary (auto_reset has started the next epoch)
            except RuntimeError as err:  # damage the screen cannot see: name the file and stop
                bad = [p for positions in recent for p in positions if not _decodes(self.paths[p])]
                names = ", ".join(self.paths[p] for p in bad[:3]) or "unknown file"
                raise ValueError(f"cannot decode image {names}: {str(err)[:300]}") from None
            index = outputs[0]["positions"].reshape(-1).to(self.device)
            yield Batch(outputs[0]["images"].to(self.device), self.labels[index], index)

    def _build(self, source, seed: int):
        import nvidia.dali.fn as fn
        import nvidia.dali.types as types
        pipe = _pipeline(self.batch_size, self.num_threads, self.dali_device, self.device, seed)
        with pipe:
            # the second output carries the position in the split: labels and clean masks are looked up from it
            encoded, position = fn.external_source(source=source, num_outputs=2, batch=True, batch_info=True,
                                                   dtype=[types.UINT8, types.INT64])
            images = fn.decoders.image(encoded, device="mixed" if self.dali_device == "gpu" else "cpu",
                                       output_type=types.RGB)
            mirror = None if self.augment == "none" else fn.random.coin_flip()
            if self.augment in ("none", "flip"):  # as evaluated: resize the shorter side, centre crop
                images = fn.resize(images, resize_shorter=round(self.image_size * 256 / 224))
                normalised = _normalise_op(images, self.mean, self.std, mirror, crop=(self.image_size, self.image_size))
            else:
                images = fn.random_resized_crop(images, size=[self.image_size, self.image_size])
                normalised = _normalise_op(images, self.mean, self.std, mirror)
            pipe.set_outputs(normalised, position)
        pipe.build()
        return pipe

    def _handle_unreadable(self, damaged: np.ndarray) -> None:
        """data.on_corrupt_image: fail naming the files, or skip them (counted and logged)."""
        if self.on_corrupt == "fail":
            names = ", ".join(self.paths[p] for p in damaged[:3])
            raise ValueError(f"cannot decode image {names} (damaged; data.on_corrupt_image=skip to skip it)")
        self.corrupt.record(damaged)


def _decodes(path) -> bool:
    try:
        decode_rgb(path)
        return True
    except ValueError:
        return False


class DaliFileEvalSet:
    """Clean evaluation batches of an image folder through DALI: resize + centre crop, in file order."""

    def __init__(self, paths: np.ndarray, labels: np.ndarray, *, batch_size: int, mean, std, image_size: int, device,
                 dali_device: str = "cpu", num_threads: int = 1, on_corrupt: str = "fail",
                 damaged: np.ndarray | None = None):
        import nvidia.dali.fn as fn
        import nvidia.dali.types as types
        damaged = list(screen_images(paths) if damaged is None else damaged)  # screened once per run (build_data)
        if damaged and on_corrupt == "fail":
            raise ValueError(f"cannot decode image {paths[damaged[0]]} (damaged; data.on_corrupt_image=skip to skip it)")
        self.corrupt = CorruptImageLog(paths)
        self.corrupt.record(damaged)
        keep = np.setdiff1d(np.arange(len(paths)), damaged)
        paths, labels = paths[keep], labels[keep]
        self.labels, self.batch_size, self.device = torch.from_numpy(labels).to(device), batch_size, device
        self.pipe = _pipeline(batch_size, num_threads, dali_device, device, 0)
        with self.pipe:
            encoded, position = fn.readers.file(files=list(paths), labels=list(range(len(paths))),
                                                random_shuffle=False, pad_last_batch=True, name="reader")
            images = fn.decoders.image(encoded, device="mixed" if dali_device == "gpu" else "cpu", output_type=types.RGB)
            images = fn.resize(images, resize_shorter=round(image_size * 256 / 224))
            self.pipe.set_outputs(_normalise_op(images, mean, std, crop=(image_size, image_size)), position)
        self.pipe.build()

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self):
        total = len(self.labels)
        for start in range(0, total, self.batch_size):  # one pass = one reader epoch (the tail is padding)
            images, positions = self.pipe.run()
            count = min(self.batch_size, total - start)
            index = torch.from_numpy(positions.as_array().reshape(-1)[:count].astype(np.int64)).to(self.device)
            yield _to_torch(images, self.device)[:count], self.labels[index]


def build_pipelines(cfg, train: Subset, evaluations: dict[str, Subset], shard: tuple[int, int], device,
                    screening=None) -> tuple:
    """The DALI backend: (training stream of `train`, {name: EvalSet} of `evaluations`), on the GPU when CUDA is
    present (data.dali_device). Every file an image-folder run reads is screened for damage once (`screening`)."""
    dali_device = require_dali(cfg)
    source = train.source
    if isinstance(source, ArrayDataset):
        stream = DaliArrayTrainStream(source.images[train.index], train.labels, batch_size=cfg.batch_size,
                                      mean=source.mean, std=source.std, augment=cfg.augment, device=device,
                                      shard=shard, dali_device=dali_device, num_threads=cfg.num_workers)
        return stream, array_eval_sets(cfg, source, evaluations, device)
    bad = damaged_paths([train, *evaluations.values()], screening)
    paths = source.paths[train.index]
    stream = DaliFileTrainStream(paths, train.labels, batch_size=cfg.batch_size, shard=shard, augment=cfg.augment,
                                 damaged=_positions_of(paths, bad),
                                 **_file_options(cfg, source, device, dali_device))
    return stream, eval_sets(cfg, source, evaluations, device, screening, bad)


def eval_sets(cfg, source, evaluations: dict[str, Subset], device, screening=None, bad: set | None = None) -> dict:
    """{name: EvalSet} of `evaluations` through DALI, normalised with the training `source`'s statistics; `bad`:
    the damaged files, if already screened."""
    dali_device = require_dali(cfg)
    if isinstance(source, ArrayDataset):
        return array_eval_sets(cfg, source, evaluations, device)
    bad = damaged_paths(evaluations.values(), screening) if bad is None else bad
    sets = {}
    for name, subset in evaluations.items():
        paths = subset.source.paths[subset.index]
        sets[name] = DaliFileEvalSet(paths, subset.labels, batch_size=cfg.eval_batch_size,
                                     damaged=_positions_of(paths, bad), **_file_options(cfg, source, device, dali_device))
    return sets


def _file_options(cfg, source, device, dali_device) -> dict:
    return dict(mean=source.mean, std=source.std, image_size=cfg.image_size, device=device, dali_device=dali_device,
                num_threads=cfg.num_workers, on_corrupt=cfg.on_corrupt_image)


def _positions_of(paths: np.ndarray, bad: set) -> np.ndarray:
    return np.array([i for i, path in enumerate(paths.tolist()) if path in bad], np.int64)
