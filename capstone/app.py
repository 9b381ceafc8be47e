"""``python -m capstone.app`` (what ``make app`` runs): the search page, :mod:`capstone.apps.server`."""

if __name__ == "__main__":
    from capstone.apps.server import main

    main()
