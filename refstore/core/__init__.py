"""The bottom layer: hashing, object cache, trees, database, fsspec access.

Nothing here imports click or prints.
"""
