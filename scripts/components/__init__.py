"""The components the configs instantiate: ``_target_: scripts.components.<module>.<name>``.

The checks that configs run before any work starts (inputs, weights, datasets, settings) report a bad input in the
one-line form themselves (:func:`scripts.lib.errors.reports_input_errors`), so a config names what it builds. They
import from :mod:`scripts.lib` and from each other, never from the commands or the Deploy app.
"""

from scripts import lazy_submodules

__getattr__ = lazy_submodules(__name__)
