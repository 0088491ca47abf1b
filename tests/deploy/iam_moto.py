"""IAM enforced on a moto server, for the deploy rehearsal (tests/e2e/rehearsal.rs).

  iam_moto.py serve RECORD              a moto server on a free port that records every authorization decision it
                                        makes (principal, action, resource, allowed) as JSON lines in RECORD; it
                                        prints "listening on http://127.0.0.1:PORT" and runs until killed
  iam_moto.py users ENDPOINT STACK      for each IAM role of the stack, a user holding exactly that role's inline
                                        policies, with an access key (plus `admin`, allowed everything, for the
                                        test's own set-up and checks); then turns enforcement on; prints the keys
                                        and each role's statements as JSON
  iam_moto.py audit RECORD USERS_JSON   which decisions were denied, and which statement of each role (each of its
                                        resources on its own) no allowed decision of its user matched (by moto's own
                                        statement matching), as JSON

What moto enforces (moto 5): identity policies of users (inline and attached), Allow and explicit Deny, actions
and resources with wildcards: the queue's ARN for SQS calls, the bucket's or `bucket/key` ARN for S3 calls, and (as
this script teaches it) the table's ARN for Glue calls that name a table. What it
does not: conditions (s3:prefix, s3:ResourceAccount, kms:ViaService are taken as met), resource policies (bucket,
queue and key policies), KMS calls SQS and S3 would make on the caller's behalf, sts:AssumeRole into a role (hence a
user per role), and the resource of SQS calls that name a queue by ARN (StartMessageMoveTask is checked against `*`:
the audit then decides on the action alone and lists it as unresolved).
"""

import ast
import json
import sys
import threading
import urllib.request

import boto3


def serve(record_path: str) -> None:
    from moto.iam import access_control
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    record = open(record_path, "a", buffering=1, encoding="utf-8")
    lock = threading.Lock()
    check = access_control.IAMRequestBase.check_action_permitted

    def recorded(self, resource):
        principal = getattr(self._access_key, "arn", "?")
        allowed = False
        try:
            check(self, resource)
            allowed = True
        finally:
            line = {"principal": principal, "action": self._action, "resource": resource, "allowed": allowed}
            with lock:
                record.write(json.dumps(line) + "\n")

    access_control.IAMRequestBase.check_action_permitted = recorded

    from moto.glue.responses import GlueResponse

    def glue_table(self):
        # The table a Glue call names (GetTable, CreateTable): moto resolves no Glue resource on its own.
        body = json.loads(self.body or "{}")
        database, name = body.get("DatabaseName"), body.get("Name") or body.get("TableInput", {}).get("Name")
        if database and name:
            return f"arn:aws:glue:{self.region}:{self.current_account}:table/{database}/{name}"
        return "*"

    GlueResponse._determine_resource = glue_table
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"listening on http://{host}:{port}", flush=True)
    threading.Event().wait()


def users(endpoint: str, stack: str) -> None:
    session = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    iam = boto3.client("iam", **session)
    cloudformation = boto3.client("cloudformation", **session)
    resources = cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
    out = {}
    for resource in resources:
        if resource.get("ResourceType") != "AWS::IAM::Role":
            continue
        role, name = resource["PhysicalResourceId"], resource["LogicalResourceId"]
        statements = []
        iam.create_user(UserName=name)
        for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            document = iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
            if isinstance(document, str):
                # moto keeps the policies of roles CloudFormation created as Python literals, not JSON.
                document = ast.literal_eval(document) if document.startswith("{'") else json.loads(document)
            listed = document["Statement"]
            # A statement left out by `!If [..., !Ref AWS::NoValue]` is a null in moto's copy, and absent in AWS's.
            listed = [s for s in (listed if isinstance(listed, list) else [listed]) if s is not None]
            # A statement on a resource moto's CloudFormation does not create (the notification URL's secret) has a
            # null Resource in moto's copy: left out, as no call here can use it (the rehearsal's UNREACHABLE).
            listed = [s for s in listed if s.get("Resource") is not None or "NotResource" in s]
            document["Statement"] = listed
            iam.put_user_policy(UserName=name, PolicyName=policy, PolicyDocument=json.dumps(document))
            statements.extend(listed)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        out[name] = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"], "statements": statements}
    admin = [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
    iam.create_user(UserName="admin")
    iam.put_user_policy(UserName="admin", PolicyName="admin", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": admin}))
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    out["admin"] = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"], "statements": admin}
    # From here on every call must be signed by one of these users and allowed by its policies.
    reset = f"{endpoint}/moto-api/reset-auth"
    urllib.request.urlopen(urllib.request.Request(reset, data=b"0", method="POST", headers={"Content-Type": "text/plain"}))
    print(json.dumps(out))


def audit(record_path: str, users_path: str) -> None:
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult

    with open(users_path, encoding="utf-8") as f:
        roles = json.load(f)
    with open(record_path, encoding="utf-8") as f:
        decisions = [json.loads(line) for line in f if line.strip()]

    def statements_of(principal):
        name = principal.rsplit(":user/", 1)[-1]
        return [s for s in roles.get(name, {}).get("statements", []) if s.get("Effect") == "Allow"]

    # Where moto cannot tell the resource (SQS calls that name a queue by ARN, not URL, e.g. StartMessageMoveTask,
    # are checked against `*`), the decision is taken on the action alone: allowed when a statement grants it.
    for d in decisions:
        if not d["allowed"] and d["resource"] == "*":
            granting = [s for s in statements_of(d["principal"]) if IAMPolicyStatement({**s, "Resource": "*"}).is_action_permitted(d["action"]) == PermissionResult.PERMITTED]
            if granting:
                d["allowed"], d["resource"] = True, "(unresolved by moto)"
                d["granted_by"] = [s.get("Sid") for s in granting]
    denied = [d for d in decisions if not d["allowed"]]
    unused = []
    for name, role in roles.items():
        if name == "admin":
            continue
        mine = [d for d in decisions if d["allowed"] and d["principal"].endswith(f":user/{name}")]
        for statement in role["statements"]:
            if statement.get("Effect") != "Allow":
                continue
            # Each resource of a statement on its own: a queue or prefix granted and never reached is reported.
            resources = statement.get("Resource", "*")
            for resource in resources if isinstance(resources, list) else [resources]:
                matcher = IAMPolicyStatement({**statement, "Resource": resource})
                used = any(
                    statement.get("Sid") in d.get("granted_by", [])
                    or matcher.is_action_permitted(d["action"], d["resource"]) == PermissionResult.PERMITTED
                    for d in mine
                )
                if not used:
                    unused.append({"role": name, "sid": statement.get("Sid", "(no Sid)"), "resource": resource, "statement": statement})
    unresolved = sorted({d["action"] for d in decisions if "granted_by" in d})
    print(json.dumps({"decisions": len(decisions), "denied": denied, "unused": unused, "unresolved": unresolved}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"serve": serve, "users": users, "audit": audit}[command](*args)
