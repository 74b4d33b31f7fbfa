"""Analyses of pre-trained user models: :mod:`recbole_adaptssr.analysis.similarity` (paper Fig. 5, the
distributions of the cosine similarity between user representations)."""
