"""The Python API: what ``import refstore`` gives a user."""
