#!/usr/bin/env python3
"""Static checks of pipehost's infrastructure templates (infra/).

    python3 infra/tests/check_infra.py [--bin VENV_BIN] [--pipeline pipeline.toml]
                                       [--terraform-plugin-dir DIR]

Checks, each printed as PASS / FAIL / SKIP; exits 1 when any fails:

1. cfn-lint on data_pipeline.yml: errors fail; warnings and informational
   findings are printed and allowed.
2. Parity of data_pipeline.tf (parsed with the `hcl2` package) with the
   CloudFormation template: every CloudFormation resource has its Terraform
   counterpart (logical id in snake_case, mapped type, same condition as
   `count = local.<condition> ? 1 : 0`), the resources the AWS provider splits
   off are there (SPLIT_RESOURCES), the name-bearing properties use the same
   parameters/variables, and nothing else is declared; parameters <-> variables
   (names and defaults), conditions <-> locals, outputs <-> outputs.
3. checkov on both files: any failed check fails, unless the template skips it
   with a justification (`#checkov:skip=ID:reason` in Terraform, Metadata
   `checkov: skip: [{id, comment}]` in CloudFormation). A skip that suppresses
   nothing (the check would pass without it) fails too, so skips stay honest.
4. The templates' name defaults are the names pipehost derives from
   pipeline.toml (host/src/plan/mod.rs), and a few settings match.
5. With `terraform` on PATH and a provider mirror (--terraform-plugin-dir or
   $PIPEHOST_TF_PLUGIN_DIR): terraform fmt -check, init (offline) and validate.

The tools come from --bin (a venv's bin directory, e.g. /tmp/infra-venv/bin;
install with `pip install -r infra/requirements.txt`) or from PATH. When the
Python running this lacks `cfnlint` or `hcl2` and --bin has a python, the script
re-runs itself with that python.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
INFRA = HERE.parent
REPO = INFRA.parent
CFN_FILE = INFRA / "data_pipeline.yml"
# store.key_template's default (host/src/plan/key.rs).
DEFAULT_KEY_TEMPLATE = "dataset={dataset}/date={date}/hour={hour}/{shard}-{first_seq}"
TF_FILE = INFRA / "data_pipeline.tf"

# CloudFormation type -> Terraform type, and the name-bearing property of each
# (CloudFormation property, Terraform attribute); None where the resource has
# no name of its own (policies, rules, mappings) or CloudFormation generates it.
TYPE_MAP: dict[str, tuple[str, tuple[str, str] | None]] = {
    "AWS::Kinesis::Stream": ("aws_kinesis_stream", ("Name", "name")),
    "AWS::SQS::Queue": ("aws_sqs_queue", ("QueueName", "name")),
    "AWS::SQS::QueuePolicy": ("aws_sqs_queue_policy", None),
    "AWS::S3::Bucket": ("aws_s3_bucket", ("BucketName", "bucket")),
    "AWS::S3::BucketPolicy": ("aws_s3_bucket_policy", None),
    "AWS::SNS::Topic": ("aws_sns_topic", ("TopicName", "name")),
    "AWS::SNS::Subscription": ("aws_sns_topic_subscription", None),
    "AWS::Logs::LogGroup": ("aws_cloudwatch_log_group", ("LogGroupName", "name")),
    "AWS::IAM::Role": ("aws_iam_role", None),
    "AWS::Lambda::Function": ("aws_lambda_function", ("FunctionName", "function_name")),
    "AWS::Lambda::EventSourceMapping": ("aws_lambda_event_source_mapping", None),
    "AWS::ECS::Cluster": ("aws_ecs_cluster", ("ClusterName", "name")),
    "AWS::ECS::TaskDefinition": ("aws_ecs_task_definition", ("Family", "family")),
    "AWS::ECS::Service": ("aws_ecs_service", ("ServiceName", "name")),
    "AWS::EC2::SecurityGroup": ("aws_security_group", None),
    "AWS::EC2::SecurityGroupIngress": ("aws_vpc_security_group_ingress_rule", None),
    "AWS::ElasticLoadBalancingV2::LoadBalancer": ("aws_lb", ("Name", "name")),
    "AWS::ElasticLoadBalancingV2::TargetGroup": ("aws_lb_target_group", ("Name", "name")),
    "AWS::ElasticLoadBalancingV2::Listener": ("aws_lb_listener", None),
    "AWS::ElasticLoadBalancingV2::ListenerRule": ("aws_lb_listener_rule", None),
    "AWS::CloudWatch::Alarm": ("aws_cloudwatch_metric_alarm", ("AlarmName", "alarm_name")),
}

# Where the AWS provider (v5) splits one CloudFormation resource: a property of
# the CloudFormation resource -> the extra Terraform resource type, named like
# the parent (Bucket.BucketEncryption -> aws_s3_bucket_server_side_encryption_configuration.bucket).
SPLIT_RESOURCES: dict[str, dict[str, str]] = {
    "AWS::S3::Bucket": {
        "BucketEncryption": "aws_s3_bucket_server_side_encryption_configuration",
        "PublicAccessBlockConfiguration": "aws_s3_bucket_public_access_block",
        "OwnershipControls": "aws_s3_bucket_ownership_controls",
        "VersioningConfiguration": "aws_s3_bucket_versioning",
        "LifecycleConfiguration": "aws_s3_bucket_lifecycle_configuration",
    },
    "AWS::IAM::Role": {"Policies": "aws_iam_role_policy"},
}

# Parameters whose defaults pipeline.toml determines (see derived_defaults).
NAME_PARAMETERS = [
    "PipelineName", "StreamName", "QueueName", "DeadLetterQueueName",
    "BucketName", "TopicName", "SubscriberQueueName",
]


# ---------------------------------------------------------------- output

class Report:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def passed(self, name: str, detail: str = "") -> None:
        print(f"PASS  {name}" + (f": {detail}" if detail else ""), flush=True)

    def fail(self, name: str, problems: list[str] | str) -> None:
        problems = [problems] if isinstance(problems, str) else problems
        print(f"FAIL  {name}", flush=True)
        for p in problems:
            print(f"      - {p}", flush=True)
        self.failed.append(name)

    def skip(self, name: str, why: str) -> None:
        print(f"SKIP  {name}: {why}", flush=True)

    def check(self, name: str, problems: list[str], detail: str = "") -> None:
        if problems:
            self.fail(name, problems)
        else:
            self.passed(name, detail)


def snake(name: str) -> str:
    """CloudFormation logical id -> Terraform name: MainQueue -> main_queue."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return s.lower()


