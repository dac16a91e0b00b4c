#!/usr/bin/env python3
"""Creates paddock's CloudFormation stacks in moto (an AWS emulator, started
here on 127.0.0.1 on a free port; nothing else is contacted) and reports
what moto made of them.

1. The parent: uploads the child templates to an S3 bucket in moto and
   creates deploy/aws/paddock.yaml with the parameters `paddock aws deploy`
   passes, as a real deployment would.
2. Each child on its own, in the parent's order, with the parameters the
   parent would give it: the parent's parameters, and the outputs of the
   children made before it (read from moto; a placeholder where moto gave
   none). This shows what moto does with every template even where it
   cannot run the parent.

For every stack it prints its status, the resources moto created (type and
physical id), the template's resources it did not create (types its
CloudFormation does not implement, or ones a condition leaves out), its
outputs, and moto's warnings.

Exit status: 0 when the parent stack, or else every child on its own,
reached CREATE_COMPLETE; 1 otherwise.

Usage: check-moto.py [--json | --quiet]
(the Python that runs it needs moto[server] and boto3:
 `eval "$(scripts/test-assets)"; "$PADDOCK_TEST_PYTHON" deploy/aws/check-moto.py`)
"""

import argparse
import json
import logging
import os
import pathlib
import re
import sys
import time
import urllib.request
import warnings

import boto3
import yaml
from moto.server import ThreadedMotoServer

# The tests' shims for two gaps in moto's CloudFormation (nested stacks'
# outputs, outputs of resource types moto skips): the same emulator as the
# Rust tests run.
exec((pathlib.Path(__file__).resolve().parents[2] / "crates/core/src/testkit/moto_shims.py").read_text())

HERE = pathlib.Path(__file__).resolve().parent
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
STACK = "paddock-check"
BUCKET = "paddock-templates"
PREFIX = "templates/"
PARAMETERS = {
    "TemplateBucket": BUCKET,
    "TemplatePrefix": PREFIX,
    "ImageTag": "0.1.0",
    "AdminEmail": "admin@example.com",
}


class _Loader(yaml.SafeLoader):
    """Reads a template's YAML, short-form intrinsics (!Ref ...) as their
    long forms ({"Ref": ...})."""


