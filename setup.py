"""law_hpc: Learning to Auto Weight (Li et al., AAAI 2020) as a Horovod/MPI batch application.

    pip install .              the core: PolicyWeighter, the policy file, the models (torch, numpy, h5py, PyYAML)
    pip install '.[plots]'     analysis: matplotlib, pandas (to_dataframe, tools/export_csv.py), tensorboard
    pip install '.[test]'      the test suite
    bash tools/setup_env.sh    the searcher, [hpc]: Horovod (built here with the C++20 wrapper, NCCL where a CUDA
                               toolkit is present), mpi4py, NVIDIA DALI of torch's CUDA; then [plots,test]

`pip install '.[hpc]'` alone would try to build Horovod from source without that wrapper: use the script.
"""
from setuptools import find_packages, setup

setup(
    name="law_hpc",
    version="0.1.0",
    description="Learning to Auto Weight: RL-learned example weighting, searched with N Horovod ranks",
    packages=find_packages(include=["law_hpc", "law_hpc.*"]),
    # law_hpc/configs links to the repository's configs/: the shipped configs travel with the package
    package_data={"law_hpc": ["configs/*.yaml", "policies/*.h5", "policies/index.yaml"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",  # any recent torch: the core pins nothing a user's environment already has
        "numpy",
        "h5py>=3.10",
        "PyYAML>=6",
    ],
    extras_require={
        "hpc": [
            "horovod==0.28.1",  # built from source by tools/setup_env.sh (C++20 wrapper, Gloo + MPI [+ NCCL])
            "mpi4py>=4.0",
            "nvidia-dali-cuda130==2.4.0",  # CUDA 13, as torch 2.14's wheels: one CUDA stack per process
            "torchvision",  # the image-folder pipeline and the torchvision models
            "pillow",
        ],
        "peers": ["cleanlab>=2.6"],  # Confident Learning (methods/confident_learning.py): numpy, scikit-learn, pandas
        "plots": ["matplotlib>=3.7", "pandas>=2", "tensorboard>=2.14"],
        "test": ["pytest>=8", "pytest-timeout", "pytest-xdist>=3", "psutil", "matplotlib>=3.7", "pandas>=2",
                 "tensorboard>=2.14"],
    },
    entry_points={
        "console_scripts": [
            "law-search=law_hpc.search:main",
            "law-train=law_hpc.train:main",
        ]
    },
)
