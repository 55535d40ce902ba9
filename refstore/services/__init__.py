"""Middle layer: versions and aliases, checkout, gc, references, sync, lineage."""
