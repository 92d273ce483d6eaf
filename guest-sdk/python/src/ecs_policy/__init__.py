"""ecs-policy-sdk for Python: write ecs-provisioner placement and scaling policies.

A policy extends `Policy`, overrides what it changes and calls `defaults` to adjust; its entry
module exports it with `component.export`; `testing` runs it natively under pytest against
the same fixture files as `ecs-provisioner policy test`. See docs/policy-authoring.md.
"""

from . import defaults, log, reads, settings
from .errors import PolicyError
from .policy import Policy
from .types import *  # noqa: F401,F403 (the contract's types and their helpers)

CONTRACT_VERSION = "0.2.0"
"""The contract version this SDK builds policies for (the WIT package version)."""
