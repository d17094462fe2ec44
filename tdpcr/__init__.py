"""tdpcr: joint cloud removal and land-cover segmentation from Sentinel-2 + Sentinel-1 (TDP-CR)."""

__version__ = "0.1.0"