def _intrinsic(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_Loader.add_multi_constructor("!", _intrinsic)


def load(name):
    return yaml.load((HERE / f"{name}.yaml").read_text(), Loader=_Loader)


def describe(cfn, stack_name, template):
    """One stack's status, resources, missing resources and outputs."""
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    resources = cfn.list_stack_resources(StackName=stack_name)[
        "StackResourceSummaries"
    ]
    # moto lists an empty summary in place of the resources it skipped.
    made = {r["LogicalResourceId"]: r for r in resources if r.get("LogicalResourceId")}
    declared = {k: v["Type"] for k, v in load(template)["Resources"].items()}
    return {
        "stack": stack_name,
        "template": f"{template}.yaml",
        "status": stack["StackStatus"],
        "reason": stack.get("StackStatusReason"),
        "created": {
            k: {"type": r["ResourceType"], "id": r.get("PhysicalResourceId")}
            for k, r in sorted(made.items())
        },
        "not_created": {k: t for k, t in sorted(declared.items()) if k not in made},
        "outputs": {
            o["OutputKey"]: o.get("OutputValue")
            for o in sorted(stack.get("Outputs") or [], key=lambda o: o["OutputKey"])
        },
    }


class Failures(logging.Handler):
    """The last line of each exception the server logged (moto's 500s)."""

    last = []

    def emit(self, record):
        # werkzeug logs "Error on request:" and the formatted traceback,
        # whose last line is the exception.
        lines = [line for line in record.getMessage().splitlines() if line.strip()]
        if lines and lines[0].startswith("Error on request"):
            Failures.last.append(lines[-1])


def short(e):
    """An exception in one line; for moto's 500 page, the exception behind it."""
    text = f"{type(e).__name__}: {e}"
    if "Internal Server Error" in text:
        # The server logs the traceback just after it answers.
        for _ in range(50):
            if Failures.last:
                break
            time.sleep(0.02)
        behind = Failures.last.pop() if Failures.last else "not logged"
        return f"moto answered 500 Internal Server Error ({behind})"
    return text.splitlines()[0]


class ParentValues:
    """Evaluates the parent's parameter expressions for one child: Ref to
    a parameter or pseudo parameter, Sub, GetAtt <Child>.Outputs.<Key>."""

    def __init__(self, parent, parameters, stack_name):
        self.refs = {
            k: str(v.get("Default", "")) for k, v in parent["Parameters"].items()
        }
        self.refs.update(parameters)
        self.refs.update(
            {
                "AWS::StackName": stack_name,
                "AWS::Region": REGION,
                "AWS::AccountId": ACCOUNT,
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
            }
        )
        self.outputs = {}  # child logical id -> its outputs
        self.placeholders = []

    def value(self, expr):
        if isinstance(expr, str):
            return expr
        if "Ref" in expr:
            return self.refs[expr["Ref"]]
        if "Fn::Sub" in expr:
            return re.sub(
                r"\$\{([^}]+)\}",
                lambda m: self.value(
                    {"Fn::GetAtt": m.group(1).split(".", 1)}
                    if "." in m.group(1)
                    else {"Ref": m.group(1)}
                ),
                expr["Fn::Sub"],
            )
        if "Fn::GetAtt" in expr:
            child, attr = expr["Fn::GetAtt"]
            key = attr.removeprefix("Outputs.")
            got = self.outputs.get(child, {}).get(key)
            if got is None:
                got = f"moto-gave-no-{child}.{key}"
                self.placeholders.append(f"{child}.Outputs.{key}")
            return got
        raise ValueError(f"cannot evaluate {expr!r}")


def create(cfn, name, body, parameters):
    """Creates a stack and waits; returns an error text or None."""
    try:
        cfn.create_stack(
            StackName=name,
            TemplateBody=body,
            Parameters=[
                {"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()
            ],
            Capabilities=["CAPABILITY_IAM"],
        )
        cfn.get_waiter("stack_create_complete").wait(
            StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
    except Exception as e:
        return short(e)
    return None


def upload(s3, files):
    s3.create_bucket(Bucket=BUCKET)
    for name in files.values():
        s3.put_object(
            Bucket=BUCKET,
            Key=f"{PREFIX}{name}.yaml",
            Body=(HERE / f"{name}.yaml").read_bytes(),
        )


def run(cfn, s3, reset):
    report = {"parent": None, "children": []}
    parent = load("paddock")
    nested = {
        k: v
        for k, v in parent["Resources"].items()
        if v["Type"] == "AWS::CloudFormation::Stack"
    }
    files = {}
    for logical, r in nested.items():
        url = r["Properties"]["TemplateURL"]["Fn::Sub"]
        files[logical] = url.rsplit("}", 1)[1].removesuffix(".yaml")
    upload(s3, files)

    # 1. The parent, as `paddock aws deploy` creates it.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        error = create(cfn, STACK, (HERE / "paddock.yaml").read_text(), PARAMETERS)
        entry = {"stack": STACK, "template": "paddock.yaml", "error": error}
        try:
            entry.update(describe(cfn, STACK, "paddock"))
        except Exception as e:
            entry["status"] = f"not describable: {short(e)}"
        entry["moto_warnings"] = sorted({str(w.message) for w in caught})
    # The nested stacks moto made before it stopped.
    listed = {x["StackName"]: x["StackStatus"] for x in cfn.list_stacks()["StackSummaries"]}
    entry["listed_as"] = listed.pop(STACK, "not listed")
    entry["nested_stacks_made"] = listed
    report["parent"] = entry

    # 2. Each child on its own, with what the parent would pass it, in an
    # emptied moto: what a failed parent left behind (its first children's
    # log groups and tables) would collide with them.
    reset()
    upload(s3, files)
    values = ParentValues(parent, PARAMETERS, STACK)
    for logical, r in nested.items():
        params = {
            k: values.value(v) for k, v in r["Properties"].get("Parameters", {}).items()
        }
        name = f"{STACK}-{logical}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            error = create(cfn, name, (HERE / f"{files[logical]}.yaml").read_text(), params)
            entry = {"stack": name, "template": f"{files[logical]}.yaml", "error": error}
            try:
                entry.update(describe(cfn, name, files[logical]))
                values.outputs[logical] = entry["outputs"]
            except Exception as e:
                entry["status"] = f"not describable: {short(e)}"
            entry["moto_warnings"] = sorted({str(w.message) for w in caught})
        report["children"].append(entry)
    report["placeholders"] = values.placeholders
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument(
        "--quiet",
        action="store_true",
        help="print only the last line, unless the check fails",
    )
    args = ap.parse_args()

    # Fake credentials, so boto3 never looks for real ones.
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION=REGION,
    )
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(k, None)

    # The server's request log stays quiet; the exception behind a 500 is
    # kept (its last line) for the report, and moto's own log is dropped
    # (what it says is in its warnings, which the report lists).
    failures = Failures()
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.setLevel(logging.ERROR)
    werkzeug.addHandler(failures)
    werkzeug.propagate = False
    logging.getLogger("moto").addHandler(logging.NullHandler())
    logging.getLogger("moto").propagate = False
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        session = boto3.session.Session(region_name=REGION)
        report = run(
            session.client("cloudformation", endpoint_url=endpoint),
            session.client("s3", endpoint_url=endpoint),
            lambda: urllib.request.urlopen(
                urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
            ).read(),
        )
    finally:
        server.stop()

    parent_ok = report["parent"].get("status") == "CREATE_COMPLETE"
    children_ok = all(c.get("status") == "CREATE_COMPLETE" for c in report["children"])
    ok = parent_ok or children_ok
    summary = (
        f"moto: parent {report['parent'].get('status')}; each child on its own: "
        + ", ".join(f"{c['template']} {c.get('status')}" for c in report["children"])
    )
    if args.json:
        print(json.dumps(report, indent=2))
    elif args.quiet and ok:
        print(summary)
    else:
        for s in [report["parent"], *report["children"]]:
            print_stack(s)
        if report["placeholders"]:
            print("\nplaceholders given for outputs moto did not produce:")
            for p in sorted(set(report["placeholders"])):
                print(f"  {p}")
        print(f"\n{summary}")
    return 0 if ok else 1


def print_stack(s):
    print(f"\n== {s['stack']} ({s['template']}): {s.get('status')}")
    if s.get("error"):
        print(f"   error: {s['error']}")
    if s.get("reason"):
        print(f"   reason: {s['reason']}")
    if "created" in s:
        print(f"   created ({len(s['created'])}):")
        for k, r in s["created"].items():
            print(f"     {k:30} {r['type']:45} {r['id']}")
    if s.get("not_created"):
        print(f"   not created ({len(s['not_created'])}):")
        for k, t in s["not_created"].items():
            print(f"     {k:30} {t}")
    if s.get("outputs"):
        print("   outputs:")
        for k, v in s["outputs"].items():
            print(f"     {k:30} {v}")
    if "listed_as" in s:
        print(f"   ListStacks says: {s['listed_as']}")
    if "nested_stacks_made" in s:
        made = s["nested_stacks_made"]
        print(f"   nested stacks moto made ({len(made)}): "
              + (", ".join(f"{k} {v}" for k, v in made.items()) or "none"))
    for w in s.get("moto_warnings", []):
        print(f"   moto: {w}")


if __name__ == "__main__":
    sys.exit(main())
