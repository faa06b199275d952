"""Generated unit names and files through the parser, the submit checks and the
file adapter: only the documented errors, each naming the unit and the problem,
and nothing accepted that the agent could not write inside its two directories."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from fleetpy.api.validation import checked_unit_file
from fleetpy.model import names
from fleetpy.model.names import InvalidUnitName, quote
from fleetpy.model.unitfile import MAX_UNIT_SIZE, InvalidUnitFile, parse_unit, unit_hash
from fleetpy.model.xfleet import InvalidXFleet, check_xfleet
from fleetpy.systemd.base import check_unit_name
from fleetpy.systemd.files import UnitFileStore
from tests.fixtures.fuzz import REFUSAL_PREFIXES, unit_files, unit_names

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (files, links, dirs), relative."""
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


def assert_clear(error: ValueError, name: str) -> None:
    """A refusal: one line, says which unit (quoted as messages quote it) and why."""
    message = str(error)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(REFUSAL_PREFIXES), message
    assert quote(name) in message or quote(name, 40) in message, message
    assert not message.rstrip().endswith(":"), message  # a reason follows


@FAST
@given(name=unit_names(), data=unit_files())
@example(name="a.service", data="#" * (MAX_UNIT_SIZE + 1))
@example(name="../../etc/x.service", data="[Service]\nExecStart=/bin/true\n")
@example(name="a.service", data=b"[Service]\nExecStart=\xff\n")
@example(name="x.service\n", data="")  # the unknown type was not quoted: a 2-line error
def test_submit_checks_accept_or_refuse_clearly(name: str, data: str | bytes) -> None:
    try:
        unit, warnings = checked_unit_file(name, data)
    except (InvalidUnitName, InvalidUnitFile, InvalidXFleet) as e:
        event(type(e).__name__)
        assert_clear(e, name)
        return
    event("accepted")
    # accepted: a name the agent can write, a file systemd parses the same way
    assert names.is_valid(name) and not name.startswith(".")
    check_unit_name(name)
    assert len(unit.contents.encode()) <= MAX_UNIT_SIZE
    assert unit.hash == unit_hash(unit.contents)
    assert all("\n" not in w for w in warnings)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = UnitFileStore(root / "run/fleet/units", root / "run/systemd/system", ())
        store.write(name, unit.contents)
        assert tree(root) == {"run", "run/fleet", "run/systemd", "run/fleet/units",
                              "run/systemd/system", f"run/fleet/units/{name}",
                              f"run/systemd/system/{name}"}
        assert (root / "run/systemd/system" / name).read_bytes() == unit.contents.encode()
        assert store.hashes() == {name: unit.hash}
        store.remove(name)
        assert store.hashes() == {}


@FAST
@given(name=unit_names(), data=unit_files())
def test_parser_raises_only_its_own_error(name: str, data: str | bytes) -> None:
    try:
        parsed = parse_unit(name, data)
    except InvalidUnitFile as e:
        message = str(e)
        assert "\n" not in message and message.startswith(f"invalid unit file {quote(name)}: ")
        assert e.line is None or e.line >= 1
        return
    try:
        check_xfleet(parsed, name)
    except InvalidXFleet as e:
        assert e.problems and str(e).startswith(f"invalid [X-Fleet] in {quote(name)}: ")


LINE_ENDS = st.sampled_from(["\n", "\r\n", "\r"])
WORD = st.text(alphabet="abcXYZ019-_./%@= ", min_size=1, max_size=12).map(str.strip).filter(
    lambda w: w and not w.endswith("\\"))


@FAST
@given(
    options=st.lists(st.tuples(st.sampled_from(["Unit", "Service", "X-Fleet"]),
                               st.sampled_from(["Description", "ExecStart", "MachineOf"]),
                               WORD | st.just("")), min_size=1, max_size=8),
    end=LINE_ENDS,
    continued=st.booleans(),
)
def test_parser_reads_back_what_was_written(
    options: list[tuple[str, str, str]], end: str, continued: bool
) -> None:
    lines: list[str] = []
    for section, key, value in options:
        lines += [f"[{section}]", f"# {key} comment", f"{key}={value}"]
        if continued and value:  # "a \<end>b" is "a  b" once joined
            lines[-1] = f"{key}={value} \\"
            lines.append("  tail")
    parsed = parse_unit("x.service", end.join(lines) + end)
    got = [(o.section, o.key, o.value) for o in parsed.options]
    want = [(s, k, f"{v}    tail" if continued and v else v) for s, k, v in options]
    assert got == want


@FAST
@given(name=unit_names() | st.text(max_size=300), contents=st.text(max_size=50))
@example(name="..", contents="x")
@example(name="a/../../escape.service", contents="x")
@example(name="a" * 300 + ".service", contents="x")
@example(name="ok\x00.service", contents="x")
def test_file_adapter_never_writes_outside_its_dirs(name: str, contents: str) -> None:
    """The second line of defence: whatever reaches UnitFileStore, nothing lands outside
    units_dir/NAME and link_dir/NAME, and a name that is not a valid, visible unit name
    is refused by every operation."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "outside").mkdir()
        store = UnitFileStore(root / "fleet/units", root / "systemd/system", (root / "etc",))
        safe = names.is_valid(name) and not name.startswith(".")
        try:
            store.write(name, contents)
        except ValueError as e:
            assert not safe, e
            assert "refusing unsafe unit name" in str(e)
            for op in (store.remove, lambda n: store.foreign([n])):
                with pytest.raises(ValueError, match="refusing unsafe unit name"):
                    op(name)
            assert tree(root) == {"outside"}
            return
        except UnicodeEncodeError:
            assert not safe  # unreachable: a valid name is ASCII
            raise
        assert safe
        assert tree(root) == {"outside", "fleet", "systemd", "fleet/units", "systemd/system",
                              f"fleet/units/{name}", f"systemd/system/{name}"}
        assert store.foreign([name]) == {}
        store.remove(name)
        assert tree(root) == {"outside", "fleet", "systemd", "fleet/units", "systemd/system"}
