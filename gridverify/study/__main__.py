"""``python -m gridverify.study STUDY.toml [--out DIR] [--workers N] [--scheduler ADDRESS]``."""

from gridverify.study.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
