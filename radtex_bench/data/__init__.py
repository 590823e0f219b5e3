"""Datasets: readers for each kind, the image table, decoding, caching and the training loader."""

from .kinds import DATASETS, DatasetKind, DatasetOptions, DatasetSpec, register_dataset
from .table import ImageTable

__all__ = ["DATASETS", "DatasetKind", "DatasetOptions", "DatasetSpec", "ImageTable", "register_dataset"]
