"""Data sets and data loading of recbole-adaptssr."""
