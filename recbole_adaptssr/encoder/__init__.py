"""The user model (paper Eq. 2-4)."""
