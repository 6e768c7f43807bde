"""`python -m hostdev_cli` is the `hostdev` command."""

from hostdev_cli.main import main

main()
