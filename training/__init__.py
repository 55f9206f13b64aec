"""Offline training of the memory and the adapter: data, features, batches, evaluation and settings."""
