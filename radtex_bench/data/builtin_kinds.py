"""Imports the built-in dataset kinds so they register."""

from . import manifest, synthetic_kind  # noqa: F401
