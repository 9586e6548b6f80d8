#!/usr/bin/env python3
"""Create the pipehost CloudFormation stack on a moto server.

    python3 infra/tests/deploy_moto.py http://127.0.0.1:PORT [--stack-name pipehost]
        [--param Key=Value ...] [--timeout 60] [--smoke] [--local-urls]
        [--with-compute] [--no-emulate] [--replace]

Creates infra/data_pipeline.yml as a stack with DeployCompute=false (the data
plane: stream, queues, bucket, topic, subscriber queue and subscription), waits
for CREATE_COMPLETE until the deadline, checks that moto applied the settings the
pipeline depends on, and prints the stack outputs as one JSON object on stdout
(notes go to stderr). Exits non-zero on any failure.

What moto 5.2.5's CloudFormation does with this template:
  - creates: AWS::Kinesis::Stream (shards, retention; ignores StreamEncryption),
    AWS::SQS::Queue (all attributes, redrive policy included), AWS::S3::Bucket
    (the bucket and its encryption; ignores VersioningConfiguration,
    LifecycleConfiguration, PublicAccessBlockConfiguration, OwnershipControls),
    AWS::SNS::Topic; and, with compute on, IAM roles, log groups, the Lambda
    function (its code must exist in moto's S3) and event source mapping, the
    ECS cluster / task definitions / services, security groups and ingress rules,
    the ALB, target group and listener (subnets must exist in moto's EC2).
  - skips, with only a warning in its log, types it does not implement:
    AWS::SNS::Subscription, AWS::SQS::QueuePolicy, AWS::S3::BucketPolicy,
    AWS::CloudWatch::Alarm. The stack still reaches CREATE_COMPLETE, and
    ListStackResources shows them as entries without a logical id.
  - Ref of a queue is an https://sqs.<region>.amazonaws.com/... URL, not one on
    the endpoint: resolve queues by name (GetQueueUrl), or pass --local-urls.
So that the data plane behaves as deployed, this script then does what moto
skipped and pipehost depends on (unless --no-emulate): it subscribes the
subscriber queue to the topic with the template's filter policy, and applies the
bucket's versioning setting. Policies and alarms are not enforced by moto and
are left out (reported on stderr).

Compute stays off because it cannot work on moto even though moto creates it: an
event source mapping makes moto invoke the function inside SendMessage, through
Docker, so the mapping would consume (and, failing, dead-letter) every batch the
pipeline sends. --with-compute creates the full stack anyway, as a check that the
compute half of the template is accepted (it uploads a placeholder package and
uses moto's default VPC); use a fresh server for it, and no traffic.

Needs boto3 and PyYAML (both come with moto).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import zipfile
from pathlib import Path

import boto3
import yaml
from botocore.config import Config

TEMPLATE = Path(__file__).resolve().parents[1] / "data_pipeline.yml"
REGION = "us-east-1"


def note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the template

class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, !GetAtt, ...)."""


