"""fleetpy-confd's pure parts: resources, key selection, min_keys, rendering, debounce."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetpy.confd.debounce import Debounce, Retry
from fleetpy.confd.render import RenderError, check_min_keys, render, select, under
from fleetpy.confd.resource import (
    ConfdError,
    Wait,
    check_command,
    parse_resource,
    parse_wait,
)

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
[template]
src = "t.tmpl"
dest = "/run/x/out.conf"
keys = ["/services/web", "/app/"]
check_cmd = "nginx -t -c {{.src}}"
reload_cmd = "true"
mode = "0640"
owner = "root"
min_keys = 2
wait = "200ms:2s"
"""


def test_a_resource_in_confds_form() -> None:
    res = parse_resource(GOOD, "r.toml")
    assert res.keys == ("/services/web", "/app")
    assert res.mode == 0o640 and res.owner == "root" and res.min_keys == 2
    assert res.wait == Wait(0.2, 2.0)
    assert check_command(res, "/run/x/.out.conf.ab c") == "nginx -t -c '/run/x/.out.conf.ab c'"


def test_prefixes_go_before_keys() -> None:
    text = GOOD.replace('min_keys = 2', 'min_keys = 2\nprefix = "/prod"')
    res = parse_resource(text, "r.toml", global_prefix="/site")
    assert res.keys == ("/site/prod/services/web", "/site/prod/app")
    assert res.base == "/site/prod"


