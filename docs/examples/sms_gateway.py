"""A minimal SMS gateway for Passgate's `http` provider: it checks that each request really comes from
Passgate, hands the text to the carrier, and reports the delivery back, signed.

Both directions use Standard Webhooks signatures made with the secret the gateway shares with Passgate
(PASSGATE_SMS_HTTP_SECRET). Needs `pip install standardwebhooks`. Run it with the same secret:

    SMS_GATEWAY_SECRET=whsec_… PASSGATE_URL=https://passgate.example.com python sms_gateway.py 9000

and point Passgate at it: PASSGATE_SMS_PROVIDER=http, PASSGATE_SMS_HTTP_URL=http://gateway:9000/sms.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET = os.environ["SMS_GATEWAY_SECRET"]
PASSGATE_URL = os.environ.get("PASSGATE_URL", "http://127.0.0.1:8000").rstrip("/")


def send_to_carrier(to: str, text: str) -> bool:
    """Stands in for the carrier's API; True once the carrier has delivered the text."""
    print(f"SMS to {to}: {len(text)} characters handed to the carrier", flush=True)
    return True


def report(message_id: str, status: str) -> None:
    """Tell Passgate what became of a message ("delivered" or "failed"), signed with the shared secret."""
    body = json.dumps({"messageId": message_id, "status": status})
    report_id = f"report_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": report_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(report_id, now, body),
    }
    # 409: Passgate has not yet recorded the send; 429 and 5xx: it is busy or restarting. Try again, later
    # each time, for about a minute; any other answer is final.
    for attempt in range(12):
        request = urllib.request.Request(
            f"{PASSGATE_URL}/providers/http/status", data=body.encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                return
        except urllib.error.HTTPError as exc:
            if exc.code != 409 and exc.code != 429 and exc.code < 500:
                raise
        except urllib.error.URLError:
            pass  # Passgate unreachable for a moment
        time.sleep(min(10.0, 0.5 * 2**attempt))


class Gateway(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            # The exact bytes received, and the webhook-* headers; refuses a stale or altered request.
            sms = Webhook(SECRET).verify(body, dict(self.headers))
        except WebhookVerificationError:
            self.send_response(401)
            self.end_headers()
            return
        self.send_response(202)  # accepted: Passgate marks the message SENT
        self.end_headers()

        def deliver() -> None:
            delivered = send_to_carrier(sms["to"], sms["body"])
            report(sms["messageId"], "delivered" if delivered else "failed")

        threading.Thread(target=deliver, daemon=True).start()


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    ThreadingHTTPServer(("0.0.0.0", port), Gateway).serve_forever()  # noqa: S104
