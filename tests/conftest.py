"""Shared test settings.

One intra-op thread per test process: the suite runs under pytest-xdist (one process per core), and
OpenMP's barriers on oversubscribed cores turn microsecond reductions into milliseconds.
"""

import torch

torch.set_num_threads(1)
