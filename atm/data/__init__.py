"""Data: vocabularies, corpora and the deterministic, resumable batch pipeline."""
