"""train.yaml's checks of a training dataset, as components: the library functions of :mod:`scripts.lib`, a bad
dataset stopping the run with one line ``error: <file>: <problem>`` (:func:`scripts.lib.errors.reports_input_errors`).

The library functions themselves raise ``ValueError``/``OSError`` for their Python callers (the ``check_dataset`` and
``datalist`` commands, tests); each component here has the library function's signature and documentation.
"""

from __future__ import annotations

from scripts.lib import check_dataset, datalist
from scripts.lib.errors import reports_input_errors

__all__ = ["assert_dataset_ok", "split"]

#: ``dataset_check``: every labelled case, before anything is cached (:func:`scripts.lib.check_dataset.assert_dataset_ok`).
assert_dataset_ok = reports_input_errors(check_dataset.assert_dataset_ok)
#: ``split``: the seeded fold, recorded in split.json (:func:`scripts.lib.datalist.split`).
split = reports_input_errors(datalist.split)
