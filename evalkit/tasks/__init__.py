"""Tasks turn documents into requests and responses into per-item scores."""
