"""Creates deploy/template.yaml as a CloudFormation stack on a moto server and prints, as JSON, what the tasks would
be given: each task definition's family, command, environment and secrets as deployed (the values of the secrets the
stack keeps itself, and the whole definition, which the rehearsal searches for secrets), the stack's outputs, and the
daily schedule's input. Used by tests/e2e/rehearsal.rs (the deploy rehearsal); moto creates the queues, the bucket, the
cluster, the services, the task definitions (producer, consumer, status, operator, table-writer), the roles, the keys,
the topic and the rule, not the alarms, schedules, policies, scaling resources (the template's wiring test checks
those) or the Glue database (created here, as the stack would).

Usage: rehearse_stack.py ENDPOINT STACK_NAME KEY=VALUE...   (template parameters)
"""

import json
import sys
import time

import boto3
import yaml


def main() -> None:
    endpoint, stack, *pairs = sys.argv[1:]
    session = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    ec2 = boto3.client("ec2", **session)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=stack, Description="rehearsal", VpcId=vpc)["GroupId"]
    parameters = {"VpcSubnetIds": subnet, "SecurityGroupIds": group}
    parameters.update(pair.split("=", 1) for pair in pairs)

    template_path = sys.path[0] + "/../../deploy/template.yaml"
    with open(template_path, encoding="utf-8") as f:
        body = f.read()
    cloudformation = boto3.client("cloudformation", **session)
    cloudformation.create_stack(
        StackName=stack,
        TemplateBody=body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    for _ in range(120):
        described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
        if not described["StackStatus"].endswith("_IN_PROGRESS"):
            break
        time.sleep(0.5)
    if described["StackStatus"] != "CREATE_COMPLETE":
        sys.exit(f"stack {stack}: {described['StackStatus']} {described.get('StackStatusReason')}")

    # moto's CloudFormation has no Glue: the database TablesDatabase names, created as the stack would.
    glue = boto3.client("glue", **session)
    database = parameters.get("TablesGlueDatabase", "zuora")
    if database not in [d["Name"] for d in glue.get_databases()["DatabaseList"]]:
        glue.create_database(DatabaseInput={"Name": database})

    # The notification URL NotifyUrlSecret holds, as CloudFormation renders its !Sub (moto creates neither the secret
    # nor the API: the API's id is a stand-in; the rehearsal points the URL at a stand-in route anyway).
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor(
        "!", lambda loader, tag, node: loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None
    )
    template = yaml.load(body, Loader=Loader)
    notify_url = (
        template["Resources"]["NotifyUrlSecret"]["Properties"]["SecretString"]
        .replace("${NotifyApi}", "notifyapi")
        .replace("${AWS::Region}", "us-east-1")
        .replace("${AWS::URLSuffix}", "amazonaws.com")
        .replace("${NotifySecret}", parameters.get("NotifySecret", ""))
        .replace("${!", "${")
    )

    ecs = boto3.client("ecs", **session)
    tasks = {}
    for arn in ecs.list_task_definitions()["taskDefinitionArns"]:
        definition = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        if not definition["family"].startswith(stack + "-"):
            continue
        container = definition["containerDefinitions"][0]
        tasks[definition["family"][len(stack) + 1 :]] = {
            "command": container.get("command", []),
            "environment": {e["name"]: e["value"] for e in container.get("environment", [])},
            "secrets": [s["name"] for s in container.get("secrets", [])],
            # The secret the stack keeps itself (the notification URL), as ECS would inject it. moto's CloudFormation
            # creates no Secrets Manager secret (the reference is null in its copy): its value as the template
            # renders it.
            "stack_secrets": {
                s["name"]: notify_url for s in container.get("secrets", []) if not s.get("valueFrom")
            },
            "definition": definition,
        }

    # The schedule's input as the template writes it (moto does not create schedules).
    daily = template["Resources"]["DailyExport"]["Properties"]["Target"]["Input"]

    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    print(json.dumps({"tasks": tasks, "outputs": outputs, "daily_input": daily}, default=str))


if __name__ == "__main__":
    main()
