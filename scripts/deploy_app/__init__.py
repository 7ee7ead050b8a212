"""A MONAI Deploy application: liver segmentation of a CT series in a DICOM study, written back as DICOM SEG.

Run it with a TorchScript export of the bundle, from the bundle root (it uses the bundle's ``scripts`` package), or
from any folder as ``python path/to/bundle/scripts deploy_app ...``::

    python -m monai.bundle ckpt_export network_def --filepath models/model.ts --ckpt_file models/model.pt \\
        --meta_file configs/metadata.json --config_file configs/inference.yaml
    python -m scripts deploy_app -i DICOM_STUDY_DIR -o OUT_DIR -m models/model.ts

``python -m scripts.deploy_app`` runs the same command line (:mod:`scripts.deploy_app.__main__`, whose ``main`` a
MONAI Application Package calls).

The pipeline, built with the MONAI Deploy App SDK 4.x (Holoscan operators):

1. :class:`~scripts.deploy_app.operators.CTSeriesSelectorOperator` finds every series under the input folder and picks
   the CT series to segment. It goes by Modality, SOP class, ImageType (localizers are skipped) and the slice
   geometry (a series with a missing slice is unusable), never by StudyDescription, SeriesDescription or
   SeriesNumber, which anonymisation often blanks. A series whose Study, Series, SOP Instance or Frame of Reference
   UIDs are blank or absent is not used either: the SEG must reference its source by them, and made-up UIDs would
   reference images that do not exist (the bundle's own inference segments such a series into NIfTI). Every series
   it does not use is reported by name with the reason.
2. :class:`~scripts.deploy_app.operators.SeriesToVolumeOperator` reads the series (every transfer syntax
   docs/dicom.md lists) into a volume in Hounsfield units with its RAS affine.
3. The SDK's ``MonaiBundleInferenceOperator`` runs the bundle inside ``model.ts``: the inference config embedded at
   export time (preprocessing, sliding-window inferer, postprocessing; LoadImage and SaveImage dropped) and the
   TorchScript network, on the GPU when CUDA is available, else on the CPU.
4. :class:`~scripts.deploy_app.operators.SegmentationWriterOperator` writes a DICOM Segmentation (``scripts.lib.seg``, the
   writer of inference's ``--output_format seg`` too) (one frame per
   source slice, segment "Liver", the source's Frame of Reference, referencing every source instance) and the same
   mask as gzip NIfTI on the series' grid.

Importing this package imports nothing heavy; the SDK loads when the application is built.
"""

__all__ = ["app", "operators"]
