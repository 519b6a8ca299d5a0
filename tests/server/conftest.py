import torch

# The attack's and the supernet's ops are tiny: on a loaded machine, torch's intra-op
# threads cost far more in synchronisation than they give (13x slower measured here).
torch.set_num_threads(1)
