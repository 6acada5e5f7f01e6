"""Parse an AWS XML response body with botocore's own response parser.

Usage: botocore_parse.py SERVICE OPERATION STATUS < body.xml
Prints the parsed response as JSON. The protocol (query for iam/sts, ec2 for ec2) comes from
botocore's service model, so this is what boto3 and the aws CLI would make of the body. For
an error (STATUS >= 300) `_retryable` says whether botocore's standard retry mode would retry
it. Exit code 3 when botocore is not installed.
"""
import json
import sys

try:
    import botocore.session
    from botocore import parsers
    from botocore.awsrequest import AWSResponse
    from botocore.retries import standard
except ImportError as e:  # pragma: no cover - reported to the Rust test
    print(f"botocore is not importable: {e}", file=sys.stderr)
    sys.exit(3)


def main() -> None:
    service, operation, status = sys.argv[1], sys.argv[2], int(sys.argv[3])
    body = sys.stdin.buffer.read()
    session = botocore.session.get_session()
    model = session.get_service_model(service)
    op = model.operation_model(operation)
    parser = parsers.create_parser(model.metadata["protocol"])
    parsed = parser.parse(
        {"status_code": status, "headers": {}, "body": body}, op.output_shape
    )
    if status >= 300:
        context = standard.RetryContext(
            attempt_number=1,
            operation_model=op,
            parsed_response=parsed,
            http_response=AWSResponse("", status, {}, None),
        )
        parsed["_retryable"] = standard.StandardRetryConditions().is_retryable(context)
    parsed["_protocol"] = model.metadata["protocol"]
    print(json.dumps(parsed, default=str, sort_keys=True))


if __name__ == "__main__":
    main()
