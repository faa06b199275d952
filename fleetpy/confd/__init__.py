"""fleetpy-confd: confd's template resources on etcd v3, rendered with Jinja2.

resource.py (TOML resources, pure), render.py (keys, min_keys, Jinja2; pure),
debounce.py (wait min/max and reload retries; pure), apply.py (stage, check,
rename, reload), loop.py (watch + debounce loop, --onetime), cli.py.
"""
