"""Hostile Sentinel-2 SAFE products (folders and zips) given to ``tdpcr predict --optical``.

A band file off its band's grid, radiometric metadata that is implausible or not a number,
and metadata files too large to read are each refused in one line naming the file (and the
field), before any output is written and, for the large files, before they are read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tdpcr.cli import main
from tests import test_products
from tests.fake_products import ULX, ULY, FakeSafe, band_dn, make_safe, write_jp2, zip_safe
from tests.test_reliability import one_line_refusal

SIZE = test_products.SIZE
#: A tiny L1C model and S1 on the fake tile's grid (module-scoped fixtures).
l1c_checkpoint = test_products.l1c_checkpoint
s1_tif = test_products.s1_tif
#: Size of the large metadata members: big enough that reading one whole shows in the
#: process's peak memory, far over the cap; compressible, so the test zip stays small.
HUGE = 256 * 2**20
#: Peak-memory growth (bytes) allowed while a product with a huge member is refused.
MEMORY_SLACK = 64 * 2**20


@pytest.fixture(scope="module")
def l2a_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return test_products.tiny_checkpoint(tmp_path_factory.mktemp("ckpt2a") / "tdpcr-l2a", "L2A")


def files_under(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``folders`` with its size and modification time."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for folder in folders
        for p in folder.rglob("*")
        if p.is_file()
    }


def predict_refused(capfd, product: Path, checkpoint: Path, s1: Path, *expected: str) -> str:
    """Run predict on ``product``; assert one line naming ``expected``, nothing written."""
    out = product.parent / "pred"
    folders = (product.parent, checkpoint.parent, s1.parent)
    before = files_under(*folders)
    code = main([
        "predict", "--quiet", "--optical", str(product), "--sar", str(s1),
        "--checkpoint", str(checkpoint), "--out", str(out),
    ])  # fmt: skip
    line = one_line_refusal(code, capfd.readouterr().err, *expected)
    assert not out.exists()
    assert files_under(*folders) == before  # no partial output, nothing written elsewhere
    return line


def band_file(safe: Path, esa: str) -> Path:
    return next(safe.rglob(f"*_{esa}*.jp2"))


# --------------------------------------------------------------------------- band grids

#: Hostile band files for B02 (10 m): data, pixel size (m) and upper-left corner.
OFF_GRID = {
    "20m-pixels": (band_dn("B5", SIZE, 1000), 20, (ULX, ULY)),
    "cropped": (band_dn("B2", SIZE, 1000)[:-12], 10, (ULX, ULY)),
    "shifted": (band_dn("B2", SIZE, 1000), 10, (ULX + 60, ULY)),
}


@pytest.mark.parametrize(
    ("kind", "zipped"),
    [("20m-pixels", False), ("20m-pixels", True), ("cropped", False), ("shifted", False)],
)
def test_a_band_file_off_its_grid_is_refused_naming_it(
    tmp_path: Path, capfd, l1c_checkpoint: Path, s1_tif: Path, kind: str, zipped: bool
) -> None:
    safe = make_safe(tmp_path, size10=SIZE).path
    target = band_file(safe, "B02")
    data, res, origin = OFF_GRID[kind]
    target.unlink()
    write_jp2(target, data, res, origin)
    product = zip_safe(safe) if zipped else safe
    named = [str(product), target.relative_to(tmp_path).as_posix()] if zipped else [str(target)]
    predict_refused(
        capfd, product, l1c_checkpoint, s1_tif, *named,
        f"expected band B2 on its 10 m grid: {SIZE} x {SIZE} pixels of 10 m",
    )  # fmt: skip


def test_a_tile_geocoding_that_does_not_fit_the_10m_grid_is_refused(
    tmp_path: Path, capfd, l1c_checkpoint: Path, s1_tif: Path
) -> None:
    safe = make_safe(tmp_path, size10=SIZE).path
    tile_xml = next(safe.rglob("MTD_TL.xml"))
    half = SIZE // 2
    text = tile_xml.read_text()
    wrong = f'<Size resolution="20"><NROWS>{half - 6}</NROWS>'
    tile_xml.write_text(text.replace(f'<Size resolution="20"><NROWS>{half}</NROWS>', wrong))
    predict_refused(
        capfd, safe, l1c_checkpoint, s1_tif, str(tile_xml),
        f"{half - 6} x {half} pixels of 20 m",
        f"expected band B5 on its 20 m grid: {half} x {half}",
    )  # fmt: skip


# --------------------------------------------------------------------------- radiometry


def edit_product_xml(safe: Path, old: str, new: str) -> Path:
    mtd = next(safe.glob("MTD_MSIL*.xml"))
    text = mtd.read_text()
    assert old in text
    mtd.write_text(text.replace(old, new))
    return mtd


@pytest.mark.parametrize(
    ("level", "value", "zipped"), [("L1C", "-9000", False), ("L2A", "-500", True)]
)
def test_an_implausible_dn_offset_is_refused_naming_file_and_field(
    tmp_path: Path, capfd, l1c_checkpoint: Path, l2a_checkpoint: Path, s1_tif: Path,
    level: str, value: str, zipped: bool,
) -> None:  # fmt: skip
    safe = make_safe(tmp_path, level=level, size10=SIZE).path
    field = "RADIO_ADD_OFFSET" if level == "L1C" else "BOA_ADD_OFFSET"
    mtd = edit_product_xml(safe, f'{field} band_id="1">-1000<', f'{field} band_id="1">{value}<')
    product = zip_safe(safe) if zipped else safe
    named = [str(product), mtd.relative_to(tmp_path).as_posix()] if zipped else [str(mtd)]
    checkpoint = l1c_checkpoint if level == "L1C" else l2a_checkpoint
    predict_refused(
        capfd, product, checkpoint, s1_tif, *named,
        f"{field} of band B2 is {value}; expected 0 or -1000",
    )  # fmt: skip


#: Radiometric metadata that is no number or not Sentinel-2's: (old text, new text, named).
BAD_RADIOMETRY = {
    "offset-text": (
        'RADIO_ADD_OFFSET band_id="3">-1000<', 'RADIO_ADD_OFFSET band_id="3">n/a<',
        "RADIO_ADD_OFFSET of band B4 is 'n/a'; expected a number",
    ),
    "quantification-text": (
        ">10000</QUANTIFICATION_VALUE>", ">1e4x</QUANTIFICATION_VALUE>",
        "QUANTIFICATION_VALUE is '1e4x'; expected a number",
    ),
    "quantification-1000": (
        ">10000</QUANTIFICATION_VALUE>", ">1000</QUANTIFICATION_VALUE>",
        "QUANTIFICATION_VALUE is 1000; expected 10000",
    ),
    "nodata-text": (
        "<SPECIAL_VALUE_INDEX>0<", "<SPECIAL_VALUE_INDEX>zero<",
        "SPECIAL_VALUE_NODATA is 'zero'; expected a number",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_RADIOMETRY))
def test_radiometric_metadata_that_is_no_number_or_not_sentinel2s_is_one_line(
    tmp_path: Path, capfd, l1c_checkpoint: Path, s1_tif: Path, case: str
) -> None:
    old, new, expected = BAD_RADIOMETRY[case]
    safe = make_safe(tmp_path, size10=SIZE).path
    mtd = edit_product_xml(safe, old, new)
    predict_refused(capfd, safe, l1c_checkpoint, s1_tif, str(mtd), expected)


# --------------------------------------------------------------------------- metadata size

#: In a child: open the product and report the peak-memory growth and the refusal. The peak
#: is the process's VmHWM: ru_maxrss would start at the parent's (Linux keeps it across exec).
MEASURE = """
import json, re, sys
from contextlib import ExitStack
from pathlib import Path
from tdpcr.core.errors import InputDataError
from tdpcr.prediction.products import open_optical

