"""Helpers shared by the tests: media made in code, servers, observation, faults."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
