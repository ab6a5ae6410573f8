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

# What a command-line entry point reports as a user error (one line, exit status 2): only our own
# errors. Any other exception is a bug in grm-jax: report_error prints its traceback and asks for
# a report (exit status 70, EX_SOFTWARE).
USER_ERRORS = (GrmError,)
BUG_EXIT = 70


class ConfigFileError(ConfigError):
    """A config file (the user's code) failed while being loaded: ``details`` holds the traceback
    of that code, which is printed above the one-line message."""

    def __init__(self, message: str, details: str = "", hint: str | None = None):
        super().__init__(message, hint=hint)
        self.details = details


def report_error(err: BaseException, verbose: bool = False, prefix: str = "error",
                 verbose_hint: str = "run with --verbose for the traceback") -> int:
    """Prints ``err`` to stderr and returns the exit status: a GrmError as one line (plus its hint,
    plus the traceback of a config file's own code, plus the full traceback with ``verbose``, else
    ``verbose_hint`` naming how to get it) -> 2; anything else as a bug: its traceback and a
    request to report it -> BUG_EXIT."""
    import sys  # noqa: PLC0415
    import traceback  # noqa: PLC0415

    if not isinstance(err, GrmError):
        traceback.print_exception(err)
        print(f"{prefix}: internal error {type(err).__name__}: {err}\n  this is a bug in grm-jax, not a problem with "
              f"your input: please report it to the grm-jax maintainers (the issue tracker of the repository you "
              f"installed from) with the traceback above", file=sys.stderr)
        return BUG_EXIT
    if verbose:
        traceback.print_exception(err)
    elif getattr(err, "details", ""):
        print(err.details.rstrip(), file=sys.stderr)
    print(f"{prefix}: {err.user_message()}", file=sys.stderr)
    if not verbose:
        print(f"  ({verbose_hint})", file=sys.stderr)
    return 2
