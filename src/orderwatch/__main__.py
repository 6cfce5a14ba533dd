"""`python -m orderwatch` runs the command line."""

from orderwatch.cli import run

run()
