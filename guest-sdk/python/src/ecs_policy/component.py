"""`export(MyPolicy)`: the class componentize-py exports as the component's `policy`.

The policy's entry module (the one given to `componentize-py componentize`) says

    from ecs_policy.component import export
    from my_policy import MyPolicy
    Policy = export(MyPolicy)

The configured policy lives in a module global between `configure` and `scale`/`place`: the
host makes a fresh component instance for every evaluation, so nothing outlives one. If
`configure` failed, `scale` and `place` fail with its error rather than run on defaults.
"""

from . import reads
from ._wit import NATIVE, Err, host
from .errors import PolicyError


def export(policy_class):
    """The `wit_world.exports.Policy` implementation that runs `policy_class`."""
    from wit_world import exports

    state = {"policy": None, "error": None, "reads": None}

    def configured():
        if state["policy"] is None and state["error"] is None:
            _configure("{}")
        if state["error"] is not None:
            raise Err(f"the policy's settings were rejected: {state['error']}")
        return state["policy"]

    def _configure(text):
        policy = policy_class()
        try:
            policy.configure(text)
            parts = reads.checked(policy.reads)
        except PolicyError as e:
            state["policy"], state["error"] = None, e.message
            raise Err(e.message) from None
        # Only the declared parts are sent: lifting records into objects is the cost.
        if parts != frozenset(reads.PARTS) and not NATIVE:
            host.declare_reads(reads.flags(parts))
        state["policy"], state["error"], state["reads"] = policy, None, parts

    def guarded(call):
        try:
            return call()
        except PolicyError as e:
            raise Err(e.message) from None

    class Policy(exports.Policy):
        def configure(self, settings: str) -> None:
            _configure(settings)

        def scale(self, snapshot):
            p = configured()
            return guarded(lambda: p.scale(reads.mark(snapshot, state["reads"])))

        def place(self, request, offerings, fleet):
            p = configured()
            return guarded(lambda: p.place(request, offerings, fleet))

    return Policy
