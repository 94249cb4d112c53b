"""Archives are extracted into a temporary folder and renamed into place."""

import io
import tarfile

import pytest

from tkd import data as tkd_data


def _archive_with(path, files: dict[str, bytes], truncate: bool = False):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    raw = buffer.getvalue()
    path.write_bytes(raw[: len(raw) // 2] if truncate else raw)


def test_a_broken_archive_leaves_no_half_extracted_folder(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    _archive_with(archive, {f"cifar-10-batches-py/data_batch_{i}": b"x" * 200_000
                            for i in range(1, 4)}, truncate=True)
    with pytest.raises(ValueError, match="cannot extract"):
        tkd_data._extract(archive, tmp_path)
    assert not (tmp_path / "cifar-10-batches-py").exists()
    assert [p.name for p in tmp_path.iterdir()] == [archive.name]  # no temporary folder left


def test_a_good_archive_is_renamed_into_place(tmp_path):
    archive = tmp_path / "a.tar.gz"
    _archive_with(archive, {"folder/file": b"hello"})
    tkd_data._extract(archive, tmp_path)
    assert (tmp_path / "folder" / "file").read_bytes() == b"hello"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "folder"]
