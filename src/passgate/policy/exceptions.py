from __future__ import annotations


class PolicyError(Exception):
    pass


class InvalidPolicySet(PolicyError):
    """A draft that does not compile. `location` names the part (e.g. policies[1].conditions[0].field)."""

    def __init__(self, location: str, message: str) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location
        self.message = message


class NoActiveVersion(PolicyError):
    def __init__(self, event_type: str) -> None:
        super().__init__(f"no published policy set for {event_type}")
        self.event_type = event_type


class VersionNotFound(PolicyError):
    def __init__(self, version_name: str) -> None:
        super().__init__(f"no version named {version_name}")
        self.version_name = version_name
