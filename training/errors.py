"""Failures the user can act on; `varyflow` prints them as one line."""


class TrainingError(Exception):
    """A bad configuration, a missing checkpoint or an unusable input — not a bug."""