def _tag(loader: CfnLoader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Fn::" + suffix: value}


CfnLoader.add_multi_constructor("!", _tag)


class Resolver:
    """Evaluates the intrinsic functions this script needs, against the stack."""

    def __init__(self, template: dict, params: dict[str, str], physical: dict[str, str], clients) -> None:
        self.t = template
        self.params = params
        self.physical = physical
        self.c = clients

    def param(self, name: str):
        spec = self.t["Parameters"][name]
        value = self.params.get(name, spec.get("Default"))
        value = "" if value is None else str(value)
        if spec["Type"] == "CommaDelimitedList" or spec["Type"].startswith("List<"):
            return [] if value == "" else [v.strip() for v in value.split(",")]
        return value

    def condition(self, name: str) -> bool:
        return bool(self.eval(self.t.get("Conditions", {})[name]))

    def arn_of(self, logical: str) -> str:
        rtype = self.t["Resources"][logical]["Type"]
        pid = self.physical[logical]
        if rtype == "AWS::SQS::Queue":
            url = self.c.sqs.get_queue_url(QueueName=pid.rsplit("/", 1)[-1])["QueueUrl"]
            return self.c.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        if rtype == "AWS::SNS::Topic":
            return pid
        if rtype == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{pid}"
        raise ValueError(f"GetAtt {logical}.Arn: {rtype} not handled here")

    def eval(self, v):
        if isinstance(v, list):
            return [self.eval(x) for x in v]
        if not isinstance(v, dict):
            return v
        if len(v) != 1:
            return {k: self.eval(x) for k, x in v.items()}
        (fn, arg), = v.items()
        if fn == "Ref":
            if arg in self.t.get("Parameters", {}):
                return self.param(arg)
            pseudo = {"AWS::Region": REGION, "AWS::Partition": "aws", "AWS::AccountId": "123456789012"}
            if arg in pseudo:
                return pseudo[arg]
            return self.physical[arg]
        if fn == "Fn::GetAtt":
            logical, attr = arg
            if attr != "Arn":
                raise ValueError(f"GetAtt {logical}.{attr} not handled here")
            return self.arn_of(logical)
        if fn == "Fn::Equals":
            a, b = self.eval(arg)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not self.eval(arg[0])
        if fn == "Fn::And":
            return all(self.eval(x) for x in arg)
        if fn == "Fn::Or":
            return any(self.eval(x) for x in arg)
        if fn == "Condition":
            return self.condition(arg)
        if fn == "Fn::If":
            cond, a, b = arg
            return self.eval(a if self.condition(cond) else b)
        if fn == "Fn::Sub" and isinstance(arg, str):
            import re

            def sub(m):
                name = m.group(1)
                if name.endswith(".Arn"):
                    return self.arn_of(name[:-4])
                return str(self.eval({"Ref": name}))

            return re.sub(r"\$\{([\w:.]+)\}", sub, arg)
        return {fn: self.eval(arg)}


# ---------------------------------------------------------------- moto

class Clients:
    def __init__(self, endpoint: str) -> None:
        kw = dict(
            endpoint_url=endpoint, region_name=REGION,
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 2}, s3={"addressing_style": "path"}),
        )
        for svc in ("cloudformation", "sqs", "sns", "s3", "kinesis", "ec2"):
            setattr(self, svc, boto3.client(svc, **kw))


def prepare_compute(c: Clients, params: dict[str, str]) -> None:
    """What the compute half needs to exist on moto: a deployment package and a VPC."""
    bucket, key = "pipehost-lambda-code", params.get("FunctionCodeKey", "pipehost/pipehost-lambda.zip")
    c.s3.create_bucket(Bucket=bucket)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\necho placeholder\n")
    c.s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
    vpc = next(v for v in c.ec2.describe_vpcs()["Vpcs"] if v.get("IsDefault"))
    subnets = [s["SubnetId"] for s in c.ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]][:2]
    params.setdefault("FunctionCodeBucket", bucket)
    params.setdefault("ContainerImage", "123456789012.dkr.ecr.us-east-1.amazonaws.com/pipehost:placeholder")
    params.setdefault("VpcId", vpc["VpcId"])
    params.setdefault("LoadBalancerSubnetIds", ",".join(subnets))
    params.setdefault("ServiceSubnetIds", ",".join(subnets))


def wait_for_stack(c: Clients, name: str, deadline: float) -> dict:
    while True:
        stack = c.cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return stack
        if time.monotonic() > deadline:
            raise TimeoutError(f"stack {name} still {stack['StackStatus']} at the deadline")
        time.sleep(0.5)


