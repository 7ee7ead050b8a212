"""MONAI's ThreadDataLoader, but an error raised while a batch is made stops the run instead of ending the epoch.

MONAI's ``ThreadBuffer`` makes batches in a background thread; when a transform raises there, the thread dies, the
exception is printed by Python's thread hook, and the loop that yields the batches simply stops: the epoch ends early
and training goes on with the next one. Under torchrun the other ranks then wait for the failed rank's gradients until
the process-group timeout (tests/test_distributed.py: a rank that raises must end the whole job). ``ThreadDataLoader``
here keeps the exception and raises it in the training loop, as a ``DataLoader`` does.
"""

from __future__ import annotations

from monai.data import ThreadBuffer
from monai.data import ThreadDataLoader as MonaiThreadDataLoader
from torch.utils.data import DataLoader


class RaisingThreadBuffer(ThreadBuffer):
    """``ThreadBuffer`` that re-raises, in the consuming thread, what the producing thread raised."""

    def enqueue_values(self):
        try:
            super().enqueue_values()
        except BaseException as e:  # noqa: B036 - handed to the consuming thread, which raises it
            self.error = e

    def __iter__(self):
        self.error = None
        yield from super().__iter__()
        if self.error is not None:
            raise self.error


class ThreadDataLoader(MonaiThreadDataLoader):
    """MONAI's ``ThreadDataLoader`` (same arguments) whose batches come through ``RaisingThreadBuffer``."""

    def __iter__(self):
        for batch in RaisingThreadBuffer(DataLoader.__iter__(self), self.buffer_size, self.buffer_timeout):
            for _ in range(self.repeats):
                yield batch
