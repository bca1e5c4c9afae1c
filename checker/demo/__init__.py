"""Local demo sites for the ``checker demo`` command and the end-to-end tests."""
