"""The training engine shared by every objective."""
