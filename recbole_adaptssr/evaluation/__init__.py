"""Metrics added to RecBole's registry."""
