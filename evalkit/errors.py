"""One exception type for problems the user can fix: the CLI prints its message and exits 2."""


class EvalkitError(Exception):
    """A clear, one-line problem with the user's input (checkpoint, task, options)."""


class ContextTooLongError(EvalkitError):
    """A request does not fit the model's window and the truncation policy is `error`."""
