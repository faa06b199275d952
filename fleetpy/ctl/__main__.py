"""``python -m fleetpy.ctl``: the same as the ``fleetctl`` script."""

from fleetpy.ctl.main import main

main(prog_name="fleetctl")
