"""``rise-data check``: every chunk decoded by default, --fast for structure, --json, exit codes; readers
name the array and chunk of a damaged chunk in one line; pack keeps only the store's own files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rise_data.cli import app
from rise_data.store import CorruptStoreError, StoreError, open_store
from rise_data.store.lock import store_lock

runner = CliRunner()


def chunk_file(store: str, name: str) -> Path:
    """The first chunk file of array ``name`` (flat keys c.0.0 or nested c/0/0)."""
    return next(p for p in sorted((Path(store) / name).rglob("*")) if p.is_file() and p.name != "zarr.json")


def cli(*args: str) -> subprocess.CompletedProcess:
    """The installed command line, in a real process (exit codes as a shell sees them)."""
    code = "import sys; from rise_data.cli import app; sys.argv[0] = 'rise-data'; app()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_default_check_decodes_every_chunk(copy):
    assert runner.invoke(app, ["check", copy]).exit_code == 0
    chunk_file(copy, "frame").write_bytes(os.urandom(1000))  # random bytes where a frame chunk was
    fast = runner.invoke(app, ["check", copy, "--fast"])
    assert fast.exit_code == 0 and "structure only" in fast.stdout
    full = cli("check", copy)  # invalid data exits 1 as a shell sees it
    assert full.returncode == 1, full.stderr
    assert "array 'frame' chunk 0" in full.stderr and "INVALID" in full.stderr
    report = json.loads(runner.invoke(app, ["check", copy, "--json"]).stdout)
    assert report["valid"] is False and report["mode"] == "full" and report["errors"] == 1
    assert report["problems"][0]["where"] == "frame"


def test_readers_name_array_and_chunk(copy):
    chunk_file(copy, "frame").write_bytes(os.urandom(1000))
    store = open_store(copy)
    with pytest.raises(CorruptStoreError, match=r"array 'frame' chunk 0 \(rows 0-.*rise-data check"):
        store.read("frame", 0, 10)
    with pytest.raises(CorruptStoreError, match="chunk 0"):
        store.array("frame")[3]
    assert store.read("obs", 0, 10).shape == (10, 84, 84)  # other arrays still read
    # in process: test_errors runs encode in a real process and checks its one stderr line
    out = runner.invoke(app, ["encode", copy, "--encoder", "downsample", "--quiet"])
    err = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.exit_code == 1 and len(err) == 1 and "array 'frame' chunk 0" in err[0], out.stderr


def test_truncated_metadata_is_named(copy):
    meta = Path(copy) / "reward" / "zarr.json"
    meta.write_text(meta.read_text()[:20])
    out = cli("info", copy)
    assert out.returncode == 1 and str(meta) in out.stderr and out.stderr.count("\n") == 1, out.stderr
    out = runner.invoke(app, ["check", copy])
    assert out.exit_code == 1 and str(meta) in out.stderr


def test_sealed_checksums_verified_in_the_same_pass(copy):
    assert runner.invoke(app, ["seal", copy, "-q"]).exit_code == 0
    assert "checksums verified" in runner.invoke(app, ["check", copy]).output
    import zarr

    g = zarr.open_group(copy, mode="r+")
    g["reward"][3] = 9.0  # decodes fine; only the checksum (and the episode return) can tell
    report = json.loads(runner.invoke(app, ["check", copy, "--json"]).output)
    assert not report["valid"] and any("sha256" in p["message"] for p in report["problems"])


def test_quiet_prints_nothing_on_success(copy):
    out = cli("check", copy, "-q")
    assert out.returncode == 0 and out.stdout == "" and out.stderr == ""


def test_exit_code_of_a_usage_error(tmp_path):
    out = cli("check", str(tmp_path / "missing.zarr"))
    assert out.returncode == 1 and "does not exist" in out.stderr  # check: an unreadable store is invalid
    out = cli("info", str(tmp_path / "missing.zarr"))
    assert out.returncode == 2 and out.stderr.startswith("error:") and out.stderr.count("\n") == 1
    assert cli("check").returncode == 2  # click's own usage error
    assert "Exit codes: 0 ok, 1 invalid data, 2 usage error, 3" in runner.invoke(app, ["--help"]).stdout
    check_help = runner.invoke(app, ["check", "--help"]).stdout
    assert "--json" in check_help and "<bool>" not in check_help


def test_pack_only_the_store_own_files(copy, tmp_path):
    (Path(copy) / "notes.txt").write_text("not data")
    (Path(copy) / "obs" / "c.0.0.0.1234.partial").write_bytes(b"temp")
    with store_lock(copy, "test"):  # a held writer lock: its file must not be packed
        out = runner.invoke(app, ["pack", copy, str(tmp_path / "a.zip")])
    assert out.exit_code == 0 and "left out 1 files" in out.output and "notes.txt" in out.output
    names = zipfile.ZipFile(tmp_path / "a.zip").namelist()
    assert not [n for n in names if ".rise" in n or "partial" in n or "notes" in n]
    assert runner.invoke(app, ["check", str(tmp_path / "a.zip")]).exit_code == 0
    os.symlink("/etc/hostname", Path(copy) / "obs" / "c.99.0.0")
    out = runner.invoke(app, ["pack", copy, str(tmp_path / "b.zip")])
    assert out.exit_code == 2 and "symbolic link" in out.output and not (tmp_path / "b.zip").exists()
    assert not list(tmp_path.glob("b.zip*"))


def test_zip_members_that_escape_are_refused(copy, tmp_path):
    good = tmp_path / "good.zip"
    assert runner.invoke(app, ["pack", copy, str(good), "-q"]).exit_code == 0
    for bad_name, evil in (("dots.zip", "../../etc/evil"), ("abs.zip", "/etc/evil")):
        bad = tmp_path / bad_name
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as z:
            for n in src.namelist():
                z.writestr(n, src.read(n))
            z.writestr(evil, "x")
        with pytest.raises(StoreError, match="escapes the store folder"):
            open_store(str(bad))
        out = runner.invoke(app, ["info", str(bad)])
        assert out.exit_code == 1 and "escapes" in out.output
