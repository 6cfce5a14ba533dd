"""The command line: click commands (``main``), what they do (``commands``), how they print (``output``)."""

from orderwatch.cli.main import main, run

__all__ = ["main", "run"]
