"""moto's standalone server, as the integration tests use it.

  python3 moto_server.py --port PORT

1. IAM is enforced (INITIAL_NO_AUTH_ACTION_COUNT), so a role without a
   permission really is refused, as in AWS.
2. One fix to that enforcement: real STS accepts AssumeRoleWithWebIdentity
   (and AssumeRoleWithSAML) unsigned, since the caller has only a token. moto
   demands a signature on every call once enforcement is on and fails with a
   500 on these two; they are exempted here, nothing else is changed.
3. A second fix: real SSM GetParameters accepts parameter ARNs (needed for
   shared parameters); moto's lists them as InvalidParameters. ARNs are
   resolved to the parameter's name first.
4. Bootstrap before enforcement starts: an admin user with an access key (the
   tests create fixtures with it), the role "reader" (may read secrets and
   parameters), the role "nobody" (may not), the role "hopper" (may only
   assume other roles and tag sessions) and the role "chained" (may read;
   its trust policy demands the external id "ext-4242"). Then one JSON line with the
   admin key is printed on stdout.
5. The server exits when its parent process (the test binary) is gone, so a
   crashed test run leaves no server behind.
"""
import argparse
import json
import os
import sys
import time

# Enforcement starts after the three bootstrap calls below.
BOOTSTRAP_CALLS = 3
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = str(BOOTSTRAP_CALLS)

import boto3  # noqa: E402
from moto.core.authorization import ActionAuthenticatorMixin  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402
from moto.ssm.models import SimpleSystemManagerBackend  # noqa: E402

ACCOUNT = "123456789012"
UNSIGNED_ACTIONS = {"AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"}
_enforce = ActionAuthenticatorMixin._authenticate_and_authorize_action


def _authenticate_and_authorize_action(self, iam_request_cls, resource="*"):
    if self._get_action() in UNSIGNED_ACTIONS:
        return None
    return _enforce(self, iam_request_cls, resource)


ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate_and_authorize_action

_get_parameters = SimpleSystemManagerBackend.get_parameters


def _get_parameters_by_name_or_arn(self, names):
    plain = {}
    for requested in names:
        if requested.startswith("arn:") and ":parameter/" in requested:
            rest = requested.split(":parameter/", 1)[1]
            base = rest.split(":")[0]
            # "parameter/a/b" is "/a/b"; "parameter/a" may be "a" or "/a".
            name = "/" + rest if ("/" + base) in self._parameters else rest
            plain[requested] = name
    found = _get_parameters(self, [plain.get(n, n) for n in names])
    return {n: found[plain.get(n, n)] for n in names if plain.get(n, n) in found}


SimpleSystemManagerBackend.get_parameters = _get_parameters_by_name_or_arn


def policy(actions):
    return json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
    )


def bootstrap(endpoint):
    plain = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam = boto3.client("iam", **plain)
    # Exactly BOOTSTRAP_CALLS unsigned-permission calls:
    iam.create_user(UserName="admin")
    iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=policy("*"))
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    admin = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    iam = boto3.client("iam", **admin)
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.example"},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                }
            ],
        }
    )
    iam.create_role(RoleName="reader", AssumeRolePolicyDocument=trust)
    iam.put_role_policy(
        RoleName="reader",
        PolicyName="read",
        PolicyDocument=policy(
            [
                "secretsmanager:GetSecretValue",
                "secretsmanager:BatchGetSecretValue",
                "secretsmanager:ListSecrets",
                "ssm:GetParameters",
                "ssm:GetParametersByPath",
            ]
        ),
    )
    iam.create_role(RoleName="nobody", AssumeRolePolicyDocument=trust)
    iam.create_role(RoleName="hopper", AssumeRolePolicyDocument=trust)
    iam.put_role_policy(RoleName="hopper", PolicyName="hop", PolicyDocument=policy(["sts:AssumeRole", "sts:TagSession"]))
    # Only sessions that present the external id may assume "chained" (moto
    # checks trust policies and their conditions on AssumeRole).
    chained_trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "*"},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                    "Condition": {"StringEquals": {"sts:ExternalId": "ext-4242"}},
                }
            ],
        }
    )
    iam.create_role(RoleName="chained", AssumeRolePolicyDocument=chained_trust)
    iam.put_role_policy(
        RoleName="chained",
        PolicyName="read",
        PolicyDocument=policy(["secretsmanager:GetSecretValue", "secretsmanager:BatchGetSecretValue", "ssm:GetParameters"]),
    )
    return key


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    parent = os.getppid()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    key = bootstrap(f"http://127.0.0.1:{args.port}")
    print(json.dumps({"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"], "account": ACCOUNT}), flush=True)
    while os.getppid() == parent:
        time.sleep(0.5)
    server.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
