"""Datasets: one reader per kind (``kinds/``), the image table, decoding, caching and the loaders."""
