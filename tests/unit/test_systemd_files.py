"""Unit files on disk, unit object path decoding (no systemd needed)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from fleetpy.systemd import DbusUnitManager
from fleetpy.systemd.files import TMP_PREFIX, UnitFileStore, temporary_name
from fleetpy.systemd.protocol import decode_unit_path


def store(tmp_path: Path) -> UnitFileStore:
    return UnitFileStore(tmp_path / "run/fleet/units", tmp_path / "run/systemd/system")


def test_write_creates_file_and_link(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.write("hello.service", "[Service]\nExecStart=/bin/sleep 1000\n")
    f = s.units_dir / "hello.service"
    link = s.link_dir / "hello.service"
    assert f.read_text() == "[Service]\nExecStart=/bin/sleep 1000\n"
    assert link.is_symlink() and link.readlink() == f
    assert sorted(p.name for p in s.units_dir.iterdir()) == ["hello.service"]
    assert sorted(p.name for p in s.link_dir.iterdir()) == ["hello.service"]


def test_rewrite_replaces_contents_behind_fleets_own_link(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.write("a.service", "one")
    s.write("a.service", "two")
    assert (s.link_dir / "a.service").read_text() == "two"
    assert (s.link_dir / "a.service").readlink() == s.units_dir / "a.service"
    assert s.hashes() == {"a.service": hashlib.sha1(b"two").hexdigest()}


def test_hashes_skip_temporary_files_and_survive_a_missing_dir(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.hashes() == {}
    s.write("a.service", "x")
    s.write("b@1.service", "y\u00e9")
    (s.units_dir / ".c.service.tmp").write_text("partial")
    assert s.hashes() == {
        "a.service": hashlib.sha1(b"x").hexdigest(),
        "b@1.service": hashlib.sha1("y\u00e9".encode()).hexdigest(),
    }


def test_remove_is_idempotent_and_spares_foreign_files(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.write("a.service", "x")
    s.remove("a.service")
    s.remove("a.service")
    assert s.hashes() == {}
    assert not (s.link_dir / "a.service").exists()
    (s.link_dir / "admin.service").write_text("not ours")
    s.remove("admin.service")
    assert (s.link_dir / "admin.service").read_text() == "not ours"


def test_a_255_byte_name_is_written_linked_and_removed(tmp_path: Path) -> None:
    s = store(tmp_path)
    name = "n" * 247 + ".service"
    assert len(name.encode()) == 255
    s.write(name, "x")
    s.write(name, "y")  # a rewrite takes the same temporary path
    assert (s.link_dir / name).read_text() == "y"
    assert s.hashes() == {name: hashlib.sha1(b"y").hexdigest()}
    assert sorted(p.name for p in s.units_dir.iterdir()) == [name]
    assert sorted(p.name for p in s.link_dir.iterdir()) == [name]
    s.remove(name)
    assert list(s.units_dir.iterdir()) == [] and list(s.link_dir.iterdir()) == []


def test_temporary_names_are_short_hidden_and_fresh() -> None:
    names = {temporary_name() for _ in range(100)}
    assert len(names) == 100
    assert {len(n) for n in names} == {len(TMP_PREFIX) + 16}
    assert all(n.startswith(".fleet-tmp-") for n in names)


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    s = store(tmp_path)
    (s.units_dir / "a.service").mkdir(parents=True)
    (s.units_dir / "a.service" / "x").write_text("in the way")
    with pytest.raises(OSError):
        s.write("a.service", "x")
    assert sorted(p.name for p in s.units_dir.iterdir()) == ["a.service"]
    (s.link_dir / "b.service").mkdir(parents=True)
    (s.link_dir / "b.service" / "x").write_text("in the way")
    with pytest.raises(OSError):
        s.write("b.service", "x")
    assert sorted(p.name for p in s.link_dir.iterdir()) == ["b.service"]
    # what is in the way at the link is not fleet's: refused before anything is written
    assert sorted(p.name for p in s.units_dir.iterdir()) == ["a.service"]


@pytest.mark.parametrize("name", ["", ".hidden.service", "../x.service", "a/b.service", "a\0b"])
def test_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    s = store(tmp_path)
    with pytest.raises(ValueError):
        s.write(name, "x")
    with pytest.raises(ValueError):
        s.remove(name)
    assert not (tmp_path / "run").exists() or s.hashes() == {}


def test_manager_file_operations_need_no_worker(tmp_path: Path) -> None:
    m = DbusUnitManager(units_dir=tmp_path / "u", link_dir=tmp_path / "l")

    async def main() -> None:
        await m.write_unit("a.service", "x")
        assert m.loaded_files() == {"a.service": hashlib.sha1(b"x").hexdigest()}
        await m.remove_unit("a.service")
        assert m.loaded_files() == {}

    asyncio.run(main())


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/org/freedesktop/systemd1/unit/hello_2eservice", "hello.service"),
        ("/org/freedesktop/systemd1/unit/foo_405555_2eservice", "foo@5555.service"),
        ("/org/freedesktop/systemd1/unit/a_2db_2dc_2eslice", "a-b-c.slice"),
        ("/org/freedesktop/systemd1/unit/_2d_2eslice", "-.slice"),
        ("/org/freedesktop/systemd1/unit/x_5fy_2eservice", "x_y.service"),
        ("/org/freedesktop/systemd1/unit/", None),
        ("/org/freedesktop/systemd1/unit/bad_2", None),
        ("/org/freedesktop/systemd1/unit/bad_zz", None),
        ("/org/freedesktop/systemd1/unit/a/b", None),
        ("/org/freedesktop/systemd1/job/42", None),
        ("/org/freedesktop/systemd1", None),
    ],
)
def test_decode_unit_path(path: str, name: str | None) -> None:
    assert decode_unit_path(path) == name


def test_hashes_follow_every_rewrite_without_rereading_unchanged_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleetpy.systemd import files as files_mod
    from fleetpy.systemd.base import content_hash

    hashed: list[bytes] = []

    def counting(data: str | bytes) -> str:
        hashed.append(data if isinstance(data, bytes) else data.encode())
        return content_hash(data)

    monkeypatch.setattr(files_mod, "content_hash", counting)
    s = store(tmp_path)
    s.write("a.service", "one")
    s.write("b.service", "bee")
    assert s.hashes() == {"a.service": content_hash("one"), "b.service": content_hash("bee")}
    assert len(hashed) == 2
    s.write("a.service", "two")  # same size, at once: a new file all the same
    assert s.hashes() == {"a.service": content_hash("two"), "b.service": content_hash("bee")}
    assert hashed[2:] == [b"two"]  # b.service, unchanged, was not read again
    s.remove("a.service")
    assert s.hashes() == {"b.service": content_hash("bee")}
    assert len(hashed) == 3
