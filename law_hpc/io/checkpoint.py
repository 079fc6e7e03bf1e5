"""Per-rank HDF5 checkpoints written atomically: temp file, fsync, rename, directory fsync.

`CheckpointStore` saves and loads nested state dicts (`{"buffer": buffer.state_dict(), ...}`): a part
whose state is a dict of numpy arrays (the replay buffer) becomes HDF5 datasets under /arrays/<part>,
readable with plain h5py; any other part (nets, optimizers, strategy model, RNG state) is serialised
by torch under /torch/<part> and read back with `torch.load(weights_only=True)`, which builds tensors
and plain containers only and never runs code from the file. A SHA-256 over every dataset and the
`complete` attribute (written last) mark a usable file; a truncated or corrupt one is skipped with a
warning and the previous one is used.

A position is (episode, stage, iteration) in the search: the iterations of that stage done, all of them
at its end, fewer in a mid-stage checkpoint written on a stop request; (epoch, 0, iteration) in the test
phase. Positions order the files as the run went.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import warnings
from pathlib import Path

import h5py
import numpy as np
import torch

_NAME = re.compile(r"^ckpt-e(\d+)-s(\d+)-i(\d+)\.h5$")


def checkpoint_dir(run_dir: str | Path, rank: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"rank{rank:04d}"


def _torch_bytes(obj) -> np.ndarray:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def _digest(file: h5py.File) -> str:
    digest = hashlib.sha256()
    names: list[str] = []
    file.visit(lambda name: names.append(name) if isinstance(file[name], h5py.Dataset) else None)
    for name in sorted(names):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(file[name][()]).tobytes())
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename inside directory `path` durable (the file's own fsync does not cover its name)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(directory: Path, position: tuple[int, int, int], arrays: dict[str, np.ndarray],
                    torch_objects: dict, attrs: dict, keep: int = 2) -> Path:
    """Write ckpt-e<episode>-s<stage>-i<iteration>.h5 atomically; keep the newest `keep` files."""
    directory.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(directory, position)
    temporary = directory / f".{final.name}.tmp-{os.getpid()}"
    try:
        with h5py.File(temporary, "w") as file:
            for name, array in arrays.items():
                file.create_dataset(f"arrays/{name}", data=np.asarray(array))
            for name, obj in torch_objects.items():
                file.create_dataset(f"torch/{name}", data=_torch_bytes(obj))
            for key, value in attrs.items():
                file.attrs[key] = value
            file.attrs["episode"], file.attrs["stage"], file.attrs["iteration"] = position
            file.attrs["sha256"] = _digest(file)
            file.attrs["complete"] = 1
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, final)
        fsync_dir(directory)
    except (OSError, RuntimeError) as err:  # h5py reports ENOSPC/EFBIG on close as RuntimeError
        temporary.unlink(missing_ok=True)
        raise OSError(f"writing checkpoint {final} failed ({err}); the previous checkpoint is intact") from err
    for old in list_checkpoints(directory)[keep:]:
        old.unlink(missing_ok=True)
    return final


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files of one rank, newest position first."""
    if not directory.is_dir():
        return []
    found = [(tuple(map(int, m.groups())), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [path for _, path in sorted(found, reverse=True)]


def _verified(file: h5py.File, path: Path) -> dict:
    attrs = dict(file.attrs)
    if attrs.get("complete") != 1:
        raise ValueError(f"checkpoint {path} has no completeness marker")
    if _digest(file) != attrs.get("sha256"):
        raise ValueError(f"checkpoint {path} fails its checksum")
    return attrs


def verify_checkpoint(path: Path) -> None:
    """Raise ValueError unless `path` is complete and its checksum matches."""
    try:
        with h5py.File(path, "r") as file:
            _verified(file, path)
    except OSError as err:
        raise ValueError(f"checkpoint {path} is unreadable (truncated?): {err}") from None


def read_checkpoint(path: Path) -> dict:
    """{'arrays', 'torch', 'attrs'} of a verified checkpoint; ValueError if incomplete or corrupt."""
    try:
        with h5py.File(path, "r") as file:
            attrs = _verified(file, path)
            arrays = {}
            if "arrays" in file:  # names may hold '/', i.e. nested groups
                file["arrays"].visititems(lambda name, obj: arrays.__setitem__(name, obj[()])
                                          if isinstance(obj, h5py.Dataset) else None)
            blobs = {name: file[f"torch/{name}"][()].tobytes() for name in file.get("torch", {})}
    except OSError as err:
        raise ValueError(f"checkpoint {path} is unreadable (truncated?): {err}") from None
    try:
        objects = {name: torch.load(io.BytesIO(blob), weights_only=True) for name, blob in blobs.items()}
    except (pickle.UnpicklingError, RuntimeError) as err:  # torch names the refused global in the first lines
        reason = " ".join(line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "Unsupported" in line)
        raise ValueError(f"checkpoint {path} holds something other than tensors and plain containers (a pickle "
                         f"payload?); refused, nothing in it was run ({reason or type(err).__name__})") from None
    return {"arrays": arrays, "torch": objects, "attrs": attrs, "path": path}


def complete_positions(directory: Path) -> list[tuple[int, int, int]]:
    """Positions of every checkpoint that verifies, newest first; bad ones warned about."""
    positions = []
    for path in list_checkpoints(directory):
        try:
            verify_checkpoint(path)
        except ValueError as err:
            warnings.warn(f"skipping checkpoint: {err}", stacklevel=2)
            continue
        positions.append(tuple(map(int, _NAME.match(path.name).groups())))
    return positions


def checkpoint_path(directory: Path, position: tuple[int, int, int]) -> Path:
    """The file of `position` (episode, stage, iteration) in a rank's checkpoint directory."""
    episode, stage, iteration = position
    return directory / f"ckpt-e{episode:05d}-s{stage:05d}-i{iteration:08d}.h5"


def _is_arrays(part_state) -> bool:
    return isinstance(part_state, dict) and bool(part_state) and all(
        isinstance(value, np.ndarray) for value in part_state.values())


class CheckpointStore:
    """One rank's checkpoints in run_dir/checkpoints/rank####/, as timm's saver: it is handed state dicts
    to write and returns state dicts to load; it builds nothing and reaches into nothing."""

    def __init__(self, run_dir: str | Path, rank: int, keep: int = 2):
        self.directory, self.keep = checkpoint_dir(run_dir, rank), keep

    def save(self, position: tuple[int, int, int], state: dict, attrs: dict | None = None) -> Path:
        """Write `state` ({part: state dict}) as the checkpoint of `position` (module docstring)."""
        arrays = {f"{part}/{name}": array for part, value in state.items() if _is_arrays(value)
                  for name, array in value.items()}
        objects = {part: value for part, value in state.items() if not _is_arrays(value)}
        return save_checkpoint(self.directory, position, arrays, objects, attrs or {}, keep=self.keep)

    def positions(self) -> list[tuple[int, int, int]]:
        """Positions of every complete, verified checkpoint, newest first (bad files are warned about)."""
        return complete_positions(self.directory)

    def has_files(self) -> bool:
        """Whether this rank has written any checkpoint file, usable or not."""
        return self.directory.is_dir() and any(self.directory.glob("ckpt-*.h5"))

    def path(self, position: tuple[int, int, int]) -> Path:
        return checkpoint_path(self.directory, position)

    def load(self, position: tuple[int, int, int]) -> dict:
        """The state saved at `position`, parts as they were given to `save`; ValueError (naming the file)
        if it is incomplete, corrupt, or holds anything but tensors and plain containers."""
        checkpoint = read_checkpoint(checkpoint_path(self.directory, position))
        state = dict(checkpoint["torch"])
        for name, array in checkpoint["arrays"].items():
            part, key = name.split("/", 1)
            state.setdefault(part, {})[key] = array
        return state
