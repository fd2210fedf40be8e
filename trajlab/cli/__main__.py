"""`python -m trajlab.cli` = the `trajlab` command."""

from trajlab.cli import main

main()
