"""The ONLY module that imports Horovod or mpi4py: process group, device, and the collectives LAW uses.

Launched by `horovodrun -np N` (Gloo or MPI), `srun --mpi=pmix` or `mpirun`, every rank runs one
searcher; started as plain `python`, it is a world of one. The rest of the code receives a `Dist`
and never sees Horovod's API, so the method itself (`law_hpc/law`) stays testable in one process.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import torch

_OPTIMIZER_IDS = itertools.count()


class LaunchError(RuntimeError):
    """The launcher and Horovod disagree about the job, or the job cannot use the GPUs it was given."""


def _launched_by_mpi() -> bool:
    return any(k in os.environ for k in ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"))


def launcher_sizes(env) -> dict[str, int]:
    """The world size each launcher variable of this process claims. horovodrun's and an MPI launcher's own
    counts win: inside a Slurm allocation they may rightly start fewer ranks than SLURM_NTASKS."""
    def sizes(names):
        found = {}
        for name in names:
            try:
                found[name] = int(env[name])
            except (KeyError, ValueError):
                pass
        return found
    return (sizes(["HOROVOD_SIZE"]) or sizes(["OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"])
            or sizes(["SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env else "SLURM_NTASKS", "WORLD_SIZE"]))


def check_launcher(horovod_size: int, env) -> None:
    """A LaunchError when a launcher variable says N > 1 tasks but Horovod sees another world size: the tasks
    were started without MPI/PMIx wire-up and would each run as rank 0 of a world of one."""
    for name, size in launcher_sizes(env).items():
        if size > 1 and size != horovod_size:
            raise LaunchError(
                f"{name}={size} but Horovod sees {horovod_size} rank(s): the tasks were started without MPI wire-up; "
                "launch with `srun --mpi=pmix` (Slurm) or `horovodrun -np N` (not torchrun or a plain srun)")


def threads_for(threads_per_rank: int, local_size: int, env, affinity: int) -> int:
    """torch threads of one rank: threads_per_rank, else OMP_NUM_THREADS or SLURM_CPUS_PER_TASK, else the
    cores this process may run on (its CPU affinity) shared by the ranks of the node."""
    if threads_per_rank > 0:
        return threads_per_rank
    for name in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        try:
            if int(env.get(name, "")) > 0:
                return int(env[name])
        except ValueError:
            pass
    return max(1, affinity // max(local_size, 1))


def cpu_affinity() -> int:
    """Cores this process may run on (taskset, Slurm's binding), or all cores where that is unknown."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def slurm_gpus(env) -> str:
    """The GPUs Slurm allocated to this job or step ("" if none)."""
    for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):  # GPU indices: "0" is the first GPU
        value = env.get(name, "").strip()
        if value and value != "(null)":
            return f"{name}={value}"
    count = env.get("SLURM_GPUS_ON_NODE", "").strip()  # a count: "0" on a CPU node
    return f"SLURM_GPUS_ON_NODE={count}" if count not in ("", "0") else ""


def nvidia_driver() -> str:
    """The loaded NVIDIA kernel driver's version line, or "" without one."""
    try:
        return Path("/proc/driver/nvidia/version").read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return ""


def choose_device(local_rank: int, cuda_available: bool, device_count: int, *, allow_cpu: bool = False,
                  gpus: str = "", driver: str = "") -> torch.device:
    """cuda:(local_rank % device_count): with one GPU bound per task (--gpus-per-task=1, --gpu-bind) every task
    sees one device, cuda:0. Without CUDA, the CPU, unless the job was given GPUs (Slurm) or the machine has
    an NVIDIA driver: then a LaunchError (a driver too old for torch's CUDA would otherwise run silently on the
    CPU), unless allow_cpu."""
    if cuda_available and device_count > 0:
        return torch.device("cuda", local_rank % device_count)
    if not allow_cpu and (gpus or driver):
        built = f"torch {torch.__version__} built for CUDA {torch.version.cuda}" if torch.version.cuda else \
            f"torch {torch.__version__} built without CUDA"
        raise LaunchError(f"GPUs are present ({gpus or driver}) but CUDA is unavailable ({built}; a driver older "
                          "than that CUDA?); fix the driver or torch build, or set allow_cpu=true to run on the CPU")
    return torch.device("cpu")


