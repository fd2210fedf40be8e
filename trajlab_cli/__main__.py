"""`python -m trajlab_cli` = the `trajlab` command."""

from trajlab_cli import main

main()