def emulate(c: Clients, template: dict, r: Resolver, skipped: list[str]) -> list[str]:
    """Do what moto skipped and the pipeline depends on."""
    done = []
    for logical in skipped:
        res = template["Resources"][logical]
        if res["Type"] == "AWS::SNS::Subscription":
            props = r.eval(res["Properties"])
            if props.get("Protocol") != "sqs":
                continue
            attrs = {}
            if "FilterPolicy" in props:
                attrs["FilterPolicy"] = json.dumps(props["FilterPolicy"])
                attrs["FilterPolicyScope"] = props.get("FilterPolicyScope", "MessageAttributes")
            if "RawMessageDelivery" in props:
                attrs["RawMessageDelivery"] = str(props["RawMessageDelivery"]).lower()
            c.sns.subscribe(TopicArn=props["TopicArn"], Protocol="sqs", Endpoint=props["Endpoint"],
                            Attributes=attrs, ReturnSubscriptionArn=True)
            done.append(f"{logical}: subscribed {props['Endpoint']} to {props['TopicArn']} {attrs}")
    for logical, res in template["Resources"].items():
        if res["Type"] != "AWS::S3::Bucket" or logical not in r.physical:
            continue
        status = r.eval(res.get("Properties", {}).get("VersioningConfiguration", {}).get("Status"))
        if status and c.s3.get_bucket_versioning(Bucket=r.physical[logical]).get("Status") != status:
            c.s3.put_bucket_versioning(Bucket=r.physical[logical], VersioningConfiguration={"Status": status})
            done.append(f"{logical}: versioning {status}")
    return done


def verify(c: Clients, template: dict, r: Resolver, compute: bool) -> list[str]:
    """The settings the pipeline depends on, as moto holds them."""
    problems = []
    q = r.physical.get("MainQueue", "").rsplit("/", 1)[-1]
    url = c.sqs.get_queue_url(QueueName=q)["QueueUrl"]
    a = c.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    want_vt = 6 * int(r.param("FunctionTimeout"))
    if int(a.get("VisibilityTimeout", -1)) != want_vt:
        problems.append(f"main queue VisibilityTimeout {a.get('VisibilityTimeout')}, expected {want_vt}")
    redrive = json.loads(a.get("RedrivePolicy", "{}"))
    if int(redrive.get("maxReceiveCount", -1)) != int(r.param("MaxReceives")):
        problems.append(f"main queue maxReceiveCount {redrive.get('maxReceiveCount')}, expected {r.param('MaxReceives')}")
    if redrive.get("deadLetterTargetArn") != r.arn_of("DeadLetterQueue"):
        problems.append(f"main queue redrives to {redrive.get('deadLetterTargetArn')}, not the DLQ")
    if r.condition("IsProvisioned"):
        s = c.kinesis.describe_stream_summary(StreamName=r.physical["Stream"])["StreamDescriptionSummary"]
        if s["OpenShardCount"] != int(r.param("ShardCount")):
            problems.append(f"stream has {s['OpenShardCount']} shards, expected {r.param('ShardCount')}")
    topic = r.physical["Topic"]
    subs = c.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    sub_arn = r.arn_of("SubscriberQueue")
    if not any(s["Endpoint"] == sub_arn and s["Protocol"] == "sqs" for s in subs):
        problems.append(f"{sub_arn} is not subscribed to {topic}")
    if compute and "ProcessorEventSourceMapping" not in r.physical:
        problems.append("compute on, but no event source mapping was created")
    return problems


