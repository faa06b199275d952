"""The API's limits on one request, and what fleetctl sends per request (well within).

Constants only, so that fleetctl's client can know its batch sizes without
importing the unit-file model (fleetpy.api.validation applies the limits).
"""

MAX_REQUEST_BYTES = 16 * 1024 * 1024
MAX_UNITS_PER_CALL = 5000
MAX_ID_BYTES = 255
CLIENT_BATCH = 1000
CLIENT_BATCH_BYTES = 4 * 1024 * 1024
MAX_DETAIL = 1000  # characters of an error message sent back (a huge name is cut)
