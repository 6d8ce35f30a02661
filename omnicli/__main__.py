"""`python -m omnicli` runs the `omni` command line."""

from omnicli.ui.cli import main

main()