def _import_horovod():
    try:
        import horovod.torch as hvd
    except ImportError as err:
        raise LaunchError(
            f"Horovod is not importable ({err}): the searcher needs law_hpc[hpc]; set the environment up with "
            "`bash tools/setup_env.sh` and run inside its .venv"
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

    def average_batchnorm_statistics(self, module: torch.nn.Module) -> None:
        """Average BatchNorm running means and variances over ranks (ONE grouped allreduce): data-parallel ranks
        update them from their own batches, and the ranks must hold one model to evaluate and checkpoint."""
        if self.size == 1:
            return
        stats = [buffer for layer in module.modules() if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm)
                 for buffer in (layer.running_mean, layer.running_var) if buffer is not None]
        if stats:
            averaged = self._hvd.grouped_allreduce(stats, op=self._hvd.Average, name="law_hpc.bn_statistics")
            for buffer, value in zip(stats, averaged):
                buffer.copy_(value)

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

    def reduce_max(self, values: list[float]) -> list[float]:
        """The elementwise maximum of `values` over ranks, on every rank (one small allreduce: the stop poll)."""
        if self.size == 1:
            return [float(value) for value in values]
        tensor = torch.tensor(values, dtype=torch.float64)
        return self._hvd.allreduce(tensor, op=self._hvd.Max).tolist()

    def shutdown(self) -> None:
        if self._hvd is not None:
            self._hvd.shutdown()


def init(threads_per_rank: int = 0, allow_cpu: bool = False) -> Dist:
    """Start Horovod (over MPI via mpi4py when launched by an MPI launcher), check it against the launcher,
    pick the device, split cores. A LaunchError (after shutting Horovod down) on a mismatch."""
    # Horovod's background thread negotiates every HOROVOD_CYCLE_TIME ms (default 1). Our collectives
    # are few and small; at 1 ms the negotiation took ~40 % of a 2-core node (tools/bench notes), at 10 ms
    # nearly nothing, for at most 10 ms extra latency per FDU minibatch. A user's setting wins.
    os.environ.setdefault("HOROVOD_CYCLE_TIME", "10")
    hvd = _import_horovod()
    if not _launched_by_mpi() and "HOROVOD_RANK" not in os.environ:
        # no wire-up: a world of one for sure. Check before hvd.init, whose MPI_Init would abort under srun.
        check_launcher(1, os.environ)
    controller = "gloo"
    if _launched_by_mpi():
        try:
            from mpi4py import MPI
        except ImportError as err:
            raise LaunchError(f"launched by MPI but mpi4py is not importable ({err})") from None
        hvd.init(comm=MPI.COMM_WORLD)
        controller = "mpi"
    else:
        hvd.init()
    if hvd.size() == 1 and not _launched_by_mpi() and "HOROVOD_RANK" not in os.environ:
        controller = "none"
    try:
        check_launcher(hvd.size(), os.environ)
        available = torch.cuda.is_available()
        device = choose_device(hvd.local_rank(), available, torch.cuda.device_count() if available else 0,
                               allow_cpu=allow_cpu, gpus=slurm_gpus(os.environ), driver=nvidia_driver())
    except LaunchError:
        hvd.shutdown()
        raise
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # Ranks on one node share its cores; oversubscribing them costs more than it gains.
    torch.set_num_threads(threads_for(threads_per_rank, hvd.local_size(), os.environ, cpu_affinity()))
    return Dist(hvd.rank(), hvd.size(), hvd.local_rank(), hvd.local_size(), device, controller, hvd)

