"""Proving old and new agree: Parquet copies of items (`parquet`) and the join that compares
what each target should hold with what it holds (`diff`)."""
