"""The libraries behind the components and the commands: the phantom generator, DICOM reading and writing, DICOM SEG,
datalists and dataset checks, pictures, metrics, file writing and the one-line errors.

They import only from each other (and from the base :mod:`scripts`), never from the components, the commands or the
Deploy app.
"""

from scripts import lazy_submodules

__getattr__ = lazy_submodules(__name__)
