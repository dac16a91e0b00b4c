# Makes what the ECS driver runs in, in moto: a VPC with DNS hostnames
# (awsvpc tasks need it), two subnets, a security group, a cluster with
# FARGATE, FARGATE_SPOT and two EC2 GPU capacity providers (each an Auto
# Scaling group), a GPU container instance for EC2 tasks, and a log group;
# tasks stay RUNNING until stopped (moto's state manager). Prints JSON.
import json, sys, urllib.request
import boto3
endpoint, name = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
ec2 = boto3.client("ec2", **kw)
ecs = boto3.client("ecs", **kw)
asg = boto3.client("autoscaling", **kw)
logs = boto3.client("logs", **kw)
req = urllib.request.Request(
    endpoint + "/moto-api/state-manager/set-transition",
    data=json.dumps({"model_name": "ecs::task",
                     "transition": {"progression": "manual", "times": 10**9}}).encode(),
    headers={"Content-Type": "application/json"}, method="POST")
urllib.request.urlopen(req).read()
vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24",
                             AvailabilityZone=f"us-east-1{az}")["Subnet"]["SubnetId"]
           for i, az in ((1, "a"), (2, "b"))]
sg = ec2.create_security_group(GroupName=f"{name}-models", Description="model servers",
                               VpcId=vpc)["GroupId"]
ami = ec2.describe_images()["Images"][0]["ImageId"]
lt = ec2.create_launch_template(LaunchTemplateName=f"{name}-gpu",
                                LaunchTemplateData={"ImageId": ami, "InstanceType": "g5.xlarge"})
providers = []
for suffix in ("gpu", "gpu-spot"):
    group = f"{name}-{suffix}"
    asg.create_auto_scaling_group(AutoScalingGroupName=group, MinSize=0, MaxSize=4,
                                  LaunchTemplate={"LaunchTemplateName": f"{name}-gpu"},
                                  VPCZoneIdentifier=",".join(subnets))
    arn = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["AutoScalingGroupARN"]
    ecs.create_capacity_provider(name=group, autoScalingGroupProvider={
        "autoScalingGroupArn": arn,
        "managedScaling": {"status": "ENABLED", "targetCapacity": 100},
        "managedTerminationProtection": "DISABLED"})
    providers.append(group)
ecs.create_cluster(clusterName=name, capacityProviders=["FARGATE", "FARGATE_SPOT"] + providers)
# One GPU host registered with the cluster, for EC2 (GPU) tasks to land on.
inst = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="g5.xlarge",
                         SubnetId=subnets[0])["Instances"][0]["InstanceId"]
doc = json.dumps({"accountId": "123456789012", "region": "us-east-1", "instanceId": inst,
                  "instanceType": "g5.xlarge", "imageId": ami,
                  "privateIp": "10.40.1.10", "availabilityZone": "us-east-1a"})
# (moto gives every container instance the same resources; the testkit's
# shims size them as a g5.12xlarge.)
ecs.register_container_instance(cluster=name, instanceIdentityDocument=doc)
group = f"/{name}/models"
logs.create_log_group(logGroupName=group)
print(json.dumps({"cluster": name, "subnets": subnets, "security_group": sg,
                  "log_group": group, "gpu_capacity_provider": providers[0],
                  "gpu_spot_capacity_provider": providers[1]}))
