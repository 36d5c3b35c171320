"""The VNN-COMP ml4acopf benchmark: `bench/vnncomp.py` on ``../shared/data/ml4acopf_2023`` (next to the
repository) unless FOLDER is given.

Prints a table (instance, result, wall seconds including process start, peak RSS) and totals. The shared
data lives outside the project (third-party files).

    python bench/ml4acopf.py [FOLDER] [--cap SECONDS] [--only 14_ieee]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import vnncomp

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml4acopf_2023"

if __name__ == "__main__":
    vnncomp.main(DEFAULT, __doc__)
