"""Optional TensorBoard scalars (log.tensorboard: true), written by rank 0 to run_dir/tensorboard."""
from __future__ import annotations

from pathlib import Path


class Scalars:
    """A TensorBoard event writer; `add(section, {name: value}, step)` per stage or epoch."""

    def __init__(self, directory: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError("log.tensorboard=true needs the tensorboard package (pip install tensorboard, or "
                              f"pip install 'law_hpc[plots]'): {err}") from None
        self.writer = SummaryWriter(str(directory))

    def add(self, section: str, values: dict, step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"{section}/{name}", float(value), step)
        self.writer.flush()  # live: TensorBoard shows each stage as it lands

    def close(self) -> None:
        self.writer.close()


def open_scalars(cfg, run_dir: Path, is_root: bool) -> Scalars | None:
    """Rank 0's writer when cfg.log.tensorboard, else None."""
    return Scalars(Path(run_dir) / "tensorboard") if cfg.log.tensorboard and is_root else None
