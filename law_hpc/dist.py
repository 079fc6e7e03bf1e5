"""The ONLY module that imports Horovod or mpi4py: process group, device, and the collectives LAW uses.

Launched by `horovodrun -np N` (Gloo or MPI), `srun --mpi=pmix` or `mpirun`, every rank runs one
searcher; started as plain `python`, it is a world of one. The rest of the code receives a `Dist`
and never sees Horovod's API, so the method itself (`law_hpc/law`) stays testable in one process.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import torch

_OPTIMIZER_IDS = itertools.count()


def _launched_by_mpi() -> bool:
    return any(k in os.environ for k in ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"))


def _import_horovod():
    try:
        import horovod.torch as hvd
    except ImportError as err:
        raise RuntimeError(
            f"Horovod is not importable ({err}). Set the environment up with `bash tools/setup_env.sh` "
            "and run inside its .venv."
        ) from None
    return hvd


@dataclass
class Dist:
    """Rank, world and device of this process, and the collectives over all ranks."""

    rank: int
    size: int
    local_rank: int
    local_size: int
    device: torch.device
    controller: str
    _hvd: object = None

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    # --- collectives ---------------------------------------------------------------------------
    def average_gradients(self, parameters) -> None:
        """Replace each parameter's .grad by its mean over ranks: ONE grouped allreduce (Eq. 10, 13)."""
        if self.size == 1:
            return
        params = [p for p in parameters if p.grad is not None]
        averaged = self._hvd.grouped_allreduce([p.grad for p in params], op=self._hvd.Average)
        for param, grad in zip(params, averaged):
            param.grad.copy_(grad)

    def broadcast_state(self, module: torch.nn.Module, root: int = 0) -> None:
        """Overwrite every parameter and buffer of `module` with root's values."""
        if self.size == 1:
            return
        self._hvd.broadcast_parameters(module.state_dict(), root_rank=root)

    def distributed_optimizer(self, optimizer, model: torch.nn.Module):
        """Data-parallel training: gradients averaged over ranks at each step (test phase only)."""
        if self.size == 1:
            return optimizer
        # a name prefix per optimizer keeps two networks' allreduces apart (Co-teaching)
        prefix = f"opt{next(_OPTIMIZER_IDS)}."
        wrapped = self._hvd.DistributedOptimizer(
            optimizer, named_parameters=[(prefix + name, p) for name, p in model.named_parameters()])
        self._hvd.broadcast_optimizer_state(wrapped, root_rank=0)
        return wrapped

    def allgather_object(self, obj) -> list:
        """Every rank's `obj`, in rank order, on every rank (objects may differ in type and size)."""
        if self.size == 1:
            return [obj]
        # Horovod names the collective after type(obj) by default: ranks passing different types
        # (a path on rank 0, None elsewhere) would wait for each other forever. One fixed name.
        return self._hvd.allgather_object(obj, name="law_hpc.allgather_object")

    def any_flag(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any rank (agreement at a stage boundary)."""
        if self.size == 1:
            return bool(flag)
        value = torch.tensor([1.0 if flag else 0.0])
        return bool(self._hvd.allreduce(value, op=self._hvd.Max).item() > 0)

    def shutdown(self) -> None:
        if self._hvd is not None:
            self._hvd.shutdown()


def init(threads_per_rank: int = 0) -> Dist:
    """Start Horovod (over MPI via mpi4py when launched by an MPI launcher), pick the device, split cores."""
    # Horovod's background thread negotiates every HOROVOD_CYCLE_TIME ms (default 1). Our collectives
    # are few and small; at 1 ms the negotiation took ~40 % of a 2-core node (tools/bench notes), at 10 ms
    # nearly nothing, for at most 10 ms extra latency per FDU minibatch. A user's setting wins.
    os.environ.setdefault("HOROVOD_CYCLE_TIME", "10")
    hvd = _import_horovod()
    controller = "gloo"
    if _launched_by_mpi():
        try:
            from mpi4py import MPI
        except ImportError as err:
            raise RuntimeError(f"launched by MPI but mpi4py is not importable ({err})") from None
        hvd.init(comm=MPI.COMM_WORLD)
        controller = "mpi"
    else:
        hvd.init()
    if hvd.size() == 1 and not _launched_by_mpi() and "HOROVOD_RANK" not in os.environ:
        controller = "none"
    if torch.cuda.is_available():
        device = torch.device("cuda", hvd.local_rank())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    # Ranks on one node share its cores; oversubscribing them costs more than it gains.
    threads = threads_per_rank or max(1, (os.cpu_count() or 1) // hvd.local_size())
    torch.set_num_threads(threads)
    return Dist(hvd.rank(), hvd.size(), hvd.local_rank(), hvd.local_size(), device, controller, hvd)

