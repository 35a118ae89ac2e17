"""`python -m popctl`."""

from popctl.cli import main

if __name__ == "__main__":
    main()
