"""DICOM CT series for the liver CT bundle: find, check and read (:mod:`.read`); write and convert to gzip NIfTI
(:mod:`.write`).

Conventions used throughout:

- Volumes are indexed ``(i, j, k)`` with a nibabel-style RAS+ affine. ``i`` runs along a DICOM row (the column index,
  spacing ``PixelSpacing[1]``), ``j`` runs down the columns (the row index, spacing ``PixelSpacing[0]``) and ``k``
  runs across slices. DICOM patient coordinates are LPS, so the RAS affine is ``diag(-1, -1, 1, 1) @ lps_affine``.
- Reading sorts the slices by their position projected on the slice normal ``row_cosine x column_cosine``
  (ascending), so a volume read back always has ``k`` along that normal (a right-handed grid). A volume written on
  a left-handed grid (negative determinant, e.g. nibabel ``LAS`` or ``PLS``) reads back with ``k`` reversed and the
  matching affine: the same voxels in the same places.

The package gives the reader's names (``from scripts.lib import dicom; dicom.read_series``): inference
(``scripts.components.inputs``, ``scripts.lib.seg``) and the Deploy app need nothing else, so importing the package
never loads the writer. Writing is imported by name: ``from scripts.lib.dicom import write`` (``write.write_series``,
``write.convert``), as the ``dicom convert`` command and the tests do.

Command line: ``python -m scripts dicom convert|check`` (:mod:`scripts.commands.dicom`).
"""

from scripts import lazy_submodules
from scripts.lib.dicom import read
from scripts.lib.dicom.read import *  # noqa: F401,F403  the reader's public names, listed once in read.__all__

__all__ = list(read.__all__)

__getattr__ = lazy_submodules(__name__)
