"""schemathesis hooks of .ci/checks/schemathesis.sh.

Drops the failures that are the service's documented behaviour and that no JSON Schema in the
OpenAPI document can express. Each rule accepts one exact kind of answer to one check
(positive_data_acceptance: "a request that matches the document was refused"); any other failure,
of any check, still fails the run. schemathesis's summary counts what is dropped ("Filtered"), and
the count of each rule is printed when the run ends.
"""

import atexit
import collections
import json

import schemathesis

SCHEMA_VALID_REQUEST_REJECTED = "ST202"  # positive_data_acceptance

DROPPED = collections.Counter()


def _problem(response):
    """The RFC 9457 problem of an answer, or {}."""
    content_type = (response.headers.get("content-type") or [""])[0]
    if not content_type.startswith("application/problem+json"):
        return {}
    try:
        return json.loads(response.content)
    except ValueError:
        return {}


def _documented_refusal(case, response):
    """The rule that makes this refusal of a schema-valid request the documented answer."""
    problem = _problem(response)
    # An envelope whose ids, each of at most 255 characters, come to over 2400 bytes of UTF-8
    # together is a documented 422 naming the longest: PostgreSQL's index rows cannot hold them
    # (README, "How a delivery is answered"). JSON Schema's maxLength counts characters; no
    # schema can bound the bytes of several fields together.
    if response.status_code == 422 and "are stored" in problem.get("detail", ""):
        return "ids over 2400 bytes of UTF-8 together"
    if response.status_code != 400:
        return None
    # `cursor` is opaque: only a `nextCursor` the service issued is one (README, "Query it"); any
    # other string is a documented 400 naming `cursor`. A schema cannot list the issued values.
    if problem.get("parameter") == "cursor" and "cursor" in (case.query or {}):
        return "a cursor the service did not issue"
    # Feed positions are opaque in the same way: only a `next` or `position` the service gave out
    # is one (README, "Follow it").
    if problem.get("parameter") == "after" and "after" in (case.query or {}):
        return "a feed position the service did not give out"
    # At most 32 `eventType` values in all, repeated parameters and comma lists together
    # (docs/SECURITY.md); a schema can bound neither the commas in a value nor their sum.
    if problem.get("parameter") == "eventType" and "at most 32" in problem.get("detail", ""):
        return "more than 32 eventType values"
    # The query string is at most 8,192 bytes (docs/SECURITY.md): a bound on the sum of every
    # parameter's percent-encoded length, which no schema can state.
    if problem.get("parameter") == "query" and "longer than 8192 bytes" in problem.get("detail", ""):
        return "a query string over 8192 bytes"
    # `to` before `from` in a history query is a documented 400 naming `to`; a schema cannot
    # relate two parameters.
    if problem.get("parameter") == "to" and problem.get("detail") == "to must not be before from":
        return "`to` before `from`"
    # A webhook body holding U+0000 anywhere (a key or a string, at any depth) is a documented
    # 400: PostgreSQL's text and jsonb cannot store it (README, "How a delivery is answered").
    # The envelope's schema accepts any other field of any value, so it cannot exclude it.
    if (
        case.operation.path == "/webhooks/calry"
        and problem.get("type") == "urn:calry-hooks:problem:malformed-body"
        and "\\u0000" in problem.get("detail", "")
    ):
        return "U+0000 in a webhook body"
    return None


@schemathesis.hook
def map_case(context, case):
    """A feed long poll answers when `wait` (0-30 s) has passed if nothing new comes: hold it to 1 s,
    or the schema's own examples would outlast schemathesis's request timeout."""
    wait = (case.query or {}).get("wait")
    if isinstance(wait, bool):
        return case
    if isinstance(wait, int) and wait > 1:
        case.query["wait"] = 1
    elif isinstance(wait, str) and wait.isdigit() and 1 < int(wait) <= 30:
        case.query["wait"] = "1"
    return case


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if failure.code != SCHEMA_VALID_REQUEST_REJECTED:
        return True
    rule = _documented_refusal(case, response)
    if rule is None:
        return True
    DROPPED[rule] += 1
    return False


@atexit.register
def _report():
    if DROPPED:
        rules = ", ".join(f"{rule}: {n}" for rule, n in DROPPED.most_common())
        print(f"schemathesis: documented 400s to schema-valid requests, not failures: {rules}")
