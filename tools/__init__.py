"""Developer tools of the liver_ct_segmentation repository: not part of the bundle (not in its zip).

python -m tools.benchmark --reference_dir ../shared/reference/spleen_ct_segmentation
"""
