"""`python -m pipeline.cli`: the `synthdetect` command."""
from pipeline.cli import main

main(prog_name="synthdetect")
