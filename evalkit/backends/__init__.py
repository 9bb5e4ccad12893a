"""Backends execute tokenized work; they never see tasks. See `base.Backend`."""
