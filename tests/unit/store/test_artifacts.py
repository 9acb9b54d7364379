import os
from pathlib import Path

import pytest

from cloche.errors import ArtifactNotFound, Conflict, HashMismatch, InvalidInput
from cloche.store.artifacts import ArtifactStore, combined_digest, sha256_file


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "root"), cache_dir=tmp_path / "cache")


def _folder(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "model.py").write_text("def predict(x):\n    return x\n")
    (src / "sub" / "w.bin").write_bytes(os.urandom(3000))
    return src


def test_put_hashes_every_file_and_stores_read_only(artifacts: ArtifactStore, tmp_path: Path):
    src = _folder(tmp_path)
    seen: list[tuple[int, int]] = []
    files = artifacts.put("models/m/1", src, progress=lambda d, t: seen.append((d, t)))
    assert set(files) == {"model.py", "sub/w.bin"}
    assert files["sub/w.bin"] == {"sha256": sha256_file(src / "sub" / "w.bin"), "size": 3000}
    stored = Path(artifacts.root) / "models/m/1/sub/w.bin"
    assert not os.access(stored, os.W_OK) or os.geteuid() == 0
    assert oct(stored.stat().st_mode & 0o777) == "0o400"  # read-only, the owner's only
    assert seen[-1][0] == seen[-1][1] == sum(f["size"] for f in files.values())


def test_put_refuses_to_overwrite_an_existing_key(artifacts: ArtifactStore, tmp_path: Path):
    src = _folder(tmp_path)
    artifacts.put("models/m/1", src)
    with pytest.raises(Conflict, match="immutable"):
        artifacts.put("models/m/1", src)


def test_local_dir_verifies_and_names_the_tampered_file(artifacts: ArtifactStore, tmp_path: Path):
    files = artifacts.put("models/m/1", _folder(tmp_path))
    folder = artifacts.local_dir("models/m/1", files)
    target = folder / "sub" / "w.bin"
    target.chmod(0o644)
    target.write_bytes(b"tampered")
    with pytest.raises(HashMismatch, match=r"sub/w\.bin"):
        artifacts.local_dir("models/m/1", files)


def test_missing_file_is_reported(artifacts: ArtifactStore, tmp_path: Path):
    files = artifacts.put("models/m/1", _folder(tmp_path))
    (Path(artifacts.root) / "models/m/1/model.py").unlink()
    with pytest.raises(ArtifactNotFound, match=r"model\.py"):
        artifacts.local_dir("models/m/1", files)


@pytest.mark.parametrize("key", ["../escape", "/abs/key", "a/../../b", "a\\b"])
def test_keys_cannot_leave_the_root(artifacts: ArtifactStore, tmp_path: Path, key: str):
    with pytest.raises(InvalidInput):
        artifacts.put(key, _folder(tmp_path))


def test_symlinks_in_uploads_are_refused(artifacts: ArtifactStore, tmp_path: Path):
    src = _folder(tmp_path)
    (src / "link").symlink_to("/etc/passwd")
    with pytest.raises(InvalidInput, match="symbolic link"):
        artifacts.put("models/m/1", src)


def test_remote_store_downloads_into_cache_and_verifies(tmp_path: Path):
    remote = ArtifactStore("memory://cloche-test-root", cache_dir=tmp_path / "cache")
    files = remote.put("models/m/1", _folder(tmp_path))
    folder = remote.local_dir("models/m/1", files)
    assert folder.is_relative_to(tmp_path / "cache")
    assert (folder / "model.py").read_text().startswith("def predict")
    remote.delete("models/m/1")
    assert not folder.exists()


def test_combined_digest_depends_on_paths_and_hashes():
    a = {"x": {"sha256": "1"}, "y": {"sha256": "2"}}
    b = {"x": {"sha256": "2"}, "y": {"sha256": "1"}}
    assert combined_digest(a) != combined_digest(b)
    assert combined_digest(a) == combined_digest(dict(reversed(list(a.items()))))
