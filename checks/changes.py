"""Stage `changes` (placeholder: being written)."""
