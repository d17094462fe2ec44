"""The STAC Item of a prediction (``item.json``), built with pystac.

It describes the outputs as a catalogue would: the footprint (EPSG:4326) and the projection
(``proj:code``, ``proj:shape``, ``proj:transform``); per asset the raster extension (data type,
nodata, scale / offset, resolution), eo bands (name, common name, wavelengths) on
``cloudfree.tif`` and the classification extension (class values, names, colours from
:mod:`tdpcr.core.specs`) on ``landcover.tif``; the processing extension (lineage, software,
time) and ``tdpcr:*`` properties (model, variant, checkpoint, config hash, window, S1 units,
the S2 DN offset removed); ``derived_from`` links to the inputs (the STAC Items themselves
when the inputs were STAC Items). Asset hrefs are relative, so the folder can be moved.

``prediction.json`` stays beside it as the run's record (timings, device, accumulator): the
Item is what other tools read, ``prediction.json`` what tdpcr's benchmarks and tests read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rasterio.warp import transform_geom

from tdpcr import __version__
from tdpcr.core.io import open_atomic
from tdpcr.core.specs import (
    CLASS_NAMES,
    IGNORE_INDEX,
    LANDCOVER_COLORS,
    S2_BAND_INFO,
    quality_description,
)

if TYPE_CHECKING:
    from tdpcr.prediction.inputs import OpenInputs

#: The processing extension (not modelled by pystac: its fields are written as properties).
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"


@dataclass(frozen=True)
class ItemModel:
    """What the Item says about the model that made the outputs.

    Plain values, so this module needs nothing of the engine (the engine fills it from its
    ``Predictor``, see :meth:`tdpcr.prediction.engine.Predictor.item_model`).

    Attributes:
        name: architecture (``tdpcr``, ``dsen2cr``).
        variant: trained variant (``tdpcr-full``), or '' for a custom model.
        checkpoint: the checkpoint folder or MLflow URI it was loaded from ('' if none).
        config_hash: hash of the training config.
        s2_bands: Sentinel-2 bands in the model's order.
        s2_level: processing level the model was trained on (``L1C``).
        num_classes: land-cover classes of its head (None without a head).
        prompt_channels: prompt channels (None for models without a prompt).
        quality_names: bands of ``quality.tif``.
    """

    name: str
    variant: str
    checkpoint: str
    config_hash: str
    s2_bands: tuple[str, ...]
    s2_level: str
    num_classes: int | None
    prompt_channels: int | None
    quality_names: tuple[str, ...]


def _footprint(inputs: OpenInputs, points_per_edge: int = 11) -> dict[str, Any]:
    """The grid's outline in EPSG:4326; edges densified (straight in UTM, curved in lon / lat)."""
    grid = inputs.grid
    t = grid.transform
    x0, y0 = t.c, t.f
    x1, y1 = t.c + t.a * grid.width, t.f + t.e * grid.height
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
    ring = []
    for (ax, ay), (bx, by) in zip(corners, corners[1:], strict=False):
        for i in range(points_per_edge):
            f = i / points_per_edge
            ring.append([ax + f * (bx - ax), ay + f * (by - ay)])
    ring.append(ring[0])
    polygon = {"type": "Polygon", "coordinates": [ring]}
    return transform_geom(grid.crs, "EPSG:4326", polygon, antimeridian_cutting=True, precision=7)


def _bbox(geometry: dict[str, Any]) -> list[float]:
    coords = geometry["coordinates"]
    points = (
        [p for ring in coords for p in ring]
        if geometry["type"] == "Polygon"
        else [p for polygon in coords for ring in polygon for p in ring]
    )
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return [min(xs), min(ys), max(xs), max(ys)]


def _when(inputs: OpenInputs) -> datetime:
    """Acquisition time of the optical input when it says, else now (the prediction time)."""
    text = inputs.optical.datetime if inputs.optical is not None else None
    if text:
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime.now(UTC)


def _resolved(path: str) -> str:
    return str(Path(path).resolve()) if path else ""


def _hex(rgba: tuple[int, int, int, int]) -> str:
    return "".join(f"{v:02X}" for v in rgba[:3])


