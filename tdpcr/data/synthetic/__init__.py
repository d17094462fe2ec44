"""The embedded default dataset: synthetic Sentinel-1/2 scenes with land cover and clouds.

A stand-in for SEN12MS-CR / LuojiaSET-OSFCR scenes that is learnable and physically plausible
rather than noise, so the whole workflow (tiling, cloud removal, segmentation, metrics) can run
and be tested without downloading anything. ``docs/synthetic-data.md`` gives every calibration
choice, its source, and the measured synthetic-vs-real statistics (:mod:`tdpcr.data.realism`).

* **Land cover** (7 classes, :data:`~tdpcr.core.specs.CLASS_NAMES`): landscape zones from the
  argmax of smooth multi-octave noise fields (sharp, organic boundaries), subdivided into
  agricultural parcels on a rotated grid with hedgerows, urban street grids, forest clearings,
  lakes, plus thin structures: roads (1-3 px lines of built-up), a meandering river with
  riparian trees, streams, and small building blocks.
* **Two acquisitions.** ``s2_clear`` is the clear-sky image of date t0 (the reconstruction
  target); ``s2_cloudy`` and ``s1`` are of date t1, 5-30 days later, as in SEN12MS-CR where
  S1 is paired with the cloudy image. Between the dates: phenology (a scene-wide green-up or
  senescence, strongest in crops and grass, plus per-parcel sowing-date scatter), field events
  on 3-10 % of parcels (harvest, sowing, mowing, ploughing), a small water-level change that
  moves lake shores by a pixel or two, a different sun position over the terrain, and a small
  per-band gain and offset (illumination and atmosphere). ``landcover`` describes t0; every
  change but the lake-shore fringe keeps the class, so it also holds at t1 there.
* **S2 L1C reflectance** per date: per class, a linear mix of two top-of-atmosphere endmember
  spectra (calibrated on the real samples in ``../shared/realdata`` and the literature, see the
  docs) driven by the per-parcel / per-region state, with within-class texture, illumination,
  terrain shading for that date's sun, sensor noise, and the 20 m / 60 m bands smoothed to their
  native resolution.
* **S1 backscatter** (dB) of date t1 from its own physical drivers, not from the optical state:
  a water-cloud model (Attema & Ulaby 1978) of vegetation volume over a soil surface whose
  backscatter follows soil moisture and roughness fields; vegetation volume only partly tied to
  the optical greenness (crop structure and biomass per parcel); double bounce for built-up;
  specular water roughened by a wind field; the incidence-angle trend across the swath and
  local incidence from terrain slopes. 4-look gamma speckle; clipped to [-35, 0] dB like
  SEN12MS-CR.
* **Clouds and shadows** from :mod:`tdpcr.data.synthetic.clouds` (satellite-cloud-generator
  shapes, cover controlled to a target); the mask flags what a cloud detector would (thin haze
  included above :data:`~tdpcr.data.synthetic.clouds.CLOUD_THRESHOLD`) with shadows apart, and
  the true opacity is kept.

All distances are in 10 m pixels and do not depend on the scene size, so a 5490x5490 benchmark
scene looks like a larger piece of the same kind of landscape as a 512x512 one.

The modules follow the generator's stages, in the order a scene is made:

* :mod:`~tdpcr.data.synthetic.fields`: pixel grid, noise fields, line geometry;
* :mod:`~tdpcr.data.synthetic.layout`: land cover, terrain, the change to date t1;
* :mod:`~tdpcr.data.synthetic.optical`: Sentinel-2 reflectance of each date;
* :mod:`~tdpcr.data.synthetic.sar`: Sentinel-1 backscatter of date t1;
* :mod:`~tdpcr.data.synthetic.clouds`: clouds, shadows, the atmosphere between dates;
* :mod:`~tdpcr.data.synthetic.scene`: one scene from the stages;
* :mod:`~tdpcr.data.synthetic.writing`: scene folders of GeoTIFFs, the manifest.
"""

from __future__ import annotations

from tdpcr.data.synthetic.fields import PIXEL_SIZE
from tdpcr.data.synthetic.scene import MIN_SIZE, generate_scene
from tdpcr.data.synthetic.writing import (
    GENERATOR,
    SCENE_FILES,
    ScenePlan,
    scene_plan,
    write_synthetic_scenes,
)

__all__ = [
    "GENERATOR",
    "MIN_SIZE",
    "PIXEL_SIZE",
    "SCENE_FILES",
    "ScenePlan",
    "generate_scene",
    "scene_plan",
    "write_synthetic_scenes",
]
