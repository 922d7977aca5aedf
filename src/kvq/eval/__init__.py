"""Evaluation: correlation metrics and benchmark protocols."""
