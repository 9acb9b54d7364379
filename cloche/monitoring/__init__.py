"""Model monitoring: profiles of a model's data, distances between them, and monitors."""
