"""A long-running botocore bridge for the EC2 tests: one JSON request per stdin line, one JSON
answer per stdout line.

  {"cmd": "serialize", "op": "CreateVpc", "params": {...}}
      -> {"body": "Action=CreateVpc&Version=2016-11-15&..."}   (botocore's EC2 serializer)
  {"cmd": "parse", "op": "CreateVpc", "status": 200, "body": "<xml/>"}
      -> {"parsed": {...}, "unknown": ["vpc/bogusElement", ...]}

"parsed" is what boto3 and the aws CLI make of the body (botocore's EC2 parser against the
operation's output shape). "unknown" lists elements the output shape does not model (botocore
silently drops them, so a misspelt element would otherwise go unnoticed) and scalars that do
not parse as their modelled type. Exit code 3 when botocore is not installed.
"""
import json
import sys
import urllib.parse
import xml.etree.ElementTree as ET

try:
    import botocore.session
    from botocore import parsers, serialize
except ImportError as e:  # pragma: no cover - reported to the Rust test
    print(f"botocore is not importable: {e}", file=sys.stderr)
    sys.exit(3)


def local(tag):
    return tag.split("}", 1)[-1]


def check(node, shape, path, out):
    """Compare an element tree with a botocore shape; append problems to out."""
    kind = shape.type_name
    children = list(node)
    if kind == "structure":
        by_name = {}
        for name, member in shape.members.items():
            by_name[member.serialization.get("name", name)] = member
        for child in children:
            tag = local(child.tag)
            member = by_name.get(tag)
            if member is None:
                out.append(f"{path}/{tag}")
                continue
            check(child, member, f"{path}/{tag}", out)
    elif kind == "list":
        member = shape.member
        expected = member.serialization.get("name", "item")
        for child in children:
            tag = local(child.tag)
            if tag != expected:
                out.append(f"{path}/{tag} (expected {expected})")
                continue
            check(child, member, f"{path}/{tag}", out)
    else:
        if children:
            out.append(f"{path} (scalar with children)")
            return
        text = node.text or ""
        if kind in ("integer", "long"):
            try:
                int(text)
            except ValueError:
                out.append(f"{path} (not an integer: {text!r})")
        elif kind == "boolean" and text not in ("true", "false"):
            out.append(f"{path} (not a boolean: {text!r})")
        elif kind == "string" and shape.enum and text not in shape.enum:
            out.append(f"{path} (not in enum: {text!r})")


def main() -> None:
    session = botocore.session.get_session()
    model = session.get_service_model("ec2")
    # No client-side validation: the tests send out-of-range values on purpose.
    serializer = serialize.create_serializer("ec2", include_validation=False)
    parser = parsers.create_parser("ec2")
    for line in sys.stdin:
        req = json.loads(line)
        try:
            answer = handle(req, model, serializer, parser)
        except Exception as e:  # reported to the Rust test, which fails with it
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer, default=str, sort_keys=True), flush=True)


def handle(req, model, serializer, parser):
    op = model.operation_model(req["op"])
    if req["cmd"] == "serialize":
        body = serializer.serialize_to_request(req["params"], op)["body"]
        if isinstance(body, dict):
            body = urllib.parse.urlencode(body)
        return {"body": body}
    raw = req["body"].encode()
    parsed = parser.parse(
        {"status_code": req["status"], "headers": {}, "body": raw}, op.output_shape
    )
    unknown = []
    if req["status"] == 200 and op.output_shape is not None:
        members = {
            m.serialization.get("name", n): m
            for n, m in op.output_shape.members.items()
        }
        for child in ET.fromstring(raw):
            tag = local(child.tag)
            if tag == "requestId":
                continue
            if tag == "return" and tag not in members:
                continue  # EC2 answers <return> even where the model has no output
            member = members.get(tag)
            if member is None:
                unknown.append(tag)
            else:
                check(child, member, tag, unknown)
    return {"parsed": parsed, "unknown": unknown}


if __name__ == "__main__":
    main()
