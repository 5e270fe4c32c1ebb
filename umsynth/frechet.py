"""Placeholder: Fréchet distance (being written)."""
def frechet_distance(*a, **k):
    raise NotImplementedError
frechet_distance_features = frechet_distance_from_stats = frechet_distance
