"""HDF5 I/O: the metrics log, atomic per-rank checkpoints, the exported policy, the run directory."""
