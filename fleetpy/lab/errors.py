"""The one exception the lab raises for anything a user can fix."""


class LabError(Exception):
    """A one-line message saying what is wrong and how to fix it."""