# ---------------------------------------------------------------- tools

def find_tool(name: str, bin_dir: Path | None) -> str | None:
    if bin_dir is not None:
        p = bin_dir / name
        if p.exists():
            return str(p)
    return shutil.which(name)


def ensure_python_modules(bin_dir: Path | None) -> None:
    """Re-run with the venv's python when this one lacks cfnlint or hcl2."""
    try:
        import cfnlint.decode  # noqa: F401
        import hcl2  # noqa: F401
        return
    except ImportError as e:
        missing = e.name
    py = bin_dir / "python" if bin_dir else None
    if py and py.exists() and not os.environ.get("CHECK_INFRA_REEXEC"):
        os.environ["CHECK_INFRA_REEXEC"] = "1"
        os.execv(str(py), [str(py), *sys.argv])
    sys.exit(
        f"FAIL  python module {missing!r} not found: run with the venv's python "
        f"or pass --bin (pip install -r {INFRA / 'requirements.txt'})"
    )


# ---------------------------------------------------------------- 1. cfn-lint

def run_cfn_lint(report: Report, cfn_lint: str | None) -> None:
    name = "cfn-lint data_pipeline.yml"
    if not cfn_lint:
        report.fail(name, "cfn-lint not found (pass --bin or put it on PATH)")
        return
    t = time.monotonic()
    p = subprocess.run([cfn_lint, str(CFN_FILE)], capture_output=True, text=True)
    took = f"{time.monotonic() - t:.1f} s"
    out = (p.stdout + p.stderr).strip()
    # Exit code bits: 2 error, 4 warning, 8 informational; 1 = cfn-lint itself failed.
    if p.returncode & 3:
        report.fail(name, [f"exit code {p.returncode} ({took})", *out.splitlines()])
        return
    if out:
        print(out)
    kinds = [k for bit, k in ((4, "warnings"), (8, "informational")) if p.returncode & bit]
    report.passed(name, f"no errors{' (' + ', '.join(kinds) + ' above)' if kinds else ''}, {took}")


# ---------------------------------------------------------------- 2. parity

