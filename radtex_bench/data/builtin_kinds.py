"""Imports the built-in dataset kinds so they register."""

from . import chexpert, manifest, mimic, nih, openi, synthetic_kind  # noqa: F401
