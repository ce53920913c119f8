"""Patronage command line."""