def build_item(
    inputs: OpenInputs,
    model: ItemModel,
    window: int,
    overlap: int,
    optical: str,
    files: list[str],
) -> Any:
    """The pystac Item of a prediction whose outputs ``files`` are in one folder.

    ``window`` and ``overlap`` are the prediction's windows (pixels) and ``optical`` the
    optical input as given (its name is the Item's id when the product has no id).
    """
    import pystac
    from pystac.extensions.classification import Classification, ClassificationExtension
    from pystac.extensions.eo import Band, EOExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension

    from tdpcr.prediction.writers import (
        CLOUDFREE_NODATA,
        LANDCOVER_NODATA,
        REFLECTANCE_OFFSET,
        REFLECTANCE_SCALE,
    )

    grid = inputs.grid
    geometry = _footprint(inputs)
    s2, s1 = inputs.optical, inputs.sar
    source_id = s2.product_id if s2 is not None else Path(optical).stem
    now = datetime.now(UTC)
    properties: dict[str, Any] = {
        "title": f"TDP-CR cloud-free image and land cover of {source_id}",
        "constellation": "sentinel-2",
        "gsd": abs(grid.transform.a),
        "processing:level": "L2",
        "processing:lineage": (
            f"Cloud removal{' and land-cover segmentation' if model.num_classes else ''} "
            f"by {model.name} ({model.variant or 'custom'}) from cloudy "
            f"Sentinel-2 {s2.level if s2 and s2.level else ''} {source_id} and Sentinel-1 "
            f"{s1.product_id if s1 else ''} ({s1.units if s1 else ''}), "
            f"windows {window} px blended over {overlap} px"
        ).replace("  ", " "),
        "processing:software": {"tdpcr": __version__},
        "processing:datetime": now.isoformat().replace("+00:00", "Z"),
        "tdpcr:model": model.name,
        "tdpcr:variant": model.variant,
        "tdpcr:checkpoint": str(Path(model.checkpoint).resolve()) if model.checkpoint else "",
        "tdpcr:config_hash": model.config_hash,
        "tdpcr:s2_bands": list(model.s2_bands),
        "tdpcr:s2_level": model.s2_level,
        "tdpcr:s2_dn_offset": [int(v) for v in inputs.s2_dn_offset],
        "tdpcr:s1_units": s1.units if s1 else None,
        "tdpcr:window": window,
        "tdpcr:overlap": overlap,
    }
    item = pystac.Item(
        id=f"{source_id}_tdpcr",
        geometry=geometry,
        bbox=_bbox(geometry),
        datetime=_when(inputs),
        properties=properties,
    )
    item.stac_extensions.append(PROCESSING_SCHEMA)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = grid.crs.to_epsg()
    if epsg is not None:
        proj.code = f"EPSG:{epsg}"
    else:
        proj.code = None
        proj.wkt2 = grid.crs.to_wkt()
    proj.shape = [grid.height, grid.width]
    proj.transform = list(grid.transform)[:6]
    EOExtension.add_to(item)
    RasterExtension.add_to(item)
    res = abs(grid.transform.a)

    def add(name: str, title: str, roles: list[str]) -> pystac.Asset:
        asset = pystac.Asset(f"./{name}", title=title, media_type=pystac.MediaType.COG, roles=roles)
        item.add_asset(Path(name).stem, asset)
        return asset

    if "cloudfree.tif" in files:
        asset = add("cloudfree.tif", "Cloud-free Sentinel-2 reflectance", ["data", "reflectance"])
        bands = model.s2_bands
        EOExtension.ext(asset).bands = [
            Band.create(
                name=b,
                common_name=S2_BAND_INFO[b].common_name,
                center_wavelength=S2_BAND_INFO[b].center_um,
                full_width_half_max=S2_BAND_INFO[b].fwhm_um,
            )
            for b in bands
        ]
        RasterExtension.ext(asset).bands = [
            RasterBand.create(
                nodata=CLOUDFREE_NODATA,
                data_type=DataType.UINT16,
                scale=REFLECTANCE_SCALE,
                offset=REFLECTANCE_OFFSET,
                spatial_resolution=res,
            )  # fmt: skip
            for _ in bands
        ]
    if "landcover.tif" in files:
        asset = add("landcover.tif", "Land cover", ["data", "classification"])
        RasterExtension.ext(asset).bands = [
            RasterBand.create(nodata=LANDCOVER_NODATA, data_type=DataType.UINT8,
                              spatial_resolution=res)
        ]  # fmt: skip
        classes = [
            Classification.create(value=i, name=name.replace("-", "_"), description=name,
                                  color_hint=_hex(LANDCOVER_COLORS[i]))
            for i, name in enumerate(CLASS_NAMES[: model.num_classes or 0])
        ]  # fmt: skip
        classes.append(
            Classification.create(value=IGNORE_INDEX, name="no_data", description="no data",
                                  nodata=True)
        )  # fmt: skip
        ClassificationExtension.ext(asset, add_if_missing=True).classes = classes
    if "quality.tif" in files:
        asset = add("quality.tif", "Per-pixel quality (model's own)", ["data", "quality"])
        names = model.quality_names
        asset.description = "; ".join(f"band {i + 1} {n}: {quality_description(n)}"
                                      for i, n in enumerate(names))  # fmt: skip
        RasterExtension.ext(asset).bands = [
            RasterBand.create(nodata="nan", data_type=DataType.FLOAT32, spatial_resolution=res)
            for _ in names
        ]
    if "prompt.tif" in files:
        asset = add("prompt.tif", "TDP-CR prompt channels", ["data"])
        RasterExtension.ext(asset).bands = [
            RasterBand.create(nodata="nan", data_type=DataType.FLOAT32, spatial_resolution=res)
            for _ in range(model.prompt_channels or 0)
        ]
    item.add_asset(
        "prediction",
        pystac.Asset("./prediction.json", title="tdpcr run record",
                     media_type=pystac.MediaType.JSON, roles=["metadata"]),
    )  # fmt: skip
    for product in (s2, s1):
        if product is None:
            continue
        for source in product.sources:
            media = pystac.MediaType.JSON if product.kind == "stac" else None
            href = source if "://" in source else str(Path(source).resolve())
            item.add_link(
                pystac.Link("derived_from", href, media_type=media, title=product.product_id)
            )
    return item


def write_item(
    folder: Path,
    inputs: OpenInputs,
    model: ItemModel,
    window: int,
    overlap: int,
    optical: str,
    files: list[str],
) -> Path:
    """Write ``folder/item.json`` (atomically) for the outputs ``files``; see :func:`build_item`."""
    import json

    item = build_item(inputs, model, window, overlap, optical, files)
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    path = Path(folder) / "item.json"
    with open_atomic(path) as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    return path
