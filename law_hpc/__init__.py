"""law_hpc: Learning to Auto Weight on Horovod/MPI."""
__version__ = "0.1.0"
