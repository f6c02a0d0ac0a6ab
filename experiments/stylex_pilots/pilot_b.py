"""Pilot B: crops on tissue (see pilot_configs.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pilot_configs import pilot  # noqa: E402


def get_config():
    return pilot("pilot_b", min_tissue=0.8)
