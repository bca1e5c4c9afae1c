"""checker: a concurrent website status checker."""

__version__ = "0.1.0"
