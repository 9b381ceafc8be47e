"""``python -m capstone.notebooks run|strip`` (``make demo``): :mod:`capstone.apps.notebooks`."""

if __name__ == "__main__":
    import sys

    from capstone.apps.notebooks import main

    sys.exit(main())
