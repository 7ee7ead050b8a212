"""Clear errors for the people who run the bundle: one line naming the file and the problem, not a traceback.

MONAI's runner wraps any ``Exception`` a config component raises in ``RuntimeError("Failed to evaluate ...")``, and
the interpreter prints the whole chained traceback. So the components that configs run before any work starts
(dataset check, split, input listing, weights check) carry the decorator :func:`reports_input_errors`: the
``ValueError``/``OSError`` they raise becomes :class:`InputError`, a ``SystemExit`` (not an ``Exception``, so it
passes the runner untouched) whose message ``error: <file>: <problem>`` is the last line printed, with exit status 1.
Configs name the decorated component itself (``_target_: scripts.components.dataset.split``). The library functions
in :mod:`scripts.lib` stay undecorated, for callers that catch ``ValueError``; ``function.__wrapped__`` is the
undecorated function. ``LIVER_CT_DEBUG=1`` brings back the original exception and its traceback.
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
