"""Floors: the bare mechanism under each figure, run as scripts in their own processes."""
