"""Sign HTTP requests with botocore's own SigV4 signer (an implementation we did not write).

Usage: botocore_sign.py < requests.json > signed.json
Input: a JSON list of objects with
  service, region, access_key, secret_key, token (optional), method, url, body (text),
  headers (object), skew_seconds (optional: sign as if the clock were off by this much),
  presign_expires (optional: presigned query form instead of the Authorization header).
Output: a JSON list of {method, url, headers, body}, ready to send as is.
Exit code 3 when botocore is not installed.
"""
import datetime
import json
import sys

try:
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
except ImportError as e:  # pragma: no cover - reported to the Rust test
    print(f"botocore is not importable: {e}", file=sys.stderr)
    sys.exit(3)

_real_now = botocore.auth.get_current_datetime


def sign(spec):
    skew = datetime.timedelta(seconds=spec.get("skew_seconds", 0))
    botocore.auth.get_current_datetime = lambda: _real_now() + skew
    creds = Credentials(spec["access_key"], spec["secret_key"], spec.get("token"))
    request = AWSRequest(
        method=spec["method"],
        url=spec["url"],
        data=spec.get("body", "").encode("utf-8"),
        headers=dict(spec.get("headers", {})),
    )
    if "presign_expires" in spec:
        signer = botocore.auth.SigV4QueryAuth(
            creds, spec["service"], spec["region"], expires=spec["presign_expires"]
        )
    else:
        signer = botocore.auth.SigV4Auth(creds, spec["service"], spec["region"])
    signer.add_auth(request)
    prepared = request.prepare()
    return {
        "method": prepared.method,
        "url": prepared.url,
        "headers": {k: v for k, v in prepared.headers.items()},
        "body": spec.get("body", ""),
    }


def main() -> None:
    specs = json.load(sys.stdin)
    print(json.dumps([sign(s) for s in specs]))


if __name__ == "__main__":
    main()
