"""Shared fakes, harnesses and scripted data for every test folder (no tests here)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository root
