"""tests/alerts: its helper module (alertdata.py) sits beside the tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
