"""Placeholder: streaming feature statistics (being written)."""
class FeatureStats:
    pass