def peak():
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024

before = peak()
try:
    with ExitStack() as stack:
        open_optical(Path(sys.argv[1]), stack)
    refusal = None
except InputDataError as err:
    refusal = str(err)
print(json.dumps({"grown": peak() - before, "refusal": refusal}))
"""


def opened_in_a_child(product: Path) -> dict:
    """Open ``product`` in a fresh interpreter, bounded in time; its memory and refusal."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("peak memory is read from /proc (Linux)")
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(product)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def huge_member_zip(safe: FakeSafe, member: str) -> tuple[Path, str]:
    """The SAFE as a zip whose ``member`` is its own text padded with HUGE bytes of spaces.

    Whitespace after the root element keeps the XML valid; deflated, the zip stays small.
    """
    folder = safe.path
    path, big = folder.with_suffix(".zip"), ""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = file.relative_to(folder.parent).as_posix()
            if file.name != member:
                archive.write(file, name)
                continue
            big = name
            with archive.open(name, "w", force_zip64=True) as stream:
                stream.write(file.read_bytes())
                chunk = b" " * 2**20
                for _ in range(HUGE // len(chunk)):
                    stream.write(chunk)
    assert big and path.stat().st_size < 8 * 2**20
    return path, big


@pytest.mark.parametrize("member", ["manifest.safe", "MTD_MSIL1C.xml", "MTD_TL.xml"])
def test_a_huge_metadata_member_of_a_zip_is_refused_before_it_is_read(
    tmp_path: Path, capfd, l1c_checkpoint: Path, s1_tif: Path, member: str
) -> None:
    product, big = huge_member_zip(make_safe(tmp_path, size10=SIZE), member)
    seen = opened_in_a_child(product)
    assert seen["grown"] < MEMORY_SLACK, seen
    assert seen["refusal"] and big in seen["refusal"], seen
    predict_refused(capfd, product, l1c_checkpoint, s1_tif, str(product), big, "at most 16 MB")


@pytest.mark.parametrize("member", ["manifest.safe", "MTD_MSIL1C.xml", "MTD_TL.xml"])
def test_a_huge_metadata_file_of_a_folder_is_refused_before_it_is_read(
    tmp_path: Path, capfd, l1c_checkpoint: Path, s1_tif: Path, member: str
) -> None:
    safe = make_safe(tmp_path, size10=SIZE).path
    big = next(safe.rglob(member))
    os.truncate(big, HUGE)  # sparse: its text then NUL bytes, nothing on disk
    seen = opened_in_a_child(safe)
    assert seen["grown"] < MEMORY_SLACK, seen
    assert seen["refusal"] and str(big) in seen["refusal"], seen
    predict_refused(capfd, safe, l1c_checkpoint, s1_tif, str(big), "at most 16 MB")


# --------------------------------------------------------------------------- special files


@pytest.mark.parametrize("member", ["MTD_TL.xml", "B02.jp2", "manifest.safe"])
def test_a_named_pipe_inside_a_safe_folder_is_refused_without_blocking(
    tmp_path: Path, l1c_checkpoint: Path, s1_tif: Path, member: str
) -> None:
    """Reading a FIFO blocks until something writes to it: no file of a SAFE may be one."""
    from tests.test_reliability_inputs import predict_args, run_bounded

    safe = make_safe(tmp_path / "products", size10=SIZE).path
    target = band_file(safe, "B02") if member == "B02.jp2" else next(safe.rglob(member))
    target.unlink()
    os.mkfifo(target)
    out = tmp_path / "pred"
    code, err, _ = run_bounded(predict_args(safe, s1_tif, l1c_checkpoint, out), 60)
    one_line_refusal(code, err, str(safe), str(target), "named pipe")
    assert not out.exists()


def test_a_named_pipe_among_a_scenes_files_is_refused_by_tile_without_blocking(
    tmp_path: Path,
) -> None:
    from tests.fakes import make_scenes
    from tests.test_reliability_inputs import run_bounded

    root = make_scenes(tmp_path / "scenes", n_scenes=2, height=64, width=64)
    fifo = root / "scene1" / "s1.tif"
    fifo.unlink()
    os.mkfifo(fifo)
    out = tmp_path / "tiles.zarr"
    args = ["tile", "--source", "scenes", "--root", root, "--out", out, "--patch-size", "32"]
    code, err, _ = run_bounded([*args, "--quiet"], 60)
    one_line_refusal(code, err, str(fifo), "named pipe")
    assert not out.exists()