def smoke(c: Clients, r: Resolver) -> list[str]:
    """The subscription's filter policy at work: a wanted dataset arrives, another does not."""
    datasets = r.param("SubscriberDatasets")
    topic = r.physical["Topic"]
    url = c.sqs.get_queue_url(QueueName=r.param("SubscriberQueueName"))["QueueUrl"]
    for dataset in (datasets[0], "not-a-subscribed-dataset"):
        c.sns.publish(TopicArn=topic, Message=json.dumps({"smoke": dataset}), MessageAttributes={
            "dataset": {"DataType": "String", "StringValue": dataset},
            "record_count": {"DataType": "Number", "StringValue": "1"},
            "kind": {"DataType": "String", "StringValue": "object"},
        })
    got, deadline = [], time.monotonic() + 5
    while time.monotonic() < deadline and len(got) < 2:
        msgs = c.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for m in msgs:
            got.append(json.loads(json.loads(m["Body"])["Message"])["smoke"])
            c.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        if got and not msgs:
            break
    if got != [datasets[0]]:
        return [f"subscriber queue received {got}, expected only [{datasets[0]!r}]"]
    return []


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("endpoint", help="the moto server, e.g. http://127.0.0.1:5000")
    ap.add_argument("--stack-name", default="pipehost")
    ap.add_argument("--template", type=Path, default=TEMPLATE)
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--timeout", type=float, default=60, help="seconds until CREATE_COMPLETE")
    ap.add_argument("--with-compute", action="store_true", help="DeployCompute=true (a creation check only; see above)")
    ap.add_argument("--no-emulate", action="store_true", help="do not fill in what moto skipped")
    ap.add_argument("--smoke", action="store_true", help="publish two notifications and check the filter policy")
    ap.add_argument("--local-urls", action="store_true", help="queue URL outputs as the endpoint serves them")
    ap.add_argument("--replace", action="store_true", help="delete a stack of that name first")
    args = ap.parse_args()

    started = time.monotonic()
    deadline = started + args.timeout
    c = Clients(args.endpoint)
    body = args.template.read_text()
    template = yaml.load(body, Loader=CfnLoader)
    params: dict[str, str] = dict(p.split("=", 1) for p in args.param)
    params["DeployCompute"] = "true" if args.with_compute else params.get("DeployCompute", "false")

    try:
        if args.with_compute:
            prepare_compute(c, params)
        if args.replace:
            existing = [s for s in c.cloudformation.list_stacks()["StackSummaries"]
                        if s["StackName"] == args.stack_name and s["StackStatus"] != "DELETE_COMPLETE"]
            if existing:
                c.cloudformation.delete_stack(StackName=args.stack_name)
                note(f"deleted the existing stack {args.stack_name}")
        c.cloudformation.create_stack(
            StackName=args.stack_name,
            TemplateBody=body,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
            Capabilities=["CAPABILITY_IAM"],
        )
        stack = wait_for_stack(c, args.stack_name, deadline)
    except Exception as e:  # moto reports many template problems from CreateStack itself
        note(f"FAIL  create stack {args.stack_name}: {e}")
        return 1
    if stack["StackStatus"] != "CREATE_COMPLETE":
        note(f"FAIL  stack {args.stack_name}: {stack['StackStatus']} {stack.get('StackStatusReason') or ''}")
        return 1
    note(f"stack {args.stack_name}: CREATE_COMPLETE in {time.monotonic() - started:.1f} s "
         f"(DeployCompute={params['DeployCompute']})")

    summaries = c.cloudformation.list_stack_resources(StackName=args.stack_name)["StackResourceSummaries"]
    physical = {s["LogicalResourceId"]: s.get("PhysicalResourceId", "") for s in summaries if s.get("LogicalResourceId")}
    r = Resolver(template, params, physical, c)
    wanted = [name for name, res in template["Resources"].items()
              if "Condition" not in res or r.condition(res["Condition"])]
    skipped = [name for name in wanted if name not in physical]
    if skipped:
        note("moto skipped (types its CloudFormation does not implement): " + ", ".join(
            f"{n} ({template['Resources'][n]['Type']})" for n in skipped))

    problems: list[str] = []
    try:
        if not args.no_emulate:
            for line in emulate(c, template, r, skipped):
                note(f"emulated {line}")
        problems += verify(c, template, r, args.with_compute)
        if args.smoke and not problems:
            problems += smoke(c, r)
            if not problems:
                note("smoke: the subscriber queue got the subscribed dataset and not the other")
    except Exception as e:
        problems.append(f"{type(e).__name__}: {e}")
    if problems:
        for p in problems:
            note(f"FAIL  {p}")
        return 1

    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    if args.local_urls:
        for k, v in outputs.items():
            if k.endswith("QueueUrl"):
                outputs[k] = c.sqs.get_queue_url(QueueName=v.rsplit("/", 1)[-1])["QueueUrl"]
    print(json.dumps(outputs, indent=2, sort_keys=True))
    note(f"PASS  deployed and checked in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
