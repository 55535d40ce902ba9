"""Importers: bring runs and artifacts from other tools (MLflow) and other refstores.

Every importer is incremental and read-only towards its source. Progress lives
in the ``import_progress`` table, one row per (source, item) with a
fingerprint of what was imported: an item whose fingerprint is unchanged is
skipped, a changed one is imported again (updated in place), and a failed one
is recorded as ``failed`` and retried by the next import.
"""
