"""Sign a set of requests with botocore's SigV4 signers and print them as JSON.

Used by tests/sigv4_botocore.rs: botocore is an implementation of SigV4 that Hive did not
write, so requests it signs are independent test vectors. Time is frozen so that the Rust
side can verify at a known instant.
"""

import datetime
import json
import sys
from urllib.parse import urlsplit

import botocore.auth
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

FROZEN = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
botocore.auth.get_current_datetime = lambda *a, **k: FROZEN

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ASIA = "ASIAIOSFODNN7EXAMPLE"
TOKEN = "FwoGZXIvYXdzEBYaDH+token/with=odd&chars%20"
FORM = "application/x-www-form-urlencoded; charset=utf-8"


class RepeatedHeadersAuth(SigV4Auth):
    """SigV4Auth fed repeated headers.

    AWSRequest keeps one value per header name, but botocore's canonicalisation (get_all, joined
    with commas) handles repeated ones; this feeds it the repeated headers an HTTP client sends.
    """

    repeated = ()

    def headers_to_sign(self, request):
        header_map = super().headers_to_sign(request)
        for k, v in self.repeated:
            header_map[k.lower()] = v  # HTTPMessage semantics: appends
        return header_map


def case(name, signer, service, method, url, *, params=None, data=b"", headers=(),
         token=None, context=None, region="us-east-1", repeated=()):
    creds = Credentials(ASIA if token else AKID, SECRET, token)
    if signer in (SigV4QueryAuth, S3SigV4QueryAuth):
        auth = signer(creds, service, region, expires=300)
    else:
        auth = signer(creds, service, region)
    req = AWSRequest(method=method, url=url, params=params or {}, data=data)
    for k, v in headers:
        req.headers[k] = v  # email.message semantics: repeated names are kept
    if context:
        req.context.update(context)
    auth.repeated = repeated
    auth.add_auth(req)
    prepared = req.prepare()
    parts = urlsplit(prepared.url)
    out_headers = [[k, v] for k, v in prepared.headers.items()]
    out_headers.extend([k, v] for k, v in repeated)
    if not any(k.lower() == "host" for k, _ in out_headers):
        out_headers.append(["Host", parts.netloc])
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode()
    return {
        "name": name,
        "method": prepared.method,
        "path": parts.path,
        "query": parts.query,
        "headers": out_headers,
        "body_hex": body.hex(),
        "access_key_id": creds.access_key,
        "secret": SECRET,
        "token": token,
        "presigned": signer in (SigV4QueryAuth, S3SigV4QueryAuth),
        "service": service,
        "region": region,
    }


def main():
    h = "https://hive.example:9443"
    cases = [
        case("iam-query-post", SigV4Auth, "iam", "POST", h + "/",
             data=b"Action=ListUsers&Version=2010-05-08",
             headers=[("Content-Type", FORM)]),
        case("sts-session-token", SigV4Auth, "sts", "POST", h + "/",
             data=b"Action=GetCallerIdentity&Version=2011-06-15",
             headers=[("Content-Type", FORM)], token=TOKEN),
        case("ec2-filters", SigV4Auth, "ec2", "POST", h + "/",
             data=b"Action=DescribeVpcs&Version=2016-11-15&Filter.1.Name=cidr&Filter.1.Value.1=10.0.0.0%2F16",
             headers=[("Content-Type", FORM)], region="eu-west-3"),
        case("get-odd-query", SigV4Auth, "iam", "GET", h + "/",
             params=[("b", "2"), ("a", "1"), ("a", "0"), ("empty", ""), ("sp", "a b+c"),
                     ("tilde", "~x*y"), ("uni", "\u00e9\u4e2d"), ("slash", "/x/y"),
                     ("Action", "ListUsers")]),
        case("raw-query-in-url", SigV4Auth, "iam", "GET",
             h + "/?zeta=1&alpha=b%2Fc&alpha=a&Version=2010-05-08"),
        case("odd-path", SigV4Auth, "execute-api", "GET",
             h + "/foo/../bar/./baz//qux%20x/%C3%A9/"),
        case("empty-path", SigV4Auth, "iam", "GET", h),
        case("repeated-and-spaced-headers", RepeatedHeadersAuth, "iam", "POST", h + "/",
             data=b"Action=ListRoles&Version=2010-05-08",
             headers=[("Content-Type", FORM), ("X-Custom", "a    b \t c")],
             repeated=[("X-Amz-Meta-Foo", "  one  "), ("X-Amz-Meta-Foo", "two   three"),
                       ("X-Amz-Meta-Foo", "")]),
        case("multi-line-header", SigV4Auth, "iam", "POST", h + "/",
             data=b"Action=ListGroups&Version=2010-05-08",
             headers=[("Content-Type", FORM), ("X-Folded", "first\n   second line")]),
        case("unsigned-payload", SigV4Auth, "iam", "POST", h + "/",
             data=b"Action=ListPolicies&Version=2010-05-08",
             headers=[("Content-Type", FORM)],
             context={"payload_signing_enabled": False}),
        case("declared-sha256", S3SigV4Auth, "s3", "PUT", h + "/bucket/key%20with%20space",
             data=b"hello world"),
        case("binary-body", SigV4Auth, "iam", "POST", h + "/", data=bytes(range(256))),
        case("presigned-get", SigV4QueryAuth, "iam", "GET", h + "/",
             params={"Action": "ListUsers", "Version": "2010-05-08"}),
        case("presigned-token", SigV4QueryAuth, "sts", "GET", h + "/",
             params={"Action": "GetCallerIdentity", "Version": "2011-06-15"}, token=TOKEN),
        case("presigned-post-body-moved", SigV4QueryAuth, "iam", "POST", h + "/",
             data={"Action": "GetUser", "Version": "2010-05-08", "UserName": "bob smith"}),
        case("presigned-s3", S3SigV4QueryAuth, "s3", "GET", h + "/bucket/a%2Bb/c d.txt"),
    ]
    json.dump(cases, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
