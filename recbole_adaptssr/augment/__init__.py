"""Explicit sequence augmentations: batched tensor operations."""
