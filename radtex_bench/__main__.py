"""``python -m radtex_bench`` (what ``torchrun -m radtex_bench run RECIPE`` launches)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
