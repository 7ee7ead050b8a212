"""Clear errors for the people who run the bundle: one line naming the file and the problem, not a traceback.

The bundle runs under MONAI's runner (``python -m monai.bundle run ...``), which evaluates the configs' ``$``
expressions and wraps any ``Exception`` they raise in a ``RuntimeError("Failed to evaluate ...")``; the interpreter
then prints the whole chained traceback. The checks that configs call before any work starts (dataset check, split,
input listing, weights check) therefore go through :func:`exit_on_error`, which a config names as the component::

    split:
      _target_: scripts.lib.errors.exit_on_error
      function: $@scripts.lib.datalist.split
      datalist_file: "@datalist_file"

A ``ValueError`` or ``OSError`` (which
the library functions raise, naming the file and the problem) becomes :class:`InputError`, a ``SystemExit`` whose
message is ``error: <file>: <problem>``. ``SystemExit`` is not an ``Exception``, so it passes the runner untouched,
and the interpreter prints its message as the last line of the output and exits with status 1.

Library callers (tests, other modules) call the check functions directly and catch ``ValueError``/``OSError`` as
usual; code that calls :func:`exit_on_error` can catch :class:`InputError`.

Set the environment variable ``LIVER_CT_DEBUG=1`` to get the original exception and its traceback instead.
"""

from __future__ import annotations

import os

__all__ = ["DEBUG_ENV", "InputError", "debug_enabled", "exit_on_error", "one_line"]

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


def exit_on_error(function, *args, **kwargs):
    """Return ``function(*args, **kwargs)``; turn the ``ValueError``/``OSError`` it raises into :class:`InputError`.

    ``function`` may be given by keyword, as a config's ``_target_: scripts.lib.errors.exit_on_error`` passes it.

    With ``LIVER_CT_DEBUG=1`` the original exception propagates unchanged (with its traceback).
    """
    try:
        return function(*args, **kwargs)
    except (ValueError, OSError) as exc:
        if debug_enabled():
            raise
        raise InputError(str(exc)) from exc