def load_cfn() -> dict:
    from cfnlint.decode import decode

    template, matches = decode(str(CFN_FILE))
    if matches or template is None:
        sys.exit(f"FAIL  {CFN_FILE}: cannot parse: {matches}")
    return template


class Tf:
    """data_pipeline.tf as plain Python values, whichever `hcl2` parsed it.

    bc-python-hcl2 (checkov's fork, the one infra/requirements.txt installs)
    wraps every attribute value in a one-element list; python-hcl2 8 does not,
    but keeps the quotes of string literals and block labels ("\"name\"").
    """

    def __init__(self, path: Path) -> None:
        import hcl2

        with open(path) as f:
            raw = hcl2.load(f)
        first_var = next(iter(raw["variable"][0].values()))
        self.wrapped = isinstance(first_var.get("type"), list)
        self.variables = self._blocks(raw.get("variable", []))
        self.outputs = self._blocks(raw.get("output", []))
        self.locals: dict = {}
        for block in raw.get("locals", []):
            self.locals.update({k: self.attr(v) for k, v in block.items() if not k.startswith("__")})
        self.resources: dict[str, dict] = {}
        for block in raw.get("resource", []):
            for rtype, named in block.items():
                for rname, body in named.items():
                    self.resources[f"{rtype.strip(chr(34))}.{rname.strip(chr(34))}"] = body

    @staticmethod
    def _blocks(blocks: list) -> dict[str, dict]:
        out = {}
        for block in blocks:
            for name, body in block.items():
                out[name.strip('"')] = body
        return out

    def attr(self, value):
        if self.wrapped and isinstance(value, list) and len(value) == 1:
            value = value[0]
        return self.expr(self.unquote(value))

    @classmethod
    def unquote(cls, value):
        """python-hcl2 8's quoted literals ("\"x\"") -> x, in lists and maps too."""
        if isinstance(value, list):
            return [cls.unquote(v) for v in value]
        if isinstance(value, dict):
            return {k: cls.unquote(v) for k, v in value.items()}
        if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value[1:-1]
        return value

    @staticmethod
    def expr(value):
        """A whole-expression string "${x}" -> "x"; literals unchanged."""
        if isinstance(value, str):
            m = re.fullmatch(r"\$\{(.*)\}", value, re.S)
            if m and "${" not in m.group(1):
                return m.group(1).strip()
        return value


def cfn_name_template(value, params: set[str]) -> str | None:
    """A name-bearing CloudFormation value as a template over parameters:
    {"Ref": "QueueName"} -> "${QueueName}", {"Fn::Sub": "${PipelineName}-web"}
    -> "${PipelineName}-web". None for anything else."""
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in params:
        return "${" + value["Ref"] + "}"
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return value["Fn::Sub"]
    if isinstance(value, str):
        return value
    return None


def tf_name_template(value, var_to_param: dict[str, str]) -> str | None:
    """The same for Terraform: "var.queue_name" -> "${QueueName}",
    "${var.pipeline_name}-web" -> "${PipelineName}-web"."""
    if not isinstance(value, str):
        return None
    if re.fullmatch(r"var\.\w+", value):
        value = "${" + value + "}"

    def sub(m: re.Match) -> str:
        return "${" + var_to_param.get(m.group(1), "var." + m.group(1)) + "}"

    return re.sub(r"\$\{var\.(\w+)\}", sub, value)


