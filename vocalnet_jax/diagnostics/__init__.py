"""Diagnostics of a model under training that need both its training task (teacher-forced
batches) and its decoder (free-running output): never imported when answering."""
