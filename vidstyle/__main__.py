"""`python -m vidstyle` is the same as the `vidstyle` command."""

from vidstyle.cli import main

if __name__ == "__main__":
    main()
