"""Clear errors for the people who run the bundle: one line naming the file and the problem, not a traceback.

The bundle runs under MONAI's runner (``python -m monai.bundle run ...``), which evaluates the configs' ``$``
expressions and instantiates their components, and wraps any ``Exception`` they raise in a
``RuntimeError("Failed to evaluate ...")``; the interpreter then prints the whole chained traceback. The components
that configs run before any work starts (dataset check, split, input listing, weights check) therefore carry the
decorator :func:`reports_input_errors`, and a config names them directly::

    split:
      _target_: scripts.components.dataset.split
      datalist_file: "@datalist_file"

A ``ValueError`` or ``OSError`` that the decorated function raises (the library functions raise them, naming the
file and the problem) becomes :class:`InputError`, a ``SystemExit`` whose message is ``error: <file>: <problem>``.
``SystemExit`` is not an ``Exception``, so it passes the runner untouched, and the interpreter prints its message as
the last line of the output and exits with status 1.

The library functions in :mod:`scripts.lib` stay undecorated: their callers (tests, other modules) catch
``ValueError``/``OSError`` as usual. Code that calls a decorated component can catch :class:`InputError`, and
``function.__wrapped__`` is the undecorated function.

Set the environment variable ``LIVER_CT_DEBUG=1`` to get the original exception and its traceback instead.
"""

from __future__ import annotations

import functools
import os

__all__ = ["DEBUG_ENV", "InputError", "debug_enabled", "one_line", "reports_input_errors"]

#: Environment variable that turns the one-line errors back into tracebacks.
DEBUG_ENV = "LIVER_CT_DEBUG"


def one_line(text) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


class InputError(SystemExit):
    """A problem with the user's files or settings; exits with status 1 printing ``error: <message>``.

    ``message`` holds the one-line text without the ``error:`` prefix.
    """

    def __init__(self, message) -> None:
        self.message = one_line(message)
        super().__init__(f"error: {self.message}")


def debug_enabled() -> bool:
    """True when ``LIVER_CT_DEBUG`` is set to 1/true/yes/on."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def reports_input_errors(function):
    """Decorator: ``function``, with the ``ValueError``/``OSError`` it raises turned into :class:`InputError`.

    For a class, decorate its ``__init__``. With ``LIVER_CT_DEBUG=1`` the original exception propagates unchanged
    (with its traceback). The undecorated function stays reachable as ``__wrapped__``.
    """

    @functools.wraps(function)
    def reporting(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (ValueError, OSError) as exc:
            if debug_enabled():
                raise
            raise InputError(str(exc)) from exc

    return reporting
