"""Data stage: sources, GeoTIFF I/O, the Zarr tile store and PyTorch loading."""
