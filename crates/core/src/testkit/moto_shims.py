# Shims applied in the emulator's process before it starts (the tests'
# launcher in moto.rs and scripts/bench-reconcile): two for gaps in moto's
# CloudFormation that paddock's nested stacks meet, and one for its ECS.
# 1. `!GetAtt Child.Outputs.Name` of a nested stack: moto splits the short
#    form at every dot and its Stack model answers no attributes; here the
#    name is rejoined and the child's output returned.
# 2. Outputs of resource types moto's CloudFormation does not implement
#    (Cognito, Secrets Manager) are dropped, so a parent passing them on
#    misses a parameter; here such an output reads "moto-skipped-<Name>".
# 3. moto gives every ECS container instance 4 vCPU and 7.3 GiB, less than
#    any GPU instance type: here they are sized as a g5.12xlarge (48 vCPU,
#    192 GiB), so EC2 (GPU) tasks can be placed.
import moto.cloudformation.models as _cfn_models
import moto.cloudformation.parsing as _cfn_parsing
import moto.ecs.models as _ecs_models


def _nested_output(self, name):
    if name.startswith("Outputs."):
        key = name.split(".", 1)[1]
        out = self.output_map[key]
        if out is not None and out.value is not None:
            return out.value
        return "moto-skipped-" + key
    return None


_cfn_models.Stack.get_cfn_attribute = _nested_output
_clean_json = _cfn_parsing.clean_json


def _rejoined_get_att(resource_json, resources_map):
    if isinstance(resource_json, dict) and "Fn::GetAtt" in resource_json:
        g = resource_json["Fn::GetAtt"]
        if isinstance(g, list) and len(g) > 2:
            resource_json = {"Fn::GetAtt": [g[0], ".".join(g[1:])]}
    return _clean_json(resource_json, resources_map)


_cfn_parsing.clean_json = _rejoined_get_att


_container_instance_init = _ecs_models.ContainerInstance.__init__


def _g5_12xlarge(self, *args, **kwargs):
    _container_instance_init(self, *args, **kwargs)
    for resources in (self.registered_resources, self.remaining_resources):
        for r in resources:
            if r["name"] == "CPU":
                r["integerValue"] = 48 * 1024
            elif r["name"] == "MEMORY":
                r["integerValue"] = 192 * 1024


_ecs_models.ContainerInstance.__init__ = _g5_12xlarge
