"""Kept so that ``make bench`` (which still names this module) runs the real harness.

The first latency/throughput script that lived here grew into the package
``bench`` (workloads, floor, servers, client, report): ``python -m bench``.
"""

from __future__ import annotations

import sys

from bench.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
