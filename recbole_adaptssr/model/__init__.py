"""Models of recbole-adaptssr."""
