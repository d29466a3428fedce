"""`python -m daemon` is the same as the `anchord` console script."""

from daemon.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