def normalize_default(value, cfn_type: str | None = None):
    """Defaults compared across the two: "true" == True, "60" == 60,
    "a,b" (CommaDelimitedList) == ["a", "b"], "" (list) == []."""
    if cfn_type in ("CommaDelimitedList",) or (cfn_type or "").startswith("List<"):
        if isinstance(value, str):
            return [] if value == "" else [v.strip() for v in value.split(",")]
        return list(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    return value


def check_parity(report: Report, cfn: dict, tf: Tf) -> None:
    params: dict[str, dict] = dict(cfn.get("Parameters", {}))
    conditions = set(cfn.get("Conditions", {}))
    var_to_param = {snake(p): p for p in params}

    # Parameters <-> variables, with the same defaults.
    problems = []
    for p, spec in params.items():
        v = snake(p)
        if v not in tf.variables:
            problems.append(f"parameter {p} has no variable {v!r}")
            continue
        cd = normalize_default(spec.get("Default"), spec.get("Type"))
        tdraw = tf.variables[v].get("default")
        td = normalize_default(tf.attr(tdraw) if tdraw is not None else None, spec.get("Type"))
        if cd != td:
            problems.append(f"default of {p} is {cd!r}, of var.{v} {td!r}")
    for v in tf.variables:
        if v not in var_to_param:
            problems.append(f"variable {v!r} has no parameter")
    report.check("parity: parameters <-> variables (names, defaults)", problems, f"{len(params)} each")

    # Conditions <-> locals.
    problems = [f"condition {c} has no local {snake(c)!r}" for c in conditions if snake(c) not in tf.locals]
    report.check("parity: conditions <-> locals", problems, f"{len(conditions)} conditions")

    # Resources.
    problems = []
    expected: dict[str, tuple[str, str | None]] = {}  # tf address -> (cfn logical id, condition)
    names_checked = 0
    for logical, res in cfn["Resources"].items():
        rtype = res["Type"]
        if rtype not in TYPE_MAP:
            problems.append(f"{logical}: no Terraform type mapped for {rtype} (add it to TYPE_MAP)")
            continue
        tf_type, name_prop = TYPE_MAP[rtype]
        addr = f"{tf_type}.{snake(logical)}"
        cond = res.get("Condition")
        expected[addr] = (logical, cond)
        props = res.get("Properties", {})
        for prop, split_type in SPLIT_RESOURCES.get(rtype, {}).items():
            if prop in props:
                expected[f"{split_type}.{snake(logical)}"] = (f"{logical}.{prop}", cond)
        if addr not in tf.resources:
            continue
        if name_prop:
            cprop, tattr = name_prop
            cval = cfn_name_template(props.get(cprop), set(params))
            tval = tf_name_template(tf.attr(tf.resources[addr].get(tattr)), var_to_param)
            if cval is None:
                problems.append(f"{logical}.{cprop} is not set from the parameters ({props.get(cprop)!r})")
            elif cval != tval:
                problems.append(f"{logical}.{cprop} = {cval!r} but {addr}.{tattr} = {tval!r}")
            else:
                names_checked += 1

    for addr, (logical, cond) in expected.items():
        body = tf.resources.get(addr)
        if body is None:
            problems.append(f"{logical} ({addr}) is missing from the Terraform file")
            continue
        count = tf.attr(body["count"]) if "count" in body else None
        want = f"local.{snake(cond)} ? 1 : 0" if cond else None
        if count != want:
            problems.append(
                f"{addr}: count is {count!r}, expected {want!r} (CloudFormation Condition: {cond})"
            )
    for addr in tf.resources:
        if addr not in expected:
            problems.append(f"{addr} has no CloudFormation counterpart (nor is it a documented split)")
    report.check(
        "parity: resources (types, split resources, conditions, names)",
        problems,
        f"{len(cfn['Resources'])} CloudFormation resources -> {len(tf.resources)} Terraform resources, "
        f"{names_checked} names from the same parameters",
    )

    # Outputs.
    cfn_outputs = {snake(o) for o in cfn.get("Outputs", {})}
    problems = [f"output {o!r} is missing from the Terraform file" for o in sorted(cfn_outputs - set(tf.outputs))]
    problems += [f"Terraform output {o!r} has no CloudFormation output" for o in sorted(set(tf.outputs) - cfn_outputs)]
    report.check("parity: outputs", problems, f"{len(cfn_outputs)} each")


# ---------------------------------------------------------------- 3. checkov

def strip_cfn_skips(text: str) -> str:
    """The CloudFormation template without its `checkov:` metadata blocks."""
    out, skipping, indent = [], False, 0
    for line in text.splitlines():
        if line.strip() == "checkov:":
            skipping, indent = True, len(line) - len(line.lstrip())
            continue
        if skipping:
            if not line.strip() or len(line) - len(line.lstrip()) > indent:
                continue
            skipping = False
        out.append(line)
    return "\n".join(out) + "\n"


def strip_tf_skips(text: str) -> str:
    return re.sub(r"(?m)^[ \t]*#\s*checkov:skip=.*\n", "", text)


def run_checkov(report: Report, checkov: str | None) -> None:
    name = "checkov"
    if not checkov:
        report.fail(name, "checkov not found (pass --bin or put it on PATH)")
        return
    with tempfile.TemporaryDirectory(prefix="check-infra-") as tmp:
        # The templates as written, and copies without their skips: one run
        # finds unskipped failures and skips that suppress nothing.
        bare = Path(tmp) / "bare"
        bare.mkdir()
        (bare / CFN_FILE.name).write_text(strip_cfn_skips(CFN_FILE.read_text()))
        (bare / TF_FILE.name).write_text(strip_tf_skips(TF_FILE.read_text()))
        files = [CFN_FILE, TF_FILE, bare / CFN_FILE.name, bare / TF_FILE.name]
        cmd = [checkov, "--framework", "cloudformation", "terraform", "--compact",
               "--skip-download", "-o", "json"]
        for f in files:
            cmd += ["-f", str(f)]
        t = time.monotonic()
        env = dict(os.environ, BC_SKIP_MAPPING="TRUE")
        for attempt in (1, 2):
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            try:
                data = json.loads(p.stdout)
            except json.JSONDecodeError:
                report.fail(name, [f"checkov exit code {p.returncode}, no JSON output", *p.stderr.splitlines()[-20:]])
                return
            reports = data if isinstance(data, list) else [data]
            # Seen once on a loaded machine: both .tf files reported as parsing
            # errors, and fine on the next run. Retry once before failing on it.
            if attempt == 1 and any(r.get("summary", {}).get("parsing_errors") for r in reports if isinstance(r, dict)):
                print("      checkov reported parsing errors; running it once more")
                continue
            break
        took = time.monotonic() - t

    def key(c: dict) -> tuple[str, str, str]:
        path = c.get("file_abs_path") or c["file_path"]
        resource = re.sub(r"\[\d+\]", "", c["resource"])  # count index
        return (Path(path).name, c["check_id"], resource)

    real: dict[str, list[dict]] = {"failed": [], "skipped": []}
    bare_failed: set[tuple[str, str, str]] = set()
    parse_errors = []
    for r in reports:
        if isinstance(r, dict) and r.get("summary", {}).get("parsing_errors"):
            parse_errors.append(f"{r.get('check_type')}: parsing errors {r['results'].get('parsing_errors')}")
        for status in ("failed", "skipped"):
            for c in r.get("results", {}).get(f"{status}_checks", []):
                path = str(c.get("file_abs_path") or c["file_path"])
                if "/bare/" in path:
                    if status == "failed":
                        bare_failed.add(key(c))
                else:
                    real[status].append(c)

    problems = list(parse_errors)
    if parse_errors:
        problems += [line for line in p.stderr.splitlines() if "rror" in line][-20:]
    for c in real["failed"]:
        f, cid, res = key(c)
        problems.append(f"{f}: {cid} {res}: {c['check_name']} (fix it, or skip it with a justification)")
    for c in real["skipped"]:
        f, cid, res = key(c)
        why = (c.get("check_result") or {}).get("suppress_comment") or ""
        if len(why.strip()) < 20:
            problems.append(f"{f}: {cid} {res}: skipped without a justification ({why!r})")
        if (f, cid, res) not in bare_failed:
            problems.append(f"{f}: {cid} {res}: skipped, but the check passes without the skip (remove it)")
    if problems:
        report.fail(name, problems)
        return
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for c in real["skipped"]:
        f, cid, res = key(c)
        grouped.setdefault((f, cid, c["check_result"]["suppress_comment"]), []).append(res.split(".")[-1])
    for (f, cid, why), resources in sorted(grouped.items()):
        print(f"      skip {f} {cid} ({', '.join(resources)}): {why}")
    report.passed(
        name,
        f"no failed checks; {len(real['skipped'])} justified skips of {len({k[1] for k in grouped})} checks "
        f"(listed above), each still needed; {took:.1f} s",
    )


# ---------------------------------------------------------------- 4. pipeline.toml

def derived_defaults(pipeline: Path) -> tuple[dict[str, object], dict[str, object]]:
    """The names pipehost derives from pipeline.toml (as host/src/plan/mod.rs
    does), and the settings the templates' defaults mirror."""
    with open(pipeline, "rb") as f:
        doc = tomllib.load(f)
    name = doc["pipeline"]["name"]
    stream, queue = doc.get("stream", {}), doc.get("queue", {})
    store, notes = doc.get("store", {}), doc.get("notifications", {})
    processor = doc.get("processor", {})
    queue_name = queue.get("name") or f"{name}-batches"
    names = {
        "PipelineName": name,
        "StreamName": stream.get("name") or name,
        "QueueName": queue_name,
        "DeadLetterQueueName": queue.get("dead_letter") or f"{queue_name}-dlq",
        "BucketName": store.get("bucket") or name,
        "TopicName": notes.get("topic") or f"{name}-objects",
    }
    subscribers = notes.get("subscribers") or []
    if subscribers:
        names["SubscriberQueueName"] = subscribers[0]
    settings = {
        "ShardCount": stream.get("shards", 4),
        "MaxReceives": queue.get("max_receives", 5),
        "BatchSize": processor.get("receive_batch", 10),
        "MaximumConcurrency": max(2, processor.get("workers", 2)),
        # The literal start of the key template: where the processor may write.
        "DataPrefix": store.get("key_template", DEFAULT_KEY_TEMPLATE).split("{")[0],
        "ErrorPrefix": store.get("error_prefix", "errors/"),
        "StatePrefix": doc.get("aws", {}).get("state_prefix", "_pipehost/"),
        "SubscriberDatasets": sorted(doc.get("feeds", {})),
    }
    return names, settings


def check_pipeline_defaults(report: Report, cfn: dict, tf: Tf, pipeline: Path) -> None:
    names, settings = derived_defaults(pipeline)
    params = cfn["Parameters"]
    rel = os.path.relpath(pipeline, REPO) if pipeline.is_relative_to(REPO) else str(pipeline)
    for label, wanted in (("names", names), ("settings", settings)):
        problems = []
        for p, want in wanted.items():
            spec = params.get(p)
            if spec is None:
                problems.append(f"no parameter {p}")
                continue
            got_cfn = normalize_default(spec.get("Default"), spec.get("Type"))
            tdraw = tf.variables.get(snake(p), {}).get("default")
            got_tf = normalize_default(tf.attr(tdraw) if tdraw is not None else None, spec.get("Type"))
            want_n = normalize_default(want, spec.get("Type"))
            if isinstance(want_n, list):
                got_cfn, got_tf = sorted(got_cfn or []), sorted(got_tf or [])
            if got_cfn != want_n:
                problems.append(f"{p} default is {got_cfn!r}, {rel} gives {want_n!r}")
            if got_tf != want_n:
                problems.append(f"var.{snake(p)} default is {got_tf!r}, {rel} gives {want_n!r}")
        if label == "names" and "SubscriberQueueName" not in names:
            print(f"      note: {rel} lists no notifications.subscribers; SubscriberQueueName not compared")
        report.check(
            f"defaults follow {rel} ({label})",
            problems,
            ", ".join(f"{k}={v}" for k, v in wanted.items()),
        )


# ---------------------------------------------------------------- 5. terraform (optional)

def run_terraform(report: Report, plugin_dir: str | None) -> None:
    name = "terraform fmt/init/validate"
    terraform = shutil.which("terraform")
    if not terraform:
        report.skip(name, "no terraform on PATH (the hcl2 parse above still covers syntax)")
        return
    env = dict(os.environ, TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1")
    p = subprocess.run([terraform, "fmt", "-check", "-diff", str(TF_FILE)], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        report.fail("terraform fmt -check", [*p.stdout.splitlines()[:40]])
    else:
        report.passed("terraform fmt -check")
    if not plugin_dir or not Path(plugin_dir).is_dir():
        report.skip("terraform validate", "no provider mirror (--terraform-plugin-dir / $PIPEHOST_TF_PLUGIN_DIR); init needs one offline")
        return
    with tempfile.TemporaryDirectory(prefix="check-infra-tf-") as tmp:
        shutil.copy(TF_FILE, tmp)
        t = time.monotonic()
        for cmd in (
            [terraform, "init", "-backend=false", "-input=false", "-no-color", f"-plugin-dir={plugin_dir}"],
            [terraform, "validate", "-no-color"],
        ):
            p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                report.fail("terraform validate", [" ".join(cmd[:2]), *(p.stdout + p.stderr).splitlines()[-30:]])
                return
        report.passed("terraform validate", f"{time.monotonic() - t:.1f} s")


# ---------------------------------------------------------------- main

def _statements(cfn: dict, policy: str) -> list[dict]:
    """The statements of the inline policy named `policy`, in any role."""
    for res in cfn["Resources"].values():
        for pol in res.get("Properties", {}).get("Policies", []) if res["Type"] == "AWS::IAM::Role" else []:
            if pol.get("PolicyName") == policy:
                return pol["PolicyDocument"]["Statement"]
    return []


def _grants(statements: list[dict], action: str) -> list[str]:
    """The resources (as Sub templates) the statements allow `action` on."""
    out = []
    for st in statements:
        actions = st.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if st.get("Effect") == "Allow" and action in actions:
            res = st.get("Resource", [])
            for r in res if isinstance(res, list) else [res]:
                out.append(r["Fn::Sub"] if isinstance(r, dict) and "Fn::Sub" in r else json.dumps(r))
    return out


def check_exposure(report: Report, cfn: dict) -> None:
    """What is public and who may write what (issue 14): the ALB forwards only
    the API routes; the processor writes only data, error and marker keys;
    the web task may write the stream's error records; the bridge its state."""
    problems = []
    res = cfn["Resources"]
    listener = res.get("Listener", {}).get("Properties", {})
    if any(a.get("Type") == "forward" for a in listener.get("DefaultActions", [])):
        problems.append("Listener forwards every path (/metrics, /readyz included): forward only the API routes")
    routes = sorted(
        v
        for r in res.values()
        if r["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule"
        for c in r["Properties"].get("Conditions", [])
        for v in c.get("PathPatternConfig", {}).get("Values", [])
    )
    if routes != ["/logs", "/v1/feeds/*"]:
        problems.append(f"the listener rules forward {routes}, want exactly /v1/feeds/* and /logs")
    processor = _grants(_statements(cfn, "processor"), "s3:PutObject")
    want = ["${Bucket.Arn}/${DataPrefix}*", "${Bucket.Arn}/${ErrorPrefix}*", "${Bucket.Arn}/${StatePrefix}notified/*"]
    if sorted(processor) != sorted(want):
        problems.append(f"the processor may PutObject on {processor}, want only {want}")
    if "${Bucket.Arn}/${ErrorPrefix}stream/*" not in _grants(_statements(cfn, "web"), "s3:PutObject"):
        problems.append("the web task cannot write ErrorPrefix stream/* (records Kinesis refuses)")
    bridge = _grants(_statements(cfn, "bridge"), "s3:PutObject")
    for state in ("checkpoints", "sending"):
        if f"${{Bucket.Arn}}/${{StatePrefix}}{state}/*" not in bridge:
            problems.append(f"the bridge cannot write StatePrefix {state}/*")
    report.check("exposure and least privilege (ALB routes, S3 writes per role)", problems, "CloudFormation")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bin_pos", nargs="?", metavar="VENV_BIN", help="same as --bin")
    ap.add_argument("--bin", type=Path, help="a venv's bin directory holding cfn-lint and checkov")
    ap.add_argument("--pipeline", type=Path, default=REPO / "pipeline.toml")
    ap.add_argument("--terraform-plugin-dir", default=os.environ.get("PIPEHOST_TF_PLUGIN_DIR"))
    ap.add_argument("--no-checkov", action="store_true", help="skip the (slow) checkov step")
    args = ap.parse_args()
    bin_dir = args.bin or (Path(args.bin_pos) if args.bin_pos else None)
    if bin_dir is not None:
        bin_dir = bin_dir.absolute()  # not resolve(): a venv's python is a symlink
    ensure_python_modules(bin_dir)

    started = time.monotonic()
    report = Report()
    run_cfn_lint(report, find_tool("cfn-lint", bin_dir))
    cfn = load_cfn()
    tf = Tf(TF_FILE)
    report.passed("parse data_pipeline.tf (hcl2)", f"{len(tf.resources)} resources")
    check_parity(report, cfn, tf)
    check_pipeline_defaults(report, cfn, tf, args.pipeline.resolve())
    check_exposure(report, cfn)
    if args.no_checkov:
        report.skip("checkov", "--no-checkov")
    else:
        run_checkov(report, find_tool("checkov", bin_dir))
    run_terraform(report, args.terraform_plugin_dir)

    took = time.monotonic() - started
    if report.failed:
        print(f"\n{len(report.failed)} check(s) FAILED ({took:.0f} s): {', '.join(report.failed)}")
        return 1
    print(f"\nall infra checks passed ({took:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
