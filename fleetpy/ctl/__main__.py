"""``python -m fleetpy.ctl``: the same as the ``fleetctl`` script."""

from fleetpy.ctl.main import run

run()