@pytest.mark.parametrize(("change", "message"), [
    (("keys = [\"/services/web\", \"/app/\"]", "keys = []"), "keys must be a non-empty list"),
    (("dest = \"/run/x/out.conf\"", "dest = \"out.conf\""), "must be an absolute path"),
    (("{{.src}}", "/run/x/out.conf"), "check_cmd must name the staged file"),
    (("mode = \"0640\"", "mode = \"rw\""), "is not an octal number"),
    (("min_keys = 2", "min_keys = -1"), "min_keys must be a whole number"),
    (("wait = \"200ms:2s\"", "wait = \"2s:1s\""), "max (1s) is below min (2s)"),
    (("wait = \"200ms:2s\"", "wait = \"soon\""), "is not a duration"),
    (("mode = \"0640\"", "mdoe = \"0640\""), "unknown setting(s) ['mdoe']"),
    (("src = \"t.tmpl\"", ""), "src is missing"),
    (("[template]", "[templat]"), "no [template] table"),
    (("[template]", "[template"), "not valid TOML"),
])
def test_bad_resources_are_refused_naming_the_problem(
        change: tuple[str, str], message: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(ConfdError) as err:
        parse_resource(text, "bad.toml")
    assert str(err.value).startswith("bad.toml: ")
    assert message in str(err.value)


def test_wait_forms() -> None:
    assert parse_wait("1s") == Wait(1.0, 4.0)
    assert parse_wait({"min": "100ms", "max": 3}) == Wait(0.1, 3.0)
    assert parse_wait("0:0") == Wait(0.0, 0.0)


def test_keys_below_a_watched_key_only() -> None:
    assert under("/services/web/a", "/services/web")
    assert under("/services/web", "/services/web")
    assert not under("/services/webx", "/services/web")
    assert under("/anything", "/")
    res = parse_resource(GOOD.replace('prefix', 'x'), "r.toml")
    items = {"/services/web/b": b"2", "/services/web/a": b"1", "/services/webx": b"no",
             "/app": b"top", "/other": b"no"}
    assert select(items, res) == {"/app": "top", "/services/web/a": "1", "/services/web/b": "2"}


def test_templates_see_keys_without_the_prefix() -> None:
    res = parse_resource(GOOD.replace('min_keys = 2', 'prefix = "/p"'), "r.toml")
    assert select({"/p/services/web/a": b"1", "/services/web/b": b"2"}, res) == {
        "/services/web/a": "1"}


def test_a_value_that_is_not_text_is_a_render_error() -> None:
    res = parse_resource(GOOD, "r.toml")
    with pytest.raises(RenderError, match="/services/web/a is not UTF-8"):
        select({"/services/web/a": b"\xff"}, res)


def test_min_keys() -> None:
    res = parse_resource(GOOD, "r.toml")
    check_min_keys({"/app": "1", "/services/web/a": "2"}, res)
    with pytest.raises(RenderError, match=r"1 key.* min_keys is 2: keeping /run/x/out\.conf"):
        check_min_keys({"/app": "1"}, res)


VALUES = {"/services/web/8081": "10.0.0.1:8081", "/services/web/8082": "10.0.0.2:8082",
          "/services/web/old/x": "deep", "/app/name": "shop"}


def test_template_helpers() -> None:
    source = ("{% for e in gets('/services/web/*') %}{{ e.key | base }}={{ e.value }};"
              "{% endfor %}|{{ getvs('/services/web/*') | join(',') }}|{{ get('/app/name') }}|"
              "{{ getv('/nope', 'dflt') }}|{{ exists('/app/name') }}|{{ ls('/services/web') }}|"
              "{{ kv | length }}")
    assert render(source, VALUES) == (
        "8081=10.0.0.1:8081;8082=10.0.0.2:8082;|10.0.0.1:8081,10.0.0.2:8082|shop|dflt|True|"
        "['8081', '8082', 'old']|4")


@pytest.mark.parametrize(("source", "message"), [
    ("{{ get('/nope') }}", "key /nope does not exist"),
    ("{{ getv('/nope') }}", "no default given"),
    ("{{ typo }}", "'typo' is undefined"),
    ("{% for x in %}", "line 1:"),
    ("{{ 'a;b' | hostport }}", "'a;b' is not host:port"),
    ("{{ get('/app/name').__class__.__mro__ }}", "unsafe"),
])
def test_render_errors(source: str, message: str) -> None:
    with pytest.raises(RenderError, match=r"t\.tmpl: ") as err:
        render(source, VALUES, "t.tmpl")
    assert message in str(err.value)


def test_the_part3_template_lists_every_web_server() -> None:
    confd = ROOT / "unit-files" / "part3" / "confd"
    res = parse_resource((confd / "conf.d" / "nginx-lb.toml").read_text(), "nginx-lb.toml")
    values = select({"/services/web/8081": b"172.17.62.102:8081",
                     "/services/web/8082": b"172.17.62.103:8082"}, res)
    out = render((confd / "templates" / "nginx-lb.conf.tmpl").read_text(), values)
    servers = [line.split()[1] for line in out.splitlines() if line.strip().startswith("server 1")]
    assert servers == ["172.17.62.102:8081;", "172.17.62.103:8082;"]
    assert res.min_keys == 1 and res.wait is not None and res.wait.min <= 0.2


def test_debounce_a_burst_gives_one_render() -> None:
    d = Debounce(Wait(0.2, 1.0))
    assert d.due_at() is None and not d.due(100.0)
    d.change(10.0)
    assert d.due_at() == pytest.approx(10.2)
    d.change(10.1)  # each change restarts the min timer
    assert not d.due(10.25) and d.due(10.3)
    d.fired()
    assert not d.pending and not d.due(20.0)


def test_debounce_fires_by_max_under_steady_changes() -> None:
    d = Debounce(Wait(0.25, 1.0))
    t = 10.0
    while not d.due(t):
        d.change(t)
        t += 0.125  # below min: the min timer alone would never fire
    assert t == 11.0  # first change + max, though changes kept coming


def test_zero_wait_renders_at_once() -> None:
    d = Debounce(Wait(0.0, 0.0))
    d.change(5.0)
    assert d.due(5.0)


def test_a_failed_reload_is_retried_with_backoff_until_it_succeeds() -> None:
    r = Retry(initial=1.0, cap=4.0)
    assert not r.due(0.0)
    assert [r.failed(0.0) for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert not r.due(3.9) and r.due(4.0)  # never forgotten
    r.succeeded()
    assert r.at is None and r.failures == 0
