"""Experiments that evaluate stylejax components (e.g. :mod:`stylejax.evaluation.stylex_eval`)."""
