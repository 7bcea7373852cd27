"""What the delivery log keeps of each exchange: the request as sent, the
answer's headers, and the plain words that say how an attempt went.

The request's headers are kept with the signature withheld, and with the
value of any header this extension does not write itself withheld too: such
headers (an owner's own, say) may carry credentials. Bodies are capped; an
answer's headers are capped like its body, and withheld whenever its body is
(a receiver reachable only as an exception to the private-address rule).
"""

from __future__ import annotations

import json

from ckanext.webhooks.http import Outcome
from ckanext.webhooks.vocabulary import AttemptOutcome

__all__ = [
    "WITHHELD",
    "describe_outcome",
    "logged_request_body",
    "logged_request_headers",
    "logged_response_headers",
    "parsed_headers",
]

WITHHELD = "(withheld)"
# Headers whose values this extension writes and that carry no secret.
SHOWN_REQUEST_HEADERS = frozenset(
    {"content-type", "user-agent", "webhook-id", "webhook-timestamp", "origin"}
)


def _text(data: bytes) -> str:
    # PostgreSQL text cannot hold NUL characters.
    return data.decode("utf-8", "replace").replace("\x00", "\ufffd")


def logged_request_headers(headers: dict[str, str]) -> str:
    """The request's headers, JSON ``[[name, value], ...]``, secrets withheld."""
    return json.dumps(
        [
            [name, value if name.lower() in SHOWN_REQUEST_HEADERS else WITHHELD]
            for name, value in headers.items()
        ]
    )


def logged_request_body(body: bytes, cap: int) -> str | None:
    return _text(body[:cap]) if cap else None


def logged_response_headers(outcome: Outcome, cap: int) -> str | None:
    """The answer's headers in the order received, as many whole ones as
    fit in ``cap`` bytes; None when the answer is withheld or never came."""
    if outcome.body_withheld or outcome.status is None:
        return None
    kept: list[list[str]] = []
    used = 0
    for name, value in outcome.fields.items():
        used += len(name) + len(value) + 4  # ": " and CRLF, as on the wire
        if used > cap:
            break
        kept.append([_text(name), _text(value)])
    return json.dumps(kept)


def parsed_headers(stored: str | None) -> list[list[str]] | None:
    return None if stored is None else json.loads(stored)


def describe_outcome(
    outcome: str, status_code: int | None, error: str | None, attempt: int
) -> str:
    """An attempt's outcome in plain words, as the delivery log shows it."""
    if status_code is None:
        reason = (error or "unknown error").removeprefix("connection failed: ")
        answer = "no response: " + reason[:1].lower() + reason[1:]
    elif 200 <= status_code < 300:
        answer = f"delivered: the receiver answered {status_code}"
    else:
        answer = f"the receiver answered {status_code}"
    if outcome == AttemptOutcome.RETRY.value:
        return f"{answer}; will retry"
    if outcome == AttemptOutcome.GIVEN_UP.value:
        noun = "attempt" if attempt == 1 else "attempts"
        return f"{answer}; given up after {attempt} {noun}"
    if outcome == AttemptOutcome.GONE.value:
        return f"{answer} (Gone): the webhook is disabled"
    return answer
