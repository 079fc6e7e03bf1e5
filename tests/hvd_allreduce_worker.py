"""Run under horovodrun by test_stack.py: average tensors across ranks through law_hpc.dist, check mpi4py."""
import json
import os
import sys

import torch

from law_hpc import dist as distributed

d = distributed.init()
param = torch.nn.Parameter(torch.zeros(3))
param.grad = torch.full((3,), float(d.rank + 1)) * torch.tensor([1.0, 10.0, 100.0])
d.average_gradients([param])
gathered = d.allgather_object({"rank": d.rank})
mixed = d.allgather_object("run-dir-name" if d.rank == 0 else None)  # different types and sizes per rank
result = {"rank": d.rank, "size": d.size, "controller": d.controller, "averaged": param.grad.tolist(),
          "gathered": gathered, "mixed": mixed, "any_flag": d.any_flag(d.rank == 1)}
if d.controller == "mpi":
    from mpi4py import MPI
    result["mpi_rank"], result["mpi_size"] = MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()
with open(os.path.join(sys.argv[1], f"rank{d.rank}.json"), "w") as f:
    json.dump(result, f)
d.shutdown()
