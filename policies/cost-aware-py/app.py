"""The component's entry module: `componentize-py ... componentize app`."""

from ecs_policy.component import export

from cost_aware import CostAware

Policy = export(CostAware)
