"""The Flow Service API of the real daemon: uploads with httpx and curl followed to their acknowledgement.

The token is made with the CLI (`gateway api token create`), the daemon runs as a subprocess with
`[api] enabled = true, port = 0` and says its port in the log. Every answer is validated against the
AFNOR Flow Service 1.3.0 OpenAPI file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from api_contract import Contract
from api_harness import Receiver, receiver_checks
from daemon_harness import Daemon, read_ack, wait_for
from invoice_factory import make_cii, make_ubl

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
CONTRACT = Contract()
API = """
[api]
enabled = true
port = 0
"""


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def api_port(d: Daemon) -> int:
    for line in d.stderr_path.read_text(errors="replace").splitlines():
        if "api server listening" in line:
            return int(json.loads(line)["port"])
    raise AssertionError("the daemon did not log its API port")


def follow(client: httpx.Client, flow_id: str, timeout: float = 90) -> dict[str, Any]:
    """GET the flow until its acknowledgement is no longer Pending (bounded)."""
    end = time.monotonic() + timeout
    while True:
        body = CONTRACT.check("GET", "/v1/flows/{flowId}", client.get(f"/v1/flows/{flow_id}"))
        if body["acknowledgement"]["status"] != "Pending" or time.monotonic() > end:
            return dict(body)
        time.sleep(0.2)


def _break_totals(xml: bytes) -> bytes:
    doc = etree.fromstring(xml)
    ns = {"cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"}
    doc.find(".//cbc:PayableAmount", ns).text = "999999.99"
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8")


def test_uploads_are_followed_to_their_acknowledgement(tmp_path: Path) -> None:
    with Daemon(tmp_path / "data", extra=API) as d:
        created = cli(d.data_dir, "api", "token", "create", "demo", "--label", "test")
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        assert token.startswith("gwt_") and "shown once" in created.stderr
        listed = cli(d.data_dir, "api", "token", "list")
        assert token not in listed.stdout and token[:12] in listed.stdout
        assert cli(d.data_dir, "api", "token", "create", "nobody").returncode == 1
        d.start()
        base = f"http://127.0.0.1:{api_port(d)}"
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            assert client.get("/v1/healthcheck").status_code == 200

            def deposit(name: str, data: bytes, syntax: str = "UBL", **info: Any) -> str:
                info = {"name": name, "flowSyntax": syntax, **info}
                response = client.post(
                    "/v1/flows",
                    files={"file": (name, data, "application/xml"), "flowInfo": (None, json.dumps(info))},
                )
                assert response.status_code == 202, response.text
                return str(CONTRACT.check("POST", "/v1/flows", response)["flowId"])

            valid = make_ubl(lines=2, number="API-D-1")
            ids = {
                "valid": deposit("valid.xml", valid, trackingId="d-valid"),
                "cii": deposit("valid-cii.xml", make_cii(lines=1, number="API-D-2"), "CII"),
                "invalid": deposit("invalid.xml", _break_totals(make_ubl(lines=1, number="API-D-3"))),
                "empty": deposit("empty.xml", b""),
                "garbage": deposit("garbage.xml", b"<not-closed"),
            }
            flows = {key: follow(client, flow_id) for key, flow_id in ids.items()}
            ids["duplicate"] = deposit("again.xml", valid)
            flows["duplicate"] = follow(client, ids["duplicate"])

            ok = flows["valid"]
            assert ok["acknowledgement"] == {"status": "Ok"}
            assert (ok["flowSyntax"], ok["flowType"], ok["trackingId"]) == (
                "UBL",
                "CustomerInvoice",
                "d-valid",
            )
            assert ok["flowProfile"] == "CIUS" and ok["updatedAt"] >= ok["submittedAt"]
            assert flows["cii"]["acknowledgement"]["status"] == "Ok" and flows["cii"]["flowSyntax"] == "CII"

            def reasons(key: str) -> list[str]:
                ack = flows[key]["acknowledgement"]
                assert ack["status"] == "Error", ack
                return [detail["reasonCode"] for detail in ack["details"]]

            assert reasons("invalid") == ["REJ_SEMAN"]
            assert reasons("empty") == ["EmptyFlow"]
            assert reasons("garbage") == ["InvalidSchema"]
            assert reasons("duplicate") == ["AlreadyExistingFlow"]
            assert ids["valid"] in flows["duplicate"]["acknowledgement"]["details"][0]["reasonMessage"]

            # the acknowledgement file of record, as written to out/, and the original
            ack = client.get(f"/v1/flows/{ids['valid']}", params={"docType": "Acknowledgement"})
            CONTRACT.check("GET", "/v1/flows/{flowId}", ack)
            assert read_ack_bytes(ack.content)["flow_id"] == ids["valid"]
            for fetched in d.acks_for("valid-cii.xml"):  # the partner fetched (and deleted) its ack
                fetched.unlink()
            kept = client.get(f"/v1/flows/{ids['cii']}", params={"docType": "Acknowledgement"})
            assert read_ack_bytes(kept.content)["flow_id"] == ids["cii"]  # still kept by the gateway
            original = client.get(f"/v1/flows/{ids['invalid']}", params={"docType": "Original"})
            assert CONTRACT.check("GET", "/v1/flows/{flowId}", original) is None
            assert b"999999.99" in original.content

            # search after the facts: errors only, then everything updated since the first submission
            errors = client.post("/v1/flows/search", json={"where": {"ackStatus": "Error"}})
            found = {r["flowId"] for r in CONTRACT.check("POST", "/v1/flows/search", errors)["results"]}
            assert found == {ids[k] for k in ("invalid", "empty", "garbage", "duplicate")}
            since = client.post("/v1/flows/search", json={"where": {"updatedAfter": "2020-01-01T00:00:00Z"}})
            assert len(CONTRACT.check("POST", "/v1/flows/search", since)["results"]) == 6

        # the same acknowledgement a dropped file gets: one ack file per flow in out/
        for name in ("valid.xml", "invalid.xml", "again.xml"):
            assert len(d.acks_for(name)) == 1, name
        assert read_ack(d.acks_for("again.xml")[0])["reasons"] == ["AlreadyExistingFlow"]
        assert d.stop() == 0


def read_ack_bytes(data: bytes) -> dict[str, Any]:
    path = Path(__file__).parent / ".ack-under-test.xml"  # read_ack takes a path
    try:
        path.write_bytes(data)
        return read_ack(path)
    finally:
        path.unlink(missing_ok=True)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_deposit_as_in_the_readme(tmp_path: Path) -> None:
    with Daemon(tmp_path / "data", extra=API) as d:
        token = cli(d.data_dir, "api", "token", "create", "acme").stdout.strip()
        d.start()
        base = f"http://127.0.0.1:{api_port(d)}"
        invoice = tmp_path / "INV-2026-001.xml"
        invoice.write_bytes(make_cii(lines=1, number="CURL-1"))
        # the README's command, word for word apart from the address and token
        result = subprocess.run(
            ["curl", "-sS", "--fail-with-body", "-X", "POST", f"{base}/v1/flows",
             "-H", f"Authorization: Bearer {token}",
             "-F", f"file=@{invoice};type=application/xml",
             "-F", 'flowInfo={"name":"INV-2026-001.xml","flowSyntax":"CII","trackingId":"po-4711"};type=application/json'],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        posted = json.loads(result.stdout)
        CONTRACT.validate_component("FullFlowInfo", posted)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            flow = follow(client, posted["flowId"])
        assert flow["acknowledgement"] == {"status": "Ok"} and flow["trackingId"] == "po-4711"
        status = subprocess.run(
            ["curl", "-sS", "-H", f"Authorization: Bearer {token}", f"{base}/v1/flows/{posted['flowId']}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        CONTRACT.validate_component("Flow", json.loads(status.stdout))
        refused = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", f"{base}/v1/flows",
             "-H", "Authorization: Bearer gwt_wrong", "-F", f"file=@{invoice}", "-F", "flowInfo={}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert refused.stdout == "401"
        assert len(d.flows()) == 1 and len(d.acks_for("INV-2026-001.xml", "acme")) == 1
        assert d.stop() == 0


def test_webhook_receiver_gets_signed_acknowledgement_events(tmp_path: Path) -> None:
    receiver = Receiver(answers=[503])  # the first call fails: the outbox retries it
    receiver.start()
    try:
        extra = API + "webhook_allow_private_networks = true\n\n[delivery]\nbackoff_base_seconds = 0.2\n"
        with Daemon(tmp_path / "data", extra=extra) as d:
            token = cli(d.data_dir, "api", "token", "create", "demo").stdout.strip()
            d.start()
            base = f"http://127.0.0.1:{api_port(d)}"
            with httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as client:
                created = client.post("/v1/webhooks", json={"callbackUrl": receiver.url})
                hook = CONTRACT.check("POST", "/v1/webhooks", created)
                errors_only = client.post("/v1/webhooks", json={"callbackUrl": receiver.url + "/errors",
                                                                "ackStatus": "Error"})  # fmt: skip
                CONTRACT.check("POST", "/v1/webhooks", errors_only)
                ids = {}
                for name, data in (("ok.xml", make_ubl(lines=1, number="HOOK-1")), ("bad.xml", b"<nope")):
                    response = client.post("/v1/flows", files={
                        "file": (name, data, "application/xml"),
                        "flowInfo": (None, json.dumps({"name": name, "flowSyntax": "UBL"})),
                    })  # fmt: skip
                    ids[name] = CONTRACT.check("POST", "/v1/flows", response)["flowId"]
                # ok.xml → 1 event (the Error-only hook skips it, after one 503 retry); bad.xml → 2 events
                wait_for(lambda: len(receiver.received) >= 4, 90, "webhook events", d)
                events: dict[tuple[str, str], dict[str, Any]] = {}
                for headers, body in receiver.received:
                    event = json.loads(body)
                    CONTRACT.validate_component("Flow", event)
                    events[(headers["x-path"], event["flowId"])] = event
                    if headers["x-path"].endswith("/gateway"):
                        receiver_checks(hook["signingKey"], headers, body)
                    else:
                        receiver_checks(errors_only.json()["signingKey"], headers, body)
                    assert headers["gateway-event"] == "flow.acknowledged"
                main_path = "/hooks/gateway"
                assert events[(main_path, ids["ok.xml"])]["acknowledgement"] == {"status": "Ok"}
                assert events[(main_path, ids["bad.xml"])]["acknowledgement"]["status"] == "Error"
                assert (main_path + "/errors", ids["bad.xml"]) in events
                assert (main_path + "/errors", ids["ok.xml"]) not in events
                # what the webhook said is what GET says
                now = CONTRACT.check("GET", "/v1/flows/{flowId}", client.get(f"/v1/flows/{ids['bad.xml']}"))
                assert now["acknowledgement"] == events[(main_path, ids["bad.xml"])]["acknowledgement"]
            assert d.stop() == 0
    finally:
        receiver.stop()
