"""What the runs add up to over time: the history database."""
