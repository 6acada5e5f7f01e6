"""boto3/botocore side of the hive-api end-to-end tests (tests/e2e_iam.rs).

Usage:
  e2e_boto3.py run  < scenario.py   run a scenario (Python source) with the helpers below;
                                     prints the scenario's RESULT dict as JSON
  e2e_boto3.py sign < specs.json    sign requests with botocore's SigV4 signer; prints, per
                                     spec, the headers to send (JSON list)

Environment: HIVE_E2E_ENDPOINT (http://127.0.0.1:port), HIVE_E2E_ENDPOINTS (comma-separated,
for scenarios spanning several servers), HIVE_E2E_ADMIN_KEY, HIVE_E2E_ADMIN_SECRET.

A scenario fails by raising (an `assert` with the values in its message); the traceback goes
to stderr and the exit status is 1. Exit status 3: boto3 is not importable.
"""
import collections
import concurrent.futures
import datetime
import json
import os
import sys
import time
import traceback

try:
    import boto3
    import botocore.auth
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config
    from botocore.credentials import Credentials
    from botocore.exceptions import ClientError
    from botocore.validate import ParamValidator
except ImportError as e:  # pragma: no cover - reported to the Rust test
    print(f"boto3 is not importable: {e}", file=sys.stderr)
    sys.exit(3)

REGION = "us-east-1"
ENDPOINT = os.environ.get("HIVE_E2E_ENDPOINT", "")
ENDPOINTS = [e for e in os.environ.get("HIVE_E2E_ENDPOINTS", ENDPOINT).split(",") if e]
ADMIN = {
    "key": os.environ.get("HIVE_E2E_ADMIN_KEY", ""),
    "secret": os.environ.get("HIVE_E2E_ADMIN_SECRET", ""),
}
RESULT = {}


def _encode_documents(value, shape):
    """botocore hands IAM policy documents over decoded (dicts); the model says string."""
    if shape.name == "policyDocumentType" and isinstance(value, dict):
        return json.dumps(value)
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: _encode_documents(v, shape.members[k]) if k in shape.members else v
                for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [_encode_documents(v, shape.member) for v in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: _encode_documents(v, shape.value) for k, v in value.items()}
    return value


def check_shape(http_response=None, parsed=None, model=None, **_):
    """Every successful response must fit its botocore output shape: required members present,
    types right (botocore's parser alone is lenient and drops what it does not know)."""
    if http_response is None or http_response.status_code >= 300 or model.output_shape is None:
        return
    body = {k: v for k, v in parsed.items() if k != "ResponseMetadata"}
    report = ParamValidator().validate(_encode_documents(body, model.output_shape), model.output_shape)
    if report.has_errors():
        raise AssertionError(
            f"{model.name} response does not match the botocore model: {report.generate_report()}"
        )


STATUSES = collections.Counter()


def count_status(http_response=None, **_):
    """Every HTTP status a client received, retried attempts included."""
    if http_response is not None:
        STATUSES[http_response.status_code] += 1


def client(service, creds=None, endpoint=None, validate=True, attempts=1):
    """A boto3 client for `service` at the endpoint, as `creds` (default: the admin); its
    responses are checked against their botocore output shapes. `attempts` > 1 retries as
    botocore's standard mode does (503s and throttling); `STATUSES` counts every answer."""
    creds = creds or ADMIN
    c = boto3.client(
        service,
        endpoint_url=endpoint or ENDPOINT,
        region_name=REGION,
        aws_access_key_id=creds["key"],
        aws_secret_access_key=creds["secret"],
        aws_session_token=creds.get("token"),
        config=Config(
            retries={"max_attempts": attempts, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            parameter_validation=validate,
        ),
    )
    c.meta.events.register("after-call", check_shape)
    c.meta.events.register("after-call", count_status)
    return c


def error(fn, *args, **kwargs):
    """Call fn expecting an AWS error; returns (code, message, HTTP status)."""
    try:
        result = fn(*args, **kwargs)
    except ClientError as e:
        err = e.response.get("Error", {})
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return err.get("Code"), err.get("Message", ""), status
    raise AssertionError(f"expected an AWS error from {getattr(fn, '__name__', fn)}, got {result!r}")


def code_of(fn, *args, **kwargs):
    """Call fn: None when it succeeds, the AWS error code when it fails."""
    try:
        fn(*args, **kwargs)
    except ClientError as e:
        return e.response.get("Error", {}).get("Code")
    return None


def key_creds(access_key):
    """Credentials of a CreateAccessKey result's AccessKey."""
    return {"key": access_key["AccessKeyId"], "secret": access_key["SecretAccessKey"]}


def session_creds(credentials):
    """Credentials of an STS Credentials structure."""
    return {
        "key": credentials["AccessKeyId"],
        "secret": credentials["SecretAccessKey"],
        "token": credentials["SessionToken"],
    }


def doc(*statements):
    """A policy document (JSON text) of the given statements."""
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action, resource="*"):
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def deny(action, resource="*"):
    return {"Effect": "Deny", "Action": action, "Resource": resource}


def wait_until(predicate, timeout=1.0, step=0.05):
    """Poll predicate until it holds; returns the seconds it took (raises after timeout)."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)


def parallel(calls):
    """Run zero-argument callables at once; returns ('ok', value) or ('err', code) each."""

    def one(call):
        try:
            return ("ok", call())
        except ClientError as e:
            return ("err", e.response.get("Error", {}).get("Code"))

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(calls))) as pool:
        return list(pool.map(one, calls))


def sign(spec):
    """Headers for one request signed by botocore (SigV4, header form).

    spec: {url, body, key, secret, token?, service, skew_seconds?}; skew_seconds shifts the
    signer's clock.
    """
    skew = datetime.timedelta(seconds=spec.get("skew_seconds", 0))
    real = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: real() + skew
    try:
        request = AWSRequest(
            method="POST",
            url=spec["url"],
            data=spec["body"].encode("utf-8"),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        creds = Credentials(spec["key"], spec["secret"], spec.get("token"))
        SigV4Auth(creds, spec["service"], REGION).add_auth(request)
        return dict(request.headers.items())
    finally:
        botocore.auth.get_current_datetime = real


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "run"
    source = sys.stdin.read()
    if mode == "sign":
        print(json.dumps([sign(s) for s in json.loads(source)]))
        return
    scope = dict(globals())
    scope["__name__"] = "scenario"
    try:
        exec(compile(source, "scenario", "exec"), scope)
    except Exception:  # noqa: BLE001 - every failure goes to the Rust test
        traceback.print_exc()
        sys.exit(1)
    print(json.dumps(scope.get("RESULT", {}), default=str, sort_keys=True))


if __name__ == "__main__":
    main()
