"""The label-budget evaluator: splits, subsets, protocols, statistics."""
