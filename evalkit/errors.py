"""One exception type for problems the user can fix: the CLI prints its message and exits 2."""


class EvalkitError(Exception):
    """A clear, one-line problem with the user's input (checkpoint, task, options)."""


class ContextTooLongError(EvalkitError):
    """A request does not fit the model's window and the truncation policy is `error`."""


class TaskCannotRun(EvalkitError):
    """A task cannot run on this checkpoint or host (no needle length fits the window, no
    sandbox for generated code...): a suite skips it with this reason unless `--strict-suite`."""


class DamagedModelError(EvalkitError):
    """The checkpoint's weights or outputs are not finite: its scores would mean nothing."""
