"""`python -m genlearn ...`: the `genlearn` command (what `torchrun --nproc-per-node N -m genlearn fit ...` runs in
every process)."""
import sys

from genlearn.cli import main

if __name__ == "__main__":
    sys.exit(main())
