"""law_hpc: Learning to Auto Weight (Li et al., AAAI 2020) as a Horovod/MPI batch application."""
from setuptools import find_packages, setup

setup(
    name="law_hpc",
    version="0.1.0",
    description="Learning to Auto Weight: RL-learned example weighting, searched with N Horovod ranks",
    packages=find_packages(include=["law_hpc", "law_hpc.*"]),
    package_data={"law_hpc": ["configs/*.yaml"]},
    python_requires="==3.11.*",
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        # Built from source by tools/setup_env.sh (C++20 wrapper, Gloo + MPI controllers).
        "horovod==0.28.1",
        "mpi4py>=4.0",
        "h5py>=3.10",
        "nvidia-dali-cuda120==2.4.0",
        "numpy",
        "PyYAML>=6",
        "matplotlib>=3.7",
    ],
    extras_require={"test": ["pytest>=8", "pytest-timeout"]},
    entry_points={
        "console_scripts": [
            "law-search=law_hpc.search:main",
            "law-train=law_hpc.train:main",
        ]
    },
)
