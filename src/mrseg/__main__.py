"""``python -m mrseg`` (and ``torchrun -m mrseg train ...``) runs the command line."""

from mrseg.cli import main

if __name__ == "__main__":
    main()
