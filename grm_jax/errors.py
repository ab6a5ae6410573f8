"""The exceptions grm-jax raises for bad user input.

Every user-facing failure is one of these, and its message names the file, key or value
at fault. ``launch.py`` and the ``convert_weights`` CLI print such an error as a single line
(plus a hint when one is attached) instead of a traceback; ``--verbose`` shows the traceback.

    GrmError
    ├── ConfigError       a run-config key or value (unknown key, wrong type, bad range)
    ├── DataError         a dataset, sequence, frame, annotation or results file
    ├── CheckpointError   a weights file, model directory or training checkpoint
    ├── WorkdirError      an output directory (not writable, locked, other run's results)
    └── TrainingError     training cannot go on (the loss became NaN or infinite)

Each class also derives from the built-in exception that older callers caught
(ValueError / FileNotFoundError), so ``except ValueError`` keeps working.
"""
from __future__ import annotations


class GrmError(Exception):
    """Base class. ``hint`` is an optional second line telling the user how to proceed."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def user_message(self) -> str:
        """The one or two lines printed instead of a traceback."""
        text = str(self)
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class ConfigError(GrmError, ValueError):
    """A run-config key or value is unknown, of the wrong type or out of range."""


class DataError(GrmError, ValueError):
    """A dataset root, sequence, frame, annotation or result file is missing or malformed."""


class MissingFileError(DataError, FileNotFoundError):
    """A file or folder that must exist does not (a DataError that is also FileNotFoundError)."""


class CheckpointError(GrmError, ValueError):
    """A weights file, model directory or training checkpoint cannot be used as asked."""


class WorkdirError(GrmError, ValueError):
    """An output directory cannot be used: not writable, locked by another run, or holding
    results of a different run."""


class TrainingError(GrmError, RuntimeError):
    """Training stopped because it cannot go on (e.g. the loss became NaN or infinite); the
    message names the step and the last good checkpoint."""


class Terminated(BaseException):
    """SIGTERM (a preemption) arrived; raised in the main thread by the command-line entry points
    (:func:`raise_on_sigterm`). It unwinds like Ctrl-C: temporary files are discarded, locks
    released, checkpoint saves in flight completed; finished units (result files, checkpoints)
    stay. A BaseException, so ``except Exception`` blocks do not swallow it."""


def raise_on_sigterm():
    """Installs the SIGTERM handler raising :class:`Terminated` (a second SIGTERM then ends the
    process at once). Returns the previous handler, to restore with ``signal.signal``."""
    import signal  # noqa: PLC0415

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated(signal.Signals(signum).name)

    return signal.signal(signal.SIGTERM, handler)


# Exit status of a run stopped by SIGTERM (128 + 15, what the shell reports for a killed process).
TERMINATED_EXIT = 143

# What a command-line entry point reports as a user error (one line, exit status 2) rather than
# a traceback: our own errors, missing / unreadable files, and values a library refused.
USER_ERRORS = (GrmError, OSError, ValueError)


def report_user_error(err: BaseException, verbose: bool = False, prefix: str = "error",
                      verbose_hint: str = "run with --verbose for the traceback") -> int:
    """Prints ``err`` for a person (``user_message()`` for a GrmError, ``Type: text`` otherwise)
    to stderr, with the traceback when ``verbose`` (else ``verbose_hint``, naming how to get it);
    returns the exit status 2."""
    import sys  # noqa: PLC0415
    import traceback  # noqa: PLC0415

    if verbose:
        traceback.print_exception(err)
    message = err.user_message() if isinstance(err, GrmError) else f"{type(err).__name__}: {err}"
    print(f"{prefix}: {message}", file=sys.stderr)
    if not verbose:
        print(f"  ({verbose_hint})", file=sys.stderr)
    return 2
