# Tiny distributed job for `lab smoke`: run under torchrun on every lab host.
# Each rank contributes rank+1; after all_reduce every rank must hold the sum.
import os
import socket

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
t = torch.tensor([float(rank + 1)])
dist.all_reduce(t)
expected = world * (world + 1) / 2
print(f"smoke: host={socket.gethostname()} rank={rank}/{world} all_reduce={t.item():g} "
      f"expected={expected:g} master={os.environ.get('MASTER_ADDR')}", flush=True)
dist.destroy_process_group()
assert t.item() == expected, "all_reduce gave the wrong sum"
