"""`Policy`: the class a policy extends; every method has a default, like the Rust trait."""

from . import defaults, settings


class Policy:
    """A placement and scaling policy.

    `class MyPolicy(Policy): pass` already behaves like the built-in default. Override what
    you want to change and call `defaults` from your override to adjust rather than rewrite.
    The host makes a fresh instance for every evaluation: `configure(settings)`, then exactly
    one of `scale` or `place`. Keep what `configure` parsed on `self`. Raise `PolicyError`
    to fail a call with a message.
    """

    reads = ("nodes",)
    """The optional parts of the snapshot `scale` reads: any of "nodes", "queued-items" and
    "offerings" (see `ecs_policy.reads`). The host sends only these; a part left out fails
    loudly when used. The default `scale` needs only the nodes. May be set in `configure`."""

    def configure(self, settings_json: str) -> None:
        """Validate and keep the settings (JSON text). Default: accept no settings."""
        settings.expect_none(settings_json)

    def scale(self, snapshot):
        """Launches and removals. Default: `defaults.scale`."""
        return defaults.scale(snapshot)

    def place(self, request, offerings, fleet):
        """Placements over `offerings`. Default: `defaults.place` (5-minute cooldown)."""
        return defaults.place(request, offerings, fleet)
