#!/usr/bin/python3
"""woo_standin.py — a WooCommerce REST API v3 stand-in for cpbridge's tests.

A local HTTP server (Python standard library only; run it with
/usr/bin/python3) that serves orders the way a real WooCommerce store does,
as documented in shared/reference/woocommerce-api.md, traps included:

  GET    /wp-json/wc/v3/orders              list: page, per_page, status,
                                            orderby, order, after/before,
                                            modified_after/_before,
                                            dates_are_gmt (with the offset
                                            trap), customer, include,
                                            exclude, offset, _fields;
                                            X-WP-Total, X-WP-TotalPages,
                                            Link (prev/next only)
  GET    /wp-json/wc/v3/orders/{id}
  PUT|PATCH|POST /wp-json/wc/v3/orders/{id} update (JSON body only with
                                            Content-Type: application/json)
  DELETE /wp-json/wc/v3/orders/{id}         trash, or ?force=true
  POST   /wp-json/wc/v3/orders/batch        update/delete (statuses not
                                            validated, as the real store)
  GET|POST /wp-json/wc/v3/orders/{id}/notes
  GET|DELETE /wp-json/wc/v3/orders/{id}/notes/{note_id}
  GET    /wp-json/wc/v3/products            list: page, per_page (1-100),
                                            sku (comma-separated), include;
                                            variations are not listed (their
                                            post type is product_variation)
  GET    /wp-json/wc/v3/products/{id}
  GET    /wp-json/wc/v3/products/{id}/variations   page, per_page, sku
  POST   /wp-json/wc/v3/products/batch      update stock_quantity and
  POST   /wp-json/wc/v3/products/{id}/variations/batch   manage_stock: 200
                                            with per-item errors, 413 over
                                            100 items (as orders/batch)

Authentication as WC_REST_Authentication does it: Basic auth or
consumer_key/consumer_secret in the query only when the request counts as
HTTPS (--https-mode); otherwise OAuth 1.0a one-legged (query, form body or
"Authorization: OAuth" header; HMAC-SHA1/SHA256; home-URL base string;
timestamp within 15 minutes; single-use nonces).

Control endpoints for tests (never authenticated, never logged):

  GET    /_health                  {"ok": true, "orders": N, "port": P}
  GET    /_orders                  ids of the stored orders
  POST   /_orders                  add or replace orders (object or array)
  DELETE /_orders                  remove every order
  GET    /_orders/{id}             stored copy, plus "notes": [...]
  POST   /_products                add products: an array of {"sku", "stock_quantity",
                                   "manage_stock", "variations": [{"sku", ...}]}
                                   or {"seed": N, "sku_prefix": "P", "variations": V,
                                   "every": K, "stock_quantity": Q} (N products,
                                   every K-th variable with V variations,
                                   SKUs P1..PN and P7-1..P7-V); answers
                                   {"ids": {sku: id}} (variations included)
  GET    /_products                {"stock": {sku: stock_quantity or null},
                                   "manage_stock": {sku: bool}, "ids": {sku: id}}
  DELETE /_products                remove every product and variation
  DELETE /_products/{id}            remove one product (and its variations) or
                                   one variation: the store then answers that
                                   the id is gone
  POST   /_orders/{id}/touch       {"date_modified_gmt": "..."} (default now)
                                   and any other top-level keys to set
  POST   /_fault  GET /_fault  DELETE /_fault     faults on demand
  POST   /_hook   GET /_hook   DELETE /_hook      "modify order X when page
                                                  N of the list is served"
  POST   /_clock                   {"offset_seconds": N}: skew server clock
  GET    /_requests  DELETE /_requests            the request log
  GET    /_latency                 {"latency_ms": N, "workers": W}
  POST   /_latency                 {"latency_ms": N, "workers": W} (either
                                   or both): change them at run time
  GET    /_stats     DELETE /_stats               request statistics (reset)

Latency and workers (a store on shared hosting answers in 200-800 ms and
has a few PHP-FPM workers): every API request (path under /wp-json/, after
the home URL's path; not the /_ endpoints, not other paths) waits
--latency-ms before it is handled, sleeping in its own handler thread, so
concurrent requests overlap. With --workers N at most N API requests are
handled at once (the latency sleep, faults and the API work included); the
others wait for a worker. 0 means no latency / no limit (the defaults). The
gate is a Condition-based counter rather than a BoundedSemaphore so that
POST /_latency can change the limit at run time (waiting requests see the
new limit at once). A worker is given back after the request is recorded
and before its answer is written, so a client that reads /_stats right
after its last answer sees in_flight 0.

Statistics (GET /_stats), counted when an API request arrives (before the
worker wait, latency and faults, so requests answered with a fault count):
  {"requests": N,                 API requests
   "by_route": {"GET /orders": n, "GET /orders/{id}": n, "PUT /orders/{id}": n,
                "POST /orders/batch": n, "GET /orders/{id}/notes": n,
                "POST /orders/{id}/notes": n,
                "GET /orders/{id}/notes/{note_id}": n, ...},
                                  HTTP method as sent (PUT, PATCH and POST
                                  on /orders/{id} each under its own; no
                                  X-HTTP-Method-Override) + route pattern
                                  under /wp-json/wc/v3; an unknown route is
                                  its path with number segments as {id}
   "batch_items": N,              items in the "update" arrays of batch
                                  requests, counted on arrival too
   "max_in_flight": N,            most API requests holding a worker at the
                                  same moment since the last reset
   "in_flight": N,                API requests holding a worker now
   "status_changes": N,           updates (single or batch item) that
                                  changed an order's status
   "notes_added": N,              notes created by POST /orders/{id}/notes
                                  (the system notes of status changes are
                                  not counted: there is one per status change)
   "stock_changes": N}            batch items applied to a product or variation
                                  (batch_items counts product batches too)
  DELETE /_stats zeroes every counter (max_in_flight restarts from in_flight).

Fault object (POST /_fault; a list is accepted too):
  {"path_regex": "/orders$", "method": "GET", "kind": KIND, "status": 503,
   "retry_after": "2", "delay_ms": 0, "times": 1, "page": 2}
  KIND is one of
    status          the status with the body real stores send for it
                    (401/403/404/413 WooCommerce JSON errors, 500 WordPress'
                    JSON critical error, 429/502/504 nginx HTML, 503
                    WordPress maintenance HTML, others a JSON error)
    html            the HTML "There has been a critical error on this
                    website" page, status 503 unless given
    truncated       the real answer cut in half, Content-Length of the cut
    short_read      the real answer's full Content-Length, half the body,
                    then the connection is closed
    slow            the real answer after delay_ms
    malformed_json  the real answer preceded by a PHP warning, status 200
    batch_item      one item of POST /orders/batch fails: it is not applied
                    and its "update" entry is {"id": ID, "error": {"code":
                    code, "message": message, "data": {"status": status}}};
                    the other items are applied and the answer stays 200,
                    as the real batch does. Extra keys: "order_id" (the
                    item's id, or a product or variation id in the products
                    batches; omitted = any item), "code" (default
                    "woocommerce_rest_cannot_edit"), "message" (default
                    "Sorry, you are not allowed to edit this resource.");
                    status defaults to 500. Realistic alternatives:
                    woocommerce_rest_shop_order_invalid_id 400 "Invalid ID.",
                    woocommerce_rest_cannot_edit 401/403 (permissions).
    unchanged       "200 but unchanged", as a store whose plugin swallows
                    the update: PUT/PATCH/POST /orders/{id} answers 200 with
                    the order as it is and applies nothing; in a batch the
                    item's "update" entry is the order as it is (no error).
                    Extra key "order_id": only updates of that order (single
                    or batch item); omitted = any update the fault matches.
  path_regex is searched (re.search) in the request path without the
  query; method defaults to any; times defaults to 1 (-1 = forever); page
  restricts the fault to GET list requests for that page. delay_ms applies
  to every kind. Faults are checked in the order they were added.
  batch_item and unchanged are not request faults: they are looked up by
  the update handlers, only for an order that exists (an unknown id gets
  its usual error and uses nothing), after validation and authentication,
  so a GET never uses them; path_regex (default "") and method (default
  any) filter them as usual, the path being the batch path for batch items
  (batch_item is consulted in batch requests only). Each order they affect
  is one use of times (a batch of 3 matching items uses 3); their delay_ms
  is slept per use, after the update, outside the store lock; page is
  refused for them. The request log's "fault" names them (comma-separated)
  when no request fault applied.

Hook object (POST /_hook; a list is accepted too):
  {"on_page": 2, "touch_id": 5105, "date_modified_gmt": "...", "times": 1,
   ...any other keys are set on the order, like /touch}
  Fires when a GET list request for that page arrives, before the page is
  computed: the order changes "between page N-1 and page N".

Orders come from --orders (repeatable): a JSON file holding an array or
one order, or a directory of *.json files (each one order or an array). An
entry that is not an object or has no integer id is kept "raw": it is served
as it is, after the real orders, in unfiltered lists only. Site-local date_*
fields are recomputed from date_*_gmt with --utc-offset-hours.

Choices where the real store varies or the stand-in simplifies:
  - A page past the end answers 200 [] with the real totals by default
    (posts storage); --past-end-totals zero gives X-WP-Total 0,
    X-WP-TotalPages 0 and a prev link to page=0, as observed live (§12).
  - Ties under orderby=date/modified come back by id, in the requested
    direction; --unstable-ties flips the tie order on even pages, which
    reproduces the skipped/repeated orders of paging by "modified" (§4).
  - Link headers leave credentials (oauth_*, consumer_*) out. dp is
    validated but money strings are served as stored.
  - The request log (GET /_requests, --log FILE as JSON lines) holds method,
    path, raw query, parsed params, headers, body, status and fault; a
    request is recorded before its answer is sent.

Usage:
  woo_standin.py --port-file F [--port N] [--orders DIR_OR_FILE] [--home-url URL]
                 [--key ck_...] [--secret cs_...] [--permissions read_write]
                 [--https-mode] [--utc-offset-hours -8] [--extra-status NAME]
                 [--past-end-totals real|zero] [--unstable-ties]
                 [--latency-ms N] [--workers N] [--log FILE] [--verbose]
  woo_standin.py --self-test            check the OAuth vector, the
                                        date/encoding rules and the batch
                                        faults (in-process); prints OK
  woo_standin.py --check-fixtures PATH  check the money arithmetic of order
                                        files (exit 1 on any problem)
"""

import argparse
import base64
import copy
import datetime
import decimal
import hashlib
import hmac
import json
import math
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# ---------------------------------------------------------------------------
# Statuses
# ---------------------------------------------------------------------------

CORE_STATUSES = ["pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed"]

# wc_get_order_status_name(): the labels used in "Order status changed
# from X to Y." notes.
STATUS_LABELS = {
    "pending": "Pending payment",
    "processing": "Processing",
    "on-hold": "On hold",
    "completed": "Completed",
    "cancelled": "Cancelled",
    "refunded": "Refunded",
    "failed": "Failed",
    "checkout-draft": "Draft",
    "trash": "Trash",
    "auto-draft": "Auto-draft",
}

# Statuses that "any" leaves out (WordPress' exclude_from_search ones).
ANY_EXCLUDES = ("trash", "auto-draft")

PAID_STATUSES = ("processing", "completed")
EDITABLE_STATUSES = ("pending", "on-hold", "auto-draft", "checkout-draft")

DATE_FIELDS = ("created", "modified", "completed", "paid")
WP_DT_FMT = "%Y-%m-%dT%H:%M:%S"

MAX_BODY = 64 * 1024 * 1024
NONCE_WINDOW = 15 * 60

# ---------------------------------------------------------------------------
# Encoding helpers: PHP's json_encode, rawurlencode and parse_str
# ---------------------------------------------------------------------------


def php_json(value):
    """JSON text as PHP's json_encode() writes it: compact, non-ASCII as
    \\uXXXX (surrogate pairs above the BMP) and "/" escaped as "\\/"."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    # "/" can only occur inside strings in JSON text, so this is safe.
    return text.replace("/", "\\/")


def rfc3986(text):
    """RFC 3986 percent-encoding: only A-Z a-z 0-9 - . _ ~ stay as they are
    (PHP's rawurlencode). Works on the raw bytes of the text."""
    return urllib.parse.quote(text.encode("utf-8", "surrogateescape"), safe="")


def php_parse_str(query):
    """Parse a query string or form body the way PHP fills $_GET: "+" and
    %XX decoded, a repeated plain key keeps its last value, "a[]=x" and
    "a[k]=x" build an (ordered) array. Returns {name: str | {key: str}}.
    Bytes that are not UTF-8 survive as surrogate escapes."""
    out = {}
    for key, value in urllib.parse.parse_qsl(
        query, keep_blank_values=True, encoding="utf-8", errors="surrogateescape"
    ):
        match = re.match(r"^([^\[\]]+)\[([^\[\]]*)\]$", key)
        if not match:
            out[key] = value
            continue
        name, index = match.group(1), match.group(2)
        current = out.get(name)
        if not isinstance(current, dict):
            current = {}
            out[name] = current
        if index == "":
            ints = [int(k) for k in current if re.fullmatch(r"-?\d+", k)]
            index = str(max(ints) + 1 if ints else 0)
        current[index] = value
    return out


def as_text(value):
    """A parsed parameter as display text (arrays as their values)."""
    if isinstance(value, dict):
        return ",".join(value.values())
    return value


# ---------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------

# rest_parse_date()'s pattern for a "date-time" argument.
WP_DATE_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,]\d+)?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?$"
)


def parse_wp_date(text):
    """Parse a date-time argument. Returns (naive datetime, offset) where
    offset is None for a naive value or a timedelta (UTC offset of the
    value). Fractions are dropped, as WP_Date_Query formats 'Y-m-d H:i:s'.
    Raises ValueError on anything else."""
    match = WP_DATE_RE.match(text)
    if not match:
        raise ValueError("Invalid date.")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    value = datetime.datetime(year, month, day, hour, minute, second)
    if match.group(7):
        return value, datetime.timedelta(0)
    if match.group(8):
        sign = 1 if match.group(8) == "+" else -1
        offset = datetime.timedelta(
            hours=int(match.group(9)), minutes=int(match.group(10) or 0)
        )
        return value, sign * offset
    return value, None


def parse_column(text):
    """A stored order date ("YYYY-MM-DDTHH:MM:SS", no zone) or None."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.strptime(text[:19], WP_DT_FMT)
    except ValueError:
        return None


def fmt_dt(value):
    return value.strftime(WP_DT_FMT)


def filter_value(text, dates_are_gmt, site_offset):
    """What a date filter compares against, and which column, per
    WP_Date_Query: a value with a zone is converted to site-local time; a
    naive value is used as it is. dates_are_gmt only picks the column —
    so a "Z" value with dates_are_gmt=true is shifted by the site offset
    (the real store's trap). Returns (naive datetime, use_gmt_column)."""
    value, offset = parse_wp_date(text)
    if offset is not None:
        value = value - offset + site_offset
    return value, bool(dates_are_gmt)


# ---------------------------------------------------------------------------
# OAuth 1.0a (one-legged), as WC_REST_Authentication::check_oauth_signature
# ---------------------------------------------------------------------------


def oauth_base_string(method, base_url, params):
    """The signature base string. params: {name: str | {index: str}}
    without oauth_signature. Keys sorted by raw bytes (strcmp); arrays
    signed with their indexes ("status[0]")."""
    pairs = []
    for key in sorted(params, key=lambda k: k.encode("utf-8", "surrogateescape")):
        value = params[key]
        if isinstance(value, dict):
            for index, item in value.items():
                pairs.append("%s%%5B%s%%5D=%s" % (rfc3986(key), index, rfc3986(item)))
        else:
            pairs.append("%s=%s" % (rfc3986(key), rfc3986(value)))
    return "%s&%s&%s" % (method.upper(), rfc3986(base_url), "%26".join(rfc3986(p) for p in pairs))


def oauth_signature(base_string, secret, method="HMAC-SHA1"):
    """base64(HMAC(secret + "&", base string)); method HMAC-SHA1/SHA256."""
    algo = hashlib.sha1 if method == "HMAC-SHA1" else hashlib.sha256
    digest = hmac.new((secret + "&").encode("utf-8"), base_string.encode("utf-8"), algo).digest()
    return base64.b64encode(digest).decode("ascii")


def parse_oauth_header(header):
    """OAuth parameters from an "Authorization: OAuth k="v", ..." header
    (WC_REST_Authentication::parse_header, urldecode included)."""
    if not header.startswith("OAuth "):
        return {}
    params = {}
    for match in re.finditer(r'(oauth_[a-z_-]*)=(:?"([^"]*)"|([^,]*))', header):
        raw = match.group(3) if match.group(3) else (match.group(4) or "")
        params[match.group(1)] = urllib.parse.unquote_plus(raw, errors="surrogateescape")
    return params


# ---------------------------------------------------------------------------
# Canned bodies
# ---------------------------------------------------------------------------

CRITICAL_ERROR_HTML = """<!DOCTYPE html>
<html lang="en-US">
<head>
\t<meta http-equiv="Content-Type" content="text/html; charset=utf-8" />
\t<meta name="viewport" content="width=device-width">
\t<meta name='robots' content='max-image-preview:large, noindex, follow' />
\t<title>WordPress &rsaquo; Error</title>
</head>
<body id="error-page">
\t<div class="wp-die-message"><p>There has been a critical error on this website.</p><p><a href="https://wordpress.org/documentation/article/faq-troubleshooting/">Learn more about troubleshooting WordPress.</a></p></div></body>
</html>
"""

MAINTENANCE_HTML = """<!DOCTYPE html>
<html lang="en-US">
<head>
\t<meta http-equiv="Content-Type" content="text/html; charset=utf-8" />
\t<title>Maintenance</title>
</head>
<body id="error-page">
\t<div class="wp-die-message"><h1>Briefly unavailable for scheduled maintenance. Check back in a minute.</h1></div></body>
</html>
"""

NOT_FOUND_HTML = "<!DOCTYPE html><html><body><h1>Page not found</h1></body></html>\n"

NGINX_REASONS = {429: "Too Many Requests", 502: "Bad Gateway", 504: "Gateway Time-out"}

PHP_WARNING = (
    "<br />\n<b>Warning</b>:  Undefined array key \"shipping\" in "
    "<b>/var/www/html/wp-content/plugins/shipping-helper/helper.php</b> "
    "on line <b>41</b><br />\n"
)


def nginx_html(status):
    reason = NGINX_REASONS.get(status, "Error")
    return (
        "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n"
        "<center><h1>%d %s</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n" % (status, reason, status, reason)
    )


# ---------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------


class Response:
    """One answer: status, headers (list of pairs), body bytes, and how to
    send it ("normal" or "short_read": full Content-Length, half the body,
    then close)."""

    def __init__(self, status, body=b"", ctype=None, headers=None):
        self.status = status
        self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.headers = list(headers or [])
        if ctype:
            self.headers.append(("Content-Type", ctype))
        self.mode = "normal"
        self.close = False

    def header(self, name):
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def set_header(self, name, value):
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        self.headers.append((name, value))


JSON_CTYPE = "application/json; charset=UTF-8"
HTML_CTYPE = "text/html; charset=UTF-8"

REST_HEADERS = [
    ("X-Robots-Tag", "noindex"),
    ("X-Content-Type-Options", "nosniff"),
    ("Access-Control-Expose-Headers", "X-WP-Total, X-WP-TotalPages, Link"),
    (
        "Access-Control-Allow-Headers",
        "Authorization, X-WP-Nonce, Content-Disposition, Content-MD5, Content-Type",
    ),
    ("Expires", "Wed, 11 Jan 1984 05:00:00 GMT"),
    ("Cache-Control", "no-cache, must-revalidate, max-age=0"),
]


def rest_json(status, value, headers=None):
    """A WordPress REST answer with a JSON body."""
    return Response(status, php_json(value), JSON_CTYPE, REST_HEADERS + list(headers or []))


def rest_error(status, code, message, **data):
    body = {"code": code, "message": message, "data": dict({"status": status}, **data)}
    return rest_json(status, body)


def auth_error(message):
    """401 woocommerce_rest_authentication_error with one of its messages."""
    return rest_error(401, "woocommerce_rest_authentication_error", message)


def cannot(code, message):
    """The 401 a permission check gives a request without a user."""
    return rest_error(401, "woocommerce_rest_cannot_" + code, message)


CANNOT_LIST = "Sorry, you cannot list resources."
CANNOT_VIEW = "Sorry, you cannot view this resource."
CANNOT_DELETE = "Sorry, you are not allowed to delete this resource."
NO_ROUTE = "No route was found matching the URL and request method."


def invalid_params(invalid):
    """400 rest_invalid_param for {param: (detail_code, message)}."""
    names = ", ".join(invalid)
    params = {name: msg for name, (code, msg) in invalid.items()}
    details = {
        name: {"code": code, "message": msg, "data": None} for name, (code, msg) in invalid.items()
    }
    return rest_error(
        400, "rest_invalid_param", "Invalid parameter(s): %s" % names, params=params,
        details=details,
    )


def control_json(status, value):
    """Answers of the control endpoints (plain JSON, not PHP-styled)."""
    return Response(status, json.dumps(value, indent=1) + "\n", JSON_CTYPE)


# ---------------------------------------------------------------------------
# Parameter validation (WordPress' rest_validate_value_from_schema, in part)
# ---------------------------------------------------------------------------

PHP_NUMERIC_RE = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


def int_param(params, name, default, invalid, minimum=None, maximum=None):
    if name not in params:
        return default
    raw = params[name]
    if isinstance(raw, dict) or not PHP_NUMERIC_RE.match(raw):
        invalid[name] = ("rest_invalid_type", "%s is not of type integer." % name)
        return default
    number = float(raw)
    if not math.isfinite(number) or number != round(number):
        invalid[name] = ("rest_invalid_type", "%s is not of type integer." % name)
        return default
    value = int(number)
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        invalid[name] = (
            "rest_out_of_bounds",
            "%s must be between %d (inclusive) and %d (inclusive)" % (name, minimum, maximum),
        )
    elif minimum is not None and value < minimum:
        invalid[name] = (
            "rest_out_of_bounds",
            "%s must be greater than or equal to %d" % (name, minimum),
        )
    return value


def one_of(values):
    if len(values) == 1:
        return values[0]
    return "%s and %s" % (", ".join(values[:-1]), values[-1])


def enum_param(params, name, default, allowed, invalid):
    if name not in params:
        return default
    raw = params[name]
    if isinstance(raw, dict) or raw not in allowed:
        invalid[name] = ("rest_not_in_enum", "%s is not one of %s." % (name, one_of(allowed)))
        return default
    return raw


def bool_param(params, name, default, invalid):
    if name not in params:
        return default
    raw = params[name]
    if isinstance(raw, dict) or raw.lower() not in ("true", "false", "1", "0"):
        invalid[name] = ("rest_invalid_type", "%s is not of type boolean." % name)
        return default
    return raw.lower() in ("true", "1")


def list_param(params, name):
    """An array argument: "a,b", "a b" or a[]=...; None when absent."""
    if name not in params:
        return None
    raw = params[name]
    if isinstance(raw, dict):
        return list(raw.values())
    return [item for item in re.split(r"[\s,]+", raw) if item != ""]


def int_list_param(params, name, invalid):
    items = list_param(params, name)
    if items is None:
        return None
    out = []
    for index, item in enumerate(items):
        if not re.fullmatch(r"\d+", item):
            invalid[name] = ("rest_invalid_type", "%s[%d] is not of type integer." % (name, index))
            return None
        out.append(int(item))
    return out


def date_param(params, name, invalid):
    if name not in params:
        return None
    raw = params[name]
    try:
        if isinstance(raw, dict):
            raise ValueError("array")
        parse_wp_date(raw)
    except ValueError:
        invalid[name] = ("rest_invalid_date", "Invalid date.")
        return None
    return raw


# ---------------------------------------------------------------------------
# Money arithmetic check for fixtures (--check-fixtures)
# ---------------------------------------------------------------------------

MONEY_RE = re.compile(r"^-?\d+(\.\d+)?$")
CENT = decimal.Decimal("0.01")


def money_problems(order):
    """Problems with an order's money, per WooCommerce's own rules:
    total = sum(line totals) + shipping_total + sum(fee totals) + total_tax
    (coupon discounts are already inside line totals), total_tax =
    cart_tax + shipping_tax, and the per-line and per-array sums."""
    D = decimal.Decimal
    problems = []

    def money(obj, key, where):
        value = obj.get(key) if isinstance(obj, dict) else None
        if not isinstance(value, str) or not MONEY_RE.match(value):
            problems.append("%s.%s is not a money string: %r" % (where, key, value))
            return D(0)
        return D(value)

    def rounded(value):
        return value.quantize(CENT, rounding=decimal.ROUND_HALF_UP)

    def same(a, b, what):
        if a != b:
            problems.append("%s: %s != %s" % (what, a, b))

    if not isinstance(order, dict):
        return ["not an object"]
    if order_key(order) is None or order["id"] <= 0:
        problems.append("id is not a positive integer: %r" % (order.get("id"),))
    lines = order.get("line_items")
    if not isinstance(lines, list) or not lines:
        problems.append("no line_items")
        lines = []
    lines_total = lines_tax = discount = discount_tax = D(0)
    for index, line in enumerate(lines):
        where = "line_items[%d]" % index
        if not isinstance(line, dict):
            problems.append("%s is not an object" % where)
            continue
        qty = line.get("quantity")
        if not isinstance(qty, (int, float)) or isinstance(qty, bool) or qty <= 0:
            problems.append("%s.quantity is not positive: %r" % (where, qty))
            qty = None
        if not isinstance(line.get("sku"), str) or not line.get("sku"):
            problems.append("%s.sku is empty" % where)
        subtotal = money(line, "subtotal", where)
        total = money(line, "total", where)
        subtotal_tax = money(line, "subtotal_tax", where)
        total_tax = money(line, "total_tax", where)
        if total > subtotal:
            problems.append("%s.total %s > subtotal %s" % (where, total, subtotal))
        taxes = line.get("taxes") or []
        unrounded = sum((D(t.get("total", "0") or "0") for t in taxes), D(0))
        if taxes:
            same(rounded(unrounded), total_tax, "%s.total_tax vs taxes[]" % where)
        price = line.get("price")
        if qty and isinstance(price, (int, float)):
            if abs(float(total) / qty - price) > 1e-9 * max(1.0, abs(price)):
                problems.append(
                    "%s.price %r != total/quantity %r" % (where, price, float(total) / qty)
                )
        lines_total += total
        lines_tax += total_tax
        discount += subtotal - total
        discount_tax += subtotal_tax - total_tax
    ship_total = ship_tax = D(0)
    for index, line in enumerate(order.get("shipping_lines") or []):
        ship_total += money(line, "total", "shipping_lines[%d]" % index)
        ship_tax += money(line, "total_tax", "shipping_lines[%d]" % index)
    fee_total = fee_tax = D(0)
    for index, line in enumerate(order.get("fee_lines") or []):
        fee_total += money(line, "total", "fee_lines[%d]" % index)
        fee_tax += money(line, "total_tax", "fee_lines[%d]" % index)
    coupon_discount = coupon_tax = D(0)
    for index, line in enumerate(order.get("coupon_lines") or []):
        coupon_discount += money(line, "discount", "coupon_lines[%d]" % index)
        coupon_tax += money(line, "discount_tax", "coupon_lines[%d]" % index)
    same(money(order, "shipping_total", "order"), ship_total, "shipping_total vs shipping_lines")
    same(money(order, "shipping_tax", "order"), ship_tax, "shipping_tax vs shipping_lines")
    same(money(order, "cart_tax", "order"), lines_tax + fee_tax, "cart_tax vs lines+fees")
    same(money(order, "discount_total", "order"), discount, "discount_total vs lines")
    same(money(order, "discount_tax", "order"), discount_tax, "discount_tax vs lines")
    if order.get("coupon_lines"):
        same(coupon_discount, discount, "coupon discounts vs lines")
        same(coupon_tax, discount_tax, "coupon discount_tax vs lines")
    total_tax = money(order, "total_tax", "order")
    same(total_tax, lines_tax + fee_tax + ship_tax, "total_tax vs cart_tax+shipping_tax")
    same(
        money(order, "total", "order"),
        lines_total + ship_total + fee_total + total_tax,
        "total vs lines+shipping+fees+tax",
    )
    tax_lines = order.get("tax_lines") or []
    if tax_lines:
        same(sum((money(t, "tax_total", "tax_lines") for t in tax_lines), D(0)),
             lines_tax + fee_tax, "tax_lines tax_total vs cart_tax")
        same(sum((money(t, "shipping_tax_total", "tax_lines") for t in tax_lines), D(0)),
             ship_tax, "tax_lines shipping_tax_total vs shipping_tax")
    elif lines_tax + fee_tax + ship_tax != 0:
        problems.append("taxes charged but no tax_lines")
    for index, refund in enumerate(order.get("refunds") or []):
        if money(refund, "total", "refunds[%d]" % index) >= 0:
            problems.append("refunds[%d].total is not negative" % index)
    return problems


# ---------------------------------------------------------------------------
# The store: orders, notes, nonces, faults, hooks, request log
# ---------------------------------------------------------------------------


def order_key(entry):
    """The integer id of a stored entry, or None for a "raw" entry (not an
    object, or no integer id) that is served only in unfiltered lists."""
    if isinstance(entry, dict):
        value = entry.get("id")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def load_orders(path):
    """Orders from a file (an array, or one order) or a directory of *.json
    files (each one order or an array), in name order."""
    files = []
    if os.path.isdir(path):
        files = sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".json"))
    else:
        files = [path]
    entries = []
    for name in files:
        try:
            with open(name, "rb") as handle:
                value = json.loads(handle.read().decode("utf-8"))
        except OSError as err:
            raise SystemExit("woo_standin: %s: %s" % (name, err.strerror or err))
        except (UnicodeDecodeError, ValueError) as err:
            raise SystemExit("woo_standin: %s: not JSON: %s" % (name, err))
        if isinstance(value, list):
            entries.extend(value)
        else:
            entries.append(value)
    return entries


def new_stats():
    """Zeroed GET /_stats counters (in_flight and max_in_flight live in the
    Gate)."""
    return {"requests": 0, "by_route": {}, "batch_items": 0, "status_changes": 0,
            "notes_added": 0, "stock_changes": 0}


def route_key(method, route):
    """The by_route key of an API request: the method as sent and the route
    pattern under /wp-json/wc/v3 ("PUT /orders/{id}"); an unknown route is
    its path with number segments as {id}."""
    for regex, pattern in ROUTE_PATTERNS:
        if regex.match(route):
            return "%s %s" % (method, pattern)
    path = re.sub(r"/\d+(?=/|$)", "/{id}", route.rstrip("/") or "/")
    if path.startswith("/wp-json/wc/v3/"):
        path = path[len("/wp-json/wc/v3"):]
    return "%s %s" % (method, path)


class Gate:
    """The PHP-FPM pool of --workers: at most limit holders at once (0 = no
    limit), with the number of holders now and its high-water mark. A
    Condition and a counter rather than a BoundedSemaphore, so the limit
    can change at run time (POST /_latency)."""

    def __init__(self, limit):
        self.cond = threading.Condition()
        self.limit = limit
        self.active = 0
        self.peak = 0

    def enter(self):
        with self.cond:
            while self.limit and self.active >= self.limit:
                self.cond.wait()
            self.active += 1
            self.peak = max(self.peak, self.active)

    def leave(self):
        with self.cond:
            self.active -= 1
            self.cond.notify()

    def set_limit(self, limit):
        with self.cond:
            self.limit = limit
            self.cond.notify_all()

    def snapshot(self):
        """(in_flight, max_in_flight)."""
        with self.cond:
            return self.active, self.peak

    def reset_peak(self):
        with self.cond:
            self.peak = self.active


class Store:
    """All server state, behind one lock."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.lock = threading.RLock()
        self.orders = {}  # id -> order dict
        self.raw = []  # entries without an integer id, served as they are
        self.notes = {}  # id -> [note]
        self.products = {}  # id -> product (type simple or variable, "variations": [ids])
        self.variations = {}  # id -> variation ("parent_id")
        self.next_product_id = 10001  # products and variations share the post ids
        self.next_note_id = 1
        self.nonces = {}  # timestamp -> nonce (WooCommerce keys them by timestamp)
        self.faults = []
        self.hooks = []
        self.requests = []
        self.request_seq = 0
        self.clock_offset = 0.0
        self.latency_ms = cfg.latency_ms
        self.gate = Gate(cfg.workers)
        self.stats = new_stats()

    # -- time -------------------------------------------------------------
    def now(self):
        return time.time() + self.clock_offset

    def now_gmt(self):
        return datetime.datetime.fromtimestamp(int(self.now()), datetime.timezone.utc).replace(
            tzinfo=None
        )

    def site_offset(self):
        return datetime.timedelta(hours=self.cfg.utc_offset_hours)

    def sync_local_dates(self, order):
        """Derive site-local date_* from date_*_gmt (or the reverse when
        only the local one is set), as the store keeps them."""
        for field in DATE_FIELDS:
            gmt_key, local_key = "date_%s_gmt" % field, "date_%s" % field
            gmt = parse_column(order.get(gmt_key))
            local = parse_column(order.get(local_key))
            if gmt is not None:
                order[local_key] = fmt_dt(gmt + self.site_offset())
            elif local is not None and order.get(gmt_key, None) is None and gmt_key in order:
                order[gmt_key] = fmt_dt(local - self.site_offset())

    # -- orders -----------------------------------------------------------
    def put_entries(self, entries, stamp_new=False):
        """Add or replace entries (orders by id; others kept raw).
        Returns (added, replaced)."""
        added = replaced = 0
        with self.lock:
            for entry in entries:
                entry = copy.deepcopy(entry)
                key = order_key(entry)
                if key is None:
                    self.raw.append(entry)
                    added += 1
                    continue
                if stamp_new:
                    now = fmt_dt(self.now_gmt())
                    entry.setdefault("date_created_gmt", now)
                    entry.setdefault("date_modified_gmt", now)
                self.sync_local_dates(entry)
                if key in self.orders:
                    replaced += 1
                else:
                    added += 1
                self.orders[key] = entry
                self.notes.setdefault(key, [])
        return added, replaced

    def touch(self, order_id, changes):
        """Set date_modified_gmt (default now) and any other given keys on
        an order. Returns the order or None."""
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                return None
            for key, value in changes.items():
                if key not in ("id", "date_modified_gmt"):
                    order[key] = copy.deepcopy(value)
            order["date_modified_gmt"] = changes.get("date_modified_gmt") or fmt_dt(self.now_gmt())
            self.sync_local_dates(order)
            return order

    def add_note(self, order_id, text, customer_note=False, added_by_user=False, author=None):
        with self.lock:
            now = self.now_gmt()
            note = {
                "id": self.next_note_id,
                "author": author or ("shop-api" if added_by_user else "WooCommerce"),
                "date_created": fmt_dt(now + self.site_offset()),
                "date_created_gmt": fmt_dt(now),
                "note": text,
                "customer_note": bool(customer_note),
                "added_by_user": bool(added_by_user),
            }
            self.next_note_id += 1
            self.notes.setdefault(order_id, []).append(note)
            return note

    def notes_of(self, order_id):
        """Newest first (by date, then id ascending), as the real list."""
        with self.lock:
            notes = list(self.notes.get(order_id, []))
        notes.sort(key=lambda n: n["id"])
        notes.sort(key=lambda n: n["date_created_gmt"], reverse=True)
        return notes

    # -- nonces -----------------------------------------------------------
    def use_nonce(self, timestamp, nonce):
        """WooCommerce's nonce check: False when already used. The used
        nonces are kept by timestamp, so a second nonce in the same second
        replaces the first (a quirk of the real store, kept)."""
        with self.lock:
            if nonce in self.nonces.values():
                return False
            self.nonces[timestamp] = nonce
            limit = self.now() - NONCE_WINDOW
            for stamp in [s for s in self.nonces if s < limit]:
                del self.nonces[stamp]
            return True

    # -- products -------------------------------------------------------------
    def new_stock_item(self, spec, parent_id=None):
        """One product or variation from a /_products entry; its id."""
        if not isinstance(spec, dict) or not isinstance(spec.get("sku"), str) or not spec["sku"]:
            raise ValueError("each product and variation needs a non-empty \"sku\"")
        quantity = spec.get("stock_quantity")
        if quantity is not None and (not isinstance(quantity, int) or isinstance(quantity, bool)):
            raise ValueError("stock_quantity of %s is not an integer" % spec["sku"])
        item_id = self.next_product_id
        self.next_product_id += 1
        item = {
            "id": item_id,
            "sku": spec["sku"],
            "name": spec.get("name") or spec["sku"],
            "manage_stock": bool(spec.get("manage_stock", quantity is not None)),
            "stock_quantity": quantity,
            "date_modified_gmt": fmt_dt(self.now_gmt()),
        }
        if parent_id is None:
            item["type"] = "variable" if spec.get("variations") else "simple"
            item["variations"] = []
            self.products[item_id] = item
        else:
            item["parent_id"] = parent_id
            self.variations[item_id] = item
        set_stock_status(item)
        return item_id

    def add_products(self, body):
        """POST /_products: {sku: id} of what was added; raises ValueError."""
        if isinstance(body, dict) and "seed" in body:
            specs = seed_products(body)
        elif isinstance(body, list):
            specs = body
        elif isinstance(body, dict):
            specs = [body]
        else:
            raise ValueError("send a product, an array of products or {\"seed\": N}")
        ids = {}
        with self.lock:
            items = list(self.products.values()) + list(self.variations.values())
            known = {i["sku"] for i in items}
            for spec in specs:
                variations = spec.get("variations") if isinstance(spec, dict) else None
                if variations is not None and not isinstance(variations, list):
                    raise ValueError("variations is not an array")
                for one in [spec] + list(variations or []):
                    sku = one.get("sku") if isinstance(one, dict) else None
                    if sku in known or sku in ids:
                        raise ValueError("SKU %r exists (SKUs are unique in a store)" % sku)
                    if isinstance(sku, str):
                        ids[sku] = None
            ids = {}
            for spec in specs:
                parent = self.new_stock_item(spec)
                ids[spec["sku"]] = parent
                for child in spec.get("variations") or []:
                    child_id = self.new_stock_item(child, parent)
                    self.products[parent]["variations"].append(child_id)
                    ids[child["sku"]] = child_id
        return ids

    def remove_product(self, item_id):
        """DELETE /_products/{id}: True when something was removed."""
        with self.lock:
            product = self.products.pop(item_id, None)
            if product is not None:
                for child in product["variations"]:
                    self.variations.pop(child, None)
                return True
            variation = self.variations.pop(item_id, None)
            if variation is None:
                return False
            parent = self.products.get(variation["parent_id"])
            if parent is not None:
                parent["variations"].remove(item_id)
            return True

    def stock_snapshot(self):
        with self.lock:
            items = list(self.products.values()) + list(self.variations.values())
            return {
                "stock": {i["sku"]: i["stock_quantity"] for i in items},
                "manage_stock": {i["sku"]: i["manage_stock"] for i in items},
                "ids": {i["sku"]: i["id"] for i in items},
            }

    # -- faults and hooks ---------------------------------------------------
    def take_fault(self, method, path, list_page):
        """The first request fault matching the request, used once."""
        with self.lock:
            for fault in self.faults:
                if fault["kind"] in ITEM_FAULT_KINDS:
                    continue  # looked up by the update handlers
                if fault["method"] and fault["method"] != method:
                    continue
                if not fault["regex"].search(path):
                    continue
                if fault["page"] is not None and fault["page"] != list_page:
                    continue
                return self.use_fault(fault)
        return None

    def take_item_fault(self, kinds, method, path, order_id):
        """The first fault of one of kinds (batch_item, unchanged) matching
        an update of order_id, used once."""
        with self.lock:
            for fault in self.faults:
                if fault["kind"] not in kinds:
                    continue
                if fault["method"] and fault["method"] != method:
                    continue
                if not fault["regex"].search(path):
                    continue
                if fault["order_id"] is not None and fault["order_id"] != order_id:
                    continue
                return self.use_fault(fault)
        return None

    def use_fault(self, fault):
        """Count one use of a fault (removed when used up); its copy."""
        with self.lock:
            if fault["times"] > 0:
                fault["times"] -= 1
            fault["hits"] += 1
            if fault["times"] == 0:
                self.faults.remove(fault)
            return dict(fault)

    def take_hooks(self, page):
        with self.lock:
            fired = [h for h in self.hooks if h["on_page"] == page]
            for hook in fired:
                if hook["times"] > 0:
                    hook["times"] -= 1
                if hook["times"] == 0:
                    self.hooks.remove(hook)
            return [dict(h) for h in fired]

    # -- statistics -----------------------------------------------------------
    def count_request(self, req, route):
        """Count an API request on arrival (GET /_stats)."""
        key = route_key(req.method, route)
        items = 0
        batch = BATCH_RE.match(route) or PRODUCT_BATCH_RE.match(route) or VARIATION_BATCH_RE.match(
            route
        )
        if req.method in ("POST", "PUT", "PATCH") and batch:
            update = req.params().get("update")
            if isinstance(update, (list, dict)):
                items = len(update)
        with self.lock:
            self.stats["requests"] += 1
            self.stats["by_route"][key] = self.stats["by_route"].get(key, 0) + 1
            self.stats["batch_items"] += items

    def count(self, name, amount=1):
        with self.lock:
            self.stats[name] += amount

    def stats_snapshot(self):
        with self.lock:
            out = dict(self.stats)
            out["by_route"] = dict(sorted(self.stats["by_route"].items()))
        out["in_flight"], out["max_in_flight"] = self.gate.snapshot()
        return out

    def reset_stats(self):
        with self.lock:
            self.stats = new_stats()
        self.gate.reset_peak()

    # -- request log --------------------------------------------------------
    def record(self, rec):
        with self.lock:
            self.request_seq += 1
            rec["seq"] = self.request_seq
            self.requests.append(rec)
            if self.cfg.log:
                with open(self.cfg.log, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(rec) + "\n")


# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------


class Request:
    """What the API needs from an HTTP request."""

    def __init__(self, method, raw_path, headers, body):
        self.method = method
        split = urllib.parse.urlsplit(raw_path)
        self.path = split.path
        self.raw_query = split.query
        self.query = php_parse_str(split.query)
        self.headers = headers
        self.body = body
        self.item_faults = []  # batch_item/unchanged faults used by the handler
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        self.ctype = ctype
        self.json_error = None
        self.json = None
        self.form = {}
        if ctype == "application/json" or ctype.endswith("+json"):
            if body.strip():
                try:
                    self.json = json.loads(body.decode("utf-8"))
                except (UnicodeDecodeError, ValueError):
                    self.json_error = True
        elif body and (
            ctype == "application/x-www-form-urlencoded"
            or (ctype == "" and method not in ("GET", "HEAD", "POST"))
        ):
            # PHP fills $_POST for a form POST; WP_REST_Request::
            # parse_body_params() runs parse_str on any other body whose
            # Content-Type is empty or form — JSON text included, which is
            # why a PUT without application/json changes nothing.
            self.form = php_parse_str(body.decode("utf-8", "surrogateescape"))

    def params(self, url_params=None):
        """Merged parameters, WordPress' order: JSON > body > query > URL."""
        merged = dict(url_params or {})
        merged.update(self.query)
        merged.update(self.form)
        if isinstance(self.json, dict):
            merged.update(self.json)
        return merged

    def list_page(self):
        """The page of a GET list request (1 when absent or unreadable),
        or None when this is not one."""
        if self.method != "GET" or not re.search(r"/wc/v3/orders/?$", self.path):
            return None
        raw = self.query.get("page", "1")
        if isinstance(raw, str) and re.fullmatch(r"\d+", raw.strip()):
            return int(raw.strip())
        return 1


# ---------------------------------------------------------------------------
# The REST API
# ---------------------------------------------------------------------------

ORDERS_RE = re.compile(r"^/wp-json/wc/v3/orders/?$")
ORDER_RE = re.compile(r"^/wp-json/wc/v3/orders/(\d+)/?$")
BATCH_RE = re.compile(r"^/wp-json/wc/v3/orders/batch/?$")
NOTES_RE = re.compile(r"^/wp-json/wc/v3/orders/(\d+)/notes/?$")
NOTE_RE = re.compile(r"^/wp-json/wc/v3/orders/(\d+)/notes/(\d+)/?$")
PRODUCTS_RE = re.compile(r"^/wp-json/wc/v3/products/?$")
PRODUCT_BATCH_RE = re.compile(r"^/wp-json/wc/v3/products/batch/?$")
PRODUCT_RE = re.compile(r"^/wp-json/wc/v3/products/(\d+)/?$")
VARIATIONS_RE = re.compile(r"^/wp-json/wc/v3/products/(\d+)/variations/?$")
VARIATION_BATCH_RE = re.compile(r"^/wp-json/wc/v3/products/(\d+)/variations/batch/?$")

# by_route keys of GET /_stats.
ROUTE_PATTERNS = [
    (ORDERS_RE, "/orders"),
    (BATCH_RE, "/orders/batch"),
    (ORDER_RE, "/orders/{id}"),
    (NOTES_RE, "/orders/{id}/notes"),
    (NOTE_RE, "/orders/{id}/notes/{note_id}"),
    (PRODUCTS_RE, "/products"),
    (PRODUCT_BATCH_RE, "/products/batch"),
    (PRODUCT_RE, "/products/{id}"),
    (VARIATIONS_RE, "/products/{id}/variations"),
    (VARIATION_BATCH_RE, "/products/{id}/variations/batch"),
]

BATCH_LIMIT = 100


def invalid_id_error(status):
    """The per-item error of a batch request for an unknown order."""
    return {
        "code": "woocommerce_rest_shop_order_invalid_id",
        "message": "Invalid ID.",
        "data": {"status": status},
    }


def batch_groups(req, authed):
    """The create/update/delete lists of a batch request and the refusal
    (413 over BATCH_LIMIT items in all, then the permission), or None."""
    params = req.params()
    groups = {name: params.get(name) or [] for name in ("create", "update", "delete")}
    count = sum(len(v) for v in groups.values() if isinstance(v, list))
    if count > BATCH_LIMIT:
        return groups, rest_error(
            413,
            "woocommerce_rest_request_entity_too_large",
            "Unable to accept more than %d items for this request." % BATCH_LIMIT,
        )
    if not authed:
        return groups, cannot(
            "batch", "Sorry, you are not allowed to batch manipulate this resource."
        )
    return groups, None


def set_stock_status(item):
    """stock_status as WooCommerce derives it for a managed item."""
    if item["manage_stock"] and isinstance(item["stock_quantity"], int):
        item["stock_status"] = "instock" if item["stock_quantity"] > 0 else "outofstock"
    else:
        item.setdefault("stock_status", "instock")


def seed_products(spec):
    """The product specs of {"seed": N, ...} (POST /_products)."""
    def count(name, default, minimum):
        value = spec.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError("%s must be an integer >= %d" % (name, minimum))
        return value

    total = count("seed", 0, 0)
    per = count("variations", 0, 0)
    every = count("every", 10, 1)
    prefix = spec.get("sku_prefix", "P")
    if not isinstance(prefix, str):
        raise ValueError("sku_prefix must be a string")
    base = {}
    if "stock_quantity" in spec:
        base["stock_quantity"] = spec["stock_quantity"]
    out = []
    for n in range(1, total + 1):
        product = dict(base, sku="%s%d" % (prefix, n))
        if per and n % every == 0:
            product["variations"] = [
                dict(base, sku="%s%d-%d" % (prefix, n, v)) for v in range(1, per + 1)
            ]
        out.append(product)
    return out


NOT_INTEGER = "stock_quantity is not of type integer."


def product_invalid_id(kind="product"):
    """The per-item error of a batch item whose id the store does not have."""
    return {
        "code": "woocommerce_rest_%s_invalid_id" % kind,
        "message": "Invalid ID.",
        "data": {"status": 400},
    }


def list_window(req, items, invalid):
    """(page of items, headers) for a products/variations list: page,
    per_page (1-100, default 10), X-WP-Total and X-WP-TotalPages."""
    per_page = int_param(req.query, "per_page", 10, invalid, 1, 100)
    page = int_param(req.query, "page", 1, invalid, 1)
    if invalid:
        return None, None
    total = len(items)
    pages = (total + per_page - 1) // per_page
    start = (page - 1) * per_page
    headers = [("X-WP-Total", str(total)), ("X-WP-TotalPages", str(pages))]
    return items[start:start + per_page], headers


def sku_filter(req):
    """The SKUs of ?sku=a,b (None when absent)."""
    raw = req.query.get("sku")
    if raw is None:
        return None
    return {s.strip() for s in as_text(raw).split(",") if s.strip()}


class Api:
    def __init__(self, store, cfg):
        self.store = store
        self.cfg = cfg
        home = urllib.parse.urlsplit(cfg.home_url)
        self.home_netloc = home.netloc
        self.home_path = home.path.rstrip("/")
        self.home_scheme = home.scheme or "http"

    # -- URLs -------------------------------------------------------------
    def home(self, path):
        return "%s://%s%s%s" % (self.home_scheme, self.home_netloc, self.home_path, path)

    def route_path(self, path):
        """The request path without the home URL's path prefix."""
        if self.home_path and path.startswith(self.home_path + "/"):
            return path[len(self.home_path):]
        return path

    def order_links(self, order):
        links = {
            "self": [{"href": self.home("/wp-json/wc/v3/orders/%d" % order["id"])}],
            "collection": [{"href": self.home("/wp-json/wc/v3/orders")}],
        }
        customer = order.get("customer_id")
        if isinstance(customer, int) and customer > 0:
            links["customer"] = [{"href": self.home("/wp-json/wc/v3/customers/%d" % customer)}]
        return links

    def render(self, entry, fields=None):
        """An order as the API returns it (a copy, fresh _links)."""
        out = copy.deepcopy(entry)
        if isinstance(out, dict) and order_key(out) is not None:
            out["_links"] = self.order_links(out)
        if fields and isinstance(out, dict):
            out = {k: v for k, v in out.items() if k in fields}
        return out

    def render_note(self, order_id, note):
        out = dict(note)
        base = "/wp-json/wc/v3/orders/%d/notes" % order_id
        out["_links"] = {
            "self": [{"href": self.home("%s/%d" % (base, note["id"]))}],
            "collection": [{"href": self.home(base)}],
            "up": [{"href": self.home("/wp-json/wc/v3/orders/%d" % order_id)}],
        }
        return out

    # -- authentication -----------------------------------------------------
    def authenticate(self, req):
        """WC_REST_Authentication::authenticate(). Returns (authenticated,
        error Response or None)."""
        cfg = self.cfg
        error = None
        if cfg.https_mode:
            key = secret = None
            auth = req.headers.get("Authorization") or ""
            if auth.startswith("Basic "):
                try:
                    decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
                except (ValueError, UnicodeDecodeError):
                    decoded = ""
                if ":" in decoded:
                    key, secret = decoded.split(":", 1)
            if not key or not secret:
                key = as_text(req.query.get("consumer_key") or "")
                secret = as_text(req.query.get("consumer_secret") or "")
            if key and secret and key == cfg.key:
                if hmac.compare_digest(secret.encode(), cfg.secret.encode()):
                    return self.check_permission(req)
                error = auth_error("Consumer secret is invalid.")
        ok, oauth_error = self.oauth(req)
        if error is not None:
            return False, error
        if oauth_error is not None:
            return False, oauth_error
        if ok:
            return self.check_permission(req)
        return False, None

    def oauth(self, req):
        params = {}
        params.update(req.query)
        if req.method == "POST" and req.ctype == "application/x-www-form-urlencoded":
            params.update(req.form)
        params.update(parse_oauth_header((req.headers.get("Authorization") or "").strip()))
        required = [
            "oauth_consumer_key",
            "oauth_timestamp",
            "oauth_nonce",
            "oauth_signature",
            "oauth_signature_method",
        ]
        missing = [name for name in required if not params.get(name)]
        if len(missing) == len(required):
            return False, None
        if missing:
            return False, rest_error(
                401,
                "woocommerce_rest_authentication_missing_parameter",
                "Missing OAuth parameter%s %s"
                % ("s" if len(missing) > 1 else "", ", ".join(missing)),
            )
        if as_text(params["oauth_consumer_key"]) != self.cfg.key:
            return False, auth_error("Consumer key is invalid.")
        given = urllib.parse.unquote(as_text(params.pop("oauth_signature")).replace(" ", "+"))
        method = as_text(params["oauth_signature_method"])
        # get_home_url(null, path, is_ssl() ? 'https' : 'http'): the home
        # URL's host, port and path, with the scheme of this request.
        scheme = "https" if self.cfg.https_mode else "http"
        base_url = "%s://%s%s%s" % (
            scheme, self.home_netloc, self.home_path, self.route_path(req.path)
        )
        base = oauth_base_string(req.method, base_url, params)
        if method not in ("HMAC-SHA1", "HMAC-SHA256"):
            return False, auth_error("Invalid signature - signature method is invalid.")
        expected = oauth_signature(base, self.cfg.secret, method)
        if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape")):
            if self.cfg.verbose:
                sys.stderr.write("woo_standin: OAuth base string: %s\n" % base)
            return False, auth_error("Invalid signature - provided signature does not match.")
        stamp_text = as_text(params["oauth_timestamp"])
        try:
            stamp = int(stamp_text)
        except ValueError:
            stamp = 0
        now = self.store.now()
        if stamp < now - NONCE_WINDOW or stamp > now + NONCE_WINDOW:
            return False, auth_error("Invalid timestamp.")
        if not self.store.use_nonce(stamp, as_text(params["oauth_nonce"])):
            return False, auth_error("Invalid nonce - nonce has already been used.")
        return True, None

    def check_permission(self, req):
        """The key's read/write permission (GET/HEAD read; others write)."""
        perm = self.cfg.permissions
        if req.method in ("GET", "HEAD") and perm not in ("read", "read_write"):
            return False, auth_error("The API key provided does not have read permissions.")
        if req.method in ("POST", "PUT", "PATCH", "DELETE") and perm not in ("write", "read_write"):
            return False, auth_error("The API key provided does not have write permissions.")
        return True, None

    # -- dispatch -----------------------------------------------------------
    def handle(self, req):
        path = self.route_path(req.path)
        method = req.method
        if method == "POST" and req.headers.get("X-HTTP-Method-Override"):
            method = req.headers.get("X-HTTP-Method-Override").strip().upper()
        head = method == "HEAD"
        if head:
            method = "GET"
        if method == "OPTIONS":
            methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
            return rest_json(200, {"namespace": "wc/v3", "methods": methods})
        authed, error = self.authenticate(req)
        if error is not None:
            return error
        routes = [
            (ORDERS_RE, {"GET": self.list_orders}),
            (BATCH_RE, {"POST": self.batch, "PUT": self.batch, "PATCH": self.batch}),
            (ORDER_RE, {"GET": self.get_order, "PUT": self.update_order, "PATCH": self.update_order,
                        "POST": self.update_order, "DELETE": self.delete_order}),
            (NOTES_RE, {"GET": self.list_notes, "POST": self.create_note}),
            (NOTE_RE, {"GET": self.get_note, "DELETE": self.delete_note}),
            (PRODUCTS_RE, {"GET": self.list_products}),
            (PRODUCT_BATCH_RE, {"POST": self.product_batch, "PUT": self.product_batch,
                                "PATCH": self.product_batch}),
            (PRODUCT_RE, {"GET": self.get_product}),
            (VARIATIONS_RE, {"GET": self.list_variations}),
            (VARIATION_BATCH_RE, {"POST": self.variation_batch, "PUT": self.variation_batch,
                                  "PATCH": self.variation_batch}),
        ]
        for regex, handlers in routes:
            match = regex.match(path)
            if match and method in handlers:
                if req.json_error:  # checked with the parameters, after routing
                    return rest_error(
                        400,
                        "rest_invalid_json",
                        "Invalid JSON body passed.",
                        json_error_code=4,
                        json_error_message="Syntax error",
                    )
                return handlers[method](req, authed, *[int(g) for g in match.groups()])
        return rest_error(404, "rest_no_route", NO_ROUTE)

    # -- GET /orders ----------------------------------------------------------
    def edit_statuses(self):
        """The statuses an update accepts (the schema's enum)."""
        return ["auto-draft"] + CORE_STATUSES + ["checkout-draft"] + self.cfg.extra_status

    def list_statuses(self):
        """The statuses the list's status filter accepts."""
        return ["any", "trash"] + self.edit_statuses()

    def list_orders(self, req, authed):
        q = req.query
        invalid = {}
        page = int_param(q, "page", 1, invalid, minimum=1)
        per_page = int_param(q, "per_page", 10, invalid, minimum=1, maximum=100)
        offset = int_param(q, "offset", None, invalid)
        int_param(q, "dp", 2, invalid)
        order = enum_param(q, "order", "desc", ["asc", "desc"], invalid)
        orderby = enum_param(
            q, "orderby", "date", ["date", "id", "include", "title", "slug", "modified"], invalid
        )
        enum_param(q, "context", "view", ["view", "edit"], invalid)
        dates_are_gmt = bool_param(q, "dates_are_gmt", False, invalid)
        customer = int_param(q, "customer", None, invalid)
        include = int_list_param(q, "include", invalid)
        exclude = int_list_param(q, "exclude", invalid)
        dates = {
            name: date_param(q, name, invalid)
            for name in ("after", "before", "modified_after", "modified_before")
        }
        statuses = list_param(q, "status")
        if statuses is None or not statuses:
            statuses = ["any"]
        allowed = self.list_statuses()
        for index, status in enumerate(statuses):
            if status not in allowed:
                invalid["status"] = (
                    "rest_not_in_enum",
                    "status[%d] is not one of %s." % (index, one_of(allowed)),
                )
                break
        if invalid:
            return invalid_params(invalid)
        if not authed:
            return cannot("view", CANNOT_LIST)

        for hook in self.store.take_hooks(page):
            changes = {k: v for k, v in hook.items() if k not in ("on_page", "touch_id", "times")}
            self.store.touch(hook["touch_id"], changes)

        offset_td = self.store.site_offset()
        filters = []
        for name, value in dates.items():
            if value is None:
                continue
            when, use_gmt = filter_value(value, dates_are_gmt, offset_td)
            field = "modified" if name.startswith("modified") else "created"
            column = "date_%s_gmt" % field if use_gmt else "date_%s" % field
            filters.append((column, when, name.endswith("after")))
        wanted = set(statuses)

        def status_ok(status):
            if status in wanted:
                return True
            return "any" in wanted and status not in ANY_EXCLUDES

        with self.store.lock:
            candidates = list(self.store.orders.values())
            raw = list(self.store.raw)
        chosen = []
        for entry in candidates:
            if not status_ok(entry.get("status")):
                continue
            if customer is not None and entry.get("customer_id") != customer:
                continue
            if include and entry["id"] not in include:
                continue
            if exclude and entry["id"] in exclude:
                continue
            keep = True
            for column, when, is_after in filters:
                value = parse_column(entry.get(column))
                # WP_Date_Query is not inclusive: strictly after / before
                if value is None or not (value > when if is_after else value < when):
                    keep = False
                    break
            if keep:
                chosen.append(entry)

        descending = order == "desc"
        sort_field = {"modified": "date_modified_gmt", "id": None}.get(orderby, "date_created_gmt")
        tie_descending = descending
        if self.cfg.unstable_ties and sort_field and page % 2 == 0:
            tie_descending = not descending  # ties come back in another order
        chosen.sort(key=lambda o: o["id"], reverse=tie_descending)
        if sort_field:
            chosen.sort(key=lambda o: str(o.get(sort_field) or ""), reverse=descending)
        unfiltered = (
            "any" in wanted and customer is None and not include and not exclude and not filters
        )
        if unfiltered:
            chosen.extend(raw)

        total = len(chosen)
        pages = (total + per_page - 1) // per_page
        start = offset if offset is not None else (page - 1) * per_page
        items = chosen[start:start + per_page] if start >= 0 else []
        if not items and page > 1 and self.cfg.past_end_totals == "zero":
            total, pages = 0, 0
        fields = None
        if "_fields" in q:
            fields = set(list_param(q, "_fields") or [])
        body = [self.render(entry, fields) for entry in items]
        headers = [("X-WP-Total", str(total)), ("X-WP-TotalPages", str(pages))]
        links = []
        if page > 1:
            links.append('<%s>; rel="prev"' % self.list_link(req, min(page - 1, pages)))
        if pages > page:
            links.append('<%s>; rel="next"' % self.list_link(req, page + 1))
        if links:
            headers.append(("Link", ", ".join(links)))
        headers.append(("Allow", "GET, POST"))
        return rest_json(200, body, headers)

    def list_link(self, req, page):
        """The rewritten query of a Link header: the request's parameters
        (credentials left out), page set, status as status[0]=..., dp and
        context added; everything percent-encoded (commas too)."""
        params = []
        seen_page = False
        for key, value in req.query.items():
            if key.startswith("oauth_") or key in ("consumer_key", "consumer_secret"):
                continue
            if key == "page":
                value, seen_page = str(page), True
            if key == "status":
                statuses = list_param(req.query, "status") or ["any"]
                value = {str(i): status for i, status in enumerate(statuses)}
            params.append((key, value))
            if key == "per_page" and "page" not in req.query:
                params.append(("page", str(page)))
                seen_page = True
        if not seen_page:
            params.append(("page", str(page)))
        names = [k for k, _ in params]
        if "status" not in names:
            params.append(("status", {"0": "any"}))
        if "dp" not in names:
            params.append(("dp", "2"))
        if "context" not in names:
            params.append(("context", "view"))
        parts = []
        for key, value in params:
            if isinstance(value, dict):
                for index, item in value.items():
                    parts.append("%s%%5B%s%%5D=%s" % (rfc3986(key), rfc3986(index), rfc3986(item)))
            else:
                parts.append("%s=%s" % (rfc3986(key), rfc3986(value)))
        return self.home("/wp-json/wc/v3/orders") + "?" + "&".join(parts)

    # -- single order -----------------------------------------------------------
    def get_order(self, req, authed, order_id):
        if not authed:
            return cannot("view", CANNOT_VIEW)
        with self.store.lock:
            order = self.store.orders.get(order_id)
            if order is None:
                return rest_error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
            fields = set(list_param(req.query, "_fields") or []) if "_fields" in req.query else None
            return rest_json(200, self.render(order, fields))

    def update_order(self, req, authed, url_id):
        params = req.params()
        statuses = self.edit_statuses()
        if "status" in params:
            status = params["status"]
            if not isinstance(status, str) or status not in statuses:
                message = "status is not one of %s." % one_of(statuses)
                return invalid_params({"status": ("rest_not_in_enum", message)})
        if not authed:
            return cannot("edit", "Sorry, you are not allowed to edit this resource.")
        order_id = params.get("id", url_id)  # a body "id" overrides the URL's (obs)
        try:
            order_id = int(order_id)
        except (TypeError, ValueError):
            order_id = 0
        with self.store.lock:
            order = self.store.orders.get(order_id)
            if order is None:
                return rest_error(400, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
            fault = self.store.take_item_fault(
                ("unchanged",), req.method, self.route_path(req.path), order_id
            )
            if fault:
                req.item_faults.append(fault)  # 200, the order as it is
            else:
                self.apply_update(order, params)
            return rest_json(200, self.render(order))

    def apply_update(self, order, params, note_status=True):
        """Apply writable fields; bump date_modified when anything changed;
        a status change adds the system note. Caller holds the lock."""
        changed = False
        now = fmt_dt(self.store.now_gmt())
        old_status = order.get("status")
        new_status = params.get("status")
        if isinstance(new_status, str) and new_status != old_status:
            order["status"] = new_status
            changed = True
            self.store.count("status_changes")
            if new_status == "completed" and not order.get("date_completed_gmt"):
                order["date_completed_gmt"] = now
            if new_status in PAID_STATUSES and not order.get("date_paid_gmt"):
                order["date_paid_gmt"] = now
            order["is_editable"] = new_status in EDITABLE_STATUSES
            order["needs_payment"] = new_status in ("pending", "failed")
            if note_status:
                old_label = STATUS_LABELS.get(old_status, old_status)
                new_label = STATUS_LABELS.get(new_status, new_status)
                self.store.add_note(
                    order["id"], "Order status changed from %s to %s." % (old_label, new_label)
                )
        for key in ("customer_note", "transaction_id", "payment_method", "payment_method_title"):
            value = params.get(key)
            if isinstance(value, str) and value != order.get(key):
                order[key] = value
                changed = True
        for key in ("billing", "shipping"):
            value = params.get(key)
            if isinstance(value, dict):
                target = order.setdefault(key, {})
                for name, item in value.items():
                    if isinstance(item, str) and target.get(name) != item:
                        target[name] = item
                        changed = True
        meta = params.get("meta_data")
        if isinstance(meta, list):
            existing = order.setdefault("meta_data", [])
            for item in meta:
                if not isinstance(item, dict) or "key" not in item:
                    continue
                target = None
                for current in existing:
                    same_id = "id" in item and current.get("id") == item["id"]
                    if same_id or current.get("key") == item["key"]:
                        target = current
                        break
                if target is None:
                    ids = [m.get("id", 0) for m in existing if isinstance(m.get("id"), int)]
                    target = {"id": max(ids + [900]) + 1, "key": item["key"]}
                    existing.append(target)
                target["value"] = copy.deepcopy(item.get("value"))
                changed = True
        if changed:
            order["date_modified_gmt"] = now
            self.store.sync_local_dates(order)
        return changed

    def delete_order(self, req, authed, order_id):
        if not authed:
            return cannot("delete", CANNOT_DELETE)
        force = (as_text(req.query.get("force", "")) or "").lower() in ("true", "1")
        with self.store.lock:
            order = self.store.orders.get(order_id)
            if order is None:
                return rest_error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
            before = self.render(order)  # the answer shows the order as it was (obs)
            if force:
                del self.store.orders[order_id]
            elif order.get("status") == "trash":
                return rest_error(
                    410, "woocommerce_rest_already_trashed", "The order has already been deleted."
                )
            else:
                order["status"] = "trash"
                order["date_modified_gmt"] = fmt_dt(self.store.now_gmt())
                self.store.sync_local_dates(order)
            return rest_json(200, before)

    def batch(self, req, authed):
        groups, refused = batch_groups(req, authed)
        if refused is not None:
            return refused
        out = {}
        valid = self.edit_statuses()
        with self.store.lock:
            if groups["create"]:
                error = {
                    "code": "woocommerce_rest_cannot_create",
                    "message": "Creating orders is not supported by the stand-in.",
                    "data": {"status": 400},
                }
                out["create"] = [{"id": 0, "error": dict(error)} for _ in groups["create"]]
            if groups["update"]:
                out["update"] = []
                for item in groups["update"]:
                    order_id = item.get("id") if isinstance(item, dict) else None
                    order = self.store.orders.get(order_id) if isinstance(order_id, int) else None
                    if order is None:
                        out["update"].append({"id": order_id, "error": invalid_id_error(400)})
                        continue
                    faulted = self.batch_item_fault(req, order_id, lambda: self.render(order))
                    if faulted is not None:
                        out["update"].append(faulted)
                        continue
                    item = dict(item)
                    if "status" in item and item["status"] not in valid:
                        item["status"] = "pending"  # batch does not validate statuses (obs)
                    self.apply_update(order, item)
                    out["update"].append(self.render(order))
            if groups["delete"]:
                out["delete"] = []
                for order_id in groups["delete"]:
                    order = None
                    if isinstance(order_id, int):
                        order = self.store.orders.pop(order_id, None)
                    if order is None:
                        out["delete"].append({"id": order_id, "error": invalid_id_error(404)})
                    else:
                        out["delete"].append(self.render(order))
        return rest_json(200, out)

    def batch_item_fault(self, req, item_id, render):
        """The answer of one batch item a batch_item fault (its error) or an
        unchanged fault (render(): the item as it is) applies to, recorded
        in the request log; None when no fault applies."""
        fault = self.store.take_item_fault(
            ITEM_FAULT_KINDS, req.method, self.route_path(req.path), item_id
        )
        if not fault:
            return None
        req.item_faults.append(fault)
        if fault["kind"] == "batch_item":
            return {
                "id": item_id,
                "error": {"code": fault["code"], "message": fault["message"],
                          "data": {"status": fault["status"]}},
            }
        return render()

    # -- products -------------------------------------------------------------
    def render_product(self, item):
        out = copy.deepcopy(item)
        if "parent_id" in out:
            href = "/wp-json/wc/v3/products/%d/variations/%d" % (out["parent_id"], out["id"])
        else:
            href = "/wp-json/wc/v3/products/%d" % out["id"]
        out["_links"] = {"self": [{"href": self.home(href)}]}
        return out

    def list_products(self, req, authed):
        if not authed:
            return cannot("view", CANNOT_LIST)
        invalid = {}
        skus = sku_filter(req)
        include = req.query.get("include")
        with self.store.lock:
            items = [self.store.products[k] for k in sorted(self.store.products)]
            if skus is not None:
                items = [i for i in items if i["sku"] in skus]
            if include is not None:
                wanted = {s.strip() for s in as_text(include).split(",")}
                items = [i for i in items if str(i["id"]) in wanted]
            window, headers = list_window(req, items, invalid)
            if invalid:
                return invalid_params(invalid)
            return rest_json(200, [self.render_product(i) for i in window], headers)

    def get_product(self, req, authed, product_id):
        if not authed:
            return cannot("view", CANNOT_VIEW)
        with self.store.lock:
            item = self.store.products.get(product_id) or self.store.variations.get(product_id)
            if item is None:
                return rest_error(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
            return rest_json(200, self.render_product(item))

    def list_variations(self, req, authed, product_id):
        if not authed:
            return cannot("view", CANNOT_LIST)
        invalid = {}
        skus = sku_filter(req)
        with self.store.lock:
            parent = self.store.products.get(product_id)
            if parent is None:
                return rest_error(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
            items = [self.store.variations[k] for k in sorted(parent["variations"])]
            if skus is not None:
                items = [i for i in items if i["sku"] in skus]
            window, headers = list_window(req, items, invalid)
            if invalid:
                return invalid_params(invalid)
            return rest_json(200, [self.render_product(i) for i in window], headers)

    def product_batch(self, req, authed):
        return self.stock_batch(req, authed, None)

    def variation_batch(self, req, authed, product_id):
        return self.stock_batch(req, authed, product_id)

    def stock_batch(self, req, authed, parent_id):
        """POST /products/batch (parent_id None) or
        /products/{parent_id}/variations/batch: updates of stock_quantity and
        manage_stock (other keys ignored), 200 with an answer per item."""
        groups, refused = batch_groups(req, authed)
        if refused is not None:
            return refused
        kind = "product" if parent_id is None else "product_variation"
        out = {}
        with self.store.lock:
            for name in ("create", "delete"):
                if groups[name]:
                    error = {
                        "code": "woocommerce_rest_cannot_%s" % name,
                        "message": "Only updates are supported by the stand-in.",
                        "data": {"status": 400},
                    }
                    out[name] = [{"id": 0, "error": dict(error)} for _ in groups[name]]
            if not groups["update"]:
                return rest_json(200, out)
            out["update"] = []
            for item in groups["update"] if isinstance(groups["update"], list) else []:
                item_id = item.get("id") if isinstance(item, dict) else None
                valid_id = isinstance(item_id, int) and not isinstance(item_id, bool)
                if parent_id is None:
                    target = self.store.products.get(item_id) if valid_id else None
                else:
                    target = self.store.variations.get(item_id) if valid_id else None
                    if target is not None and target["parent_id"] != parent_id:
                        target = None
                if target is None:
                    out["update"].append({"id": item_id, "error": product_invalid_id(kind)})
                    continue
                faulted = self.batch_item_fault(req, item_id, lambda: self.render_product(target))
                if faulted is not None:
                    out["update"].append(faulted)
                    continue
                quantity = item.get("stock_quantity", target["stock_quantity"])
                if isinstance(quantity, str) and re.fullmatch(r"-?\d+", quantity.strip()):
                    quantity = int(quantity.strip())  # rest_sanitize_value_from_schema
                if quantity is not None and (
                    not isinstance(quantity, int) or isinstance(quantity, bool)
                ):
                    error = {
                        "code": "rest_invalid_param",
                        "message": "Invalid parameter(s): stock_quantity",
                        "data": {"status": 400,
                                 "params": {"stock_quantity": NOT_INTEGER}},
                    }
                    out["update"].append({"id": item_id, "error": error})
                    continue
                if "manage_stock" in item:
                    target["manage_stock"] = bool(item["manage_stock"])
                if target["manage_stock"]:  # ignored on an unmanaged item, as the store does
                    target["stock_quantity"] = quantity
                set_stock_status(target)
                target["date_modified_gmt"] = fmt_dt(self.store.now_gmt())
                self.store.stats["stock_changes"] += 1
                out["update"].append(self.render_product(target))
        return rest_json(200, out)

    # -- notes --------------------------------------------------------------
    def list_notes(self, req, authed, order_id):
        if not authed:
            return cannot("view", CANNOT_LIST)
        invalid = {}
        kind = enum_param(req.query, "type", "any", ["any", "customer", "internal"], invalid)
        if invalid:
            return invalid_params(invalid)
        if order_id not in self.store.orders:
            return rest_error(404, "woocommerce_rest_order_invalid_id", "Invalid order ID.")
        notes = self.store.notes_of(order_id)
        if kind != "any":
            notes = [n for n in notes if n["customer_note"] == (kind == "customer")]
        return rest_json(200, [self.render_note(order_id, n) for n in notes])

    def create_note(self, req, authed, order_id):
        params = req.params()
        if "note" not in params:
            return rest_error(
                400, "rest_missing_callback_param", "Missing parameter(s): note", params=["note"]
            )
        if not authed:
            return cannot("create", "Sorry, you are not allowed to create resources.")
        if order_id not in self.store.orders:
            return rest_error(404, "woocommerce_rest_order_invalid_id", "Invalid order ID.")
        text = params.get("note")
        if not isinstance(text, str) or not text:
            return rest_error(
                500,
                "woocommerce_rest_invalid_order_note",
                "Cannot create order note, please try again.",
            )

        def flag(name):
            value = params.get(name, False)
            if isinstance(value, str):
                return value.lower() in ("true", "1")
            return bool(value)

        note = self.store.add_note(order_id, text, flag("customer_note"), flag("added_by_user"))
        self.store.count("notes_added")
        location = self.home("/wp-json/wc/v3/orders/%d/notes/%d" % (order_id, note["id"]))
        return rest_json(201, self.render_note(order_id, note), [("Location", location)])

    def get_note(self, req, authed, order_id, note_id):
        if not authed:
            return cannot("view", CANNOT_VIEW)
        if order_id not in self.store.orders:
            return rest_error(404, "woocommerce_rest_order_invalid_id", "Invalid order ID.")
        for note in self.store.notes_of(order_id):
            if note["id"] == note_id:
                return rest_json(200, self.render_note(order_id, note))
        return rest_error(404, "woocommerce_rest_invalid_id", "Invalid resource ID.")

    def delete_note(self, req, authed, order_id, note_id):
        if not authed:
            return cannot("delete", CANNOT_DELETE)
        if (as_text(req.query.get("force", "")) or "").lower() not in ("true", "1"):
            # (sic: the real notes controller says "Webhooks" here)
            return rest_error(
                501, "woocommerce_rest_trash_not_supported", "Webhooks do not support trashing."
            )
        with self.store.lock:
            notes = self.store.notes.get(order_id, [])
            for note in notes:
                if note["id"] == note_id:
                    notes.remove(note)
                    return rest_json(200, self.render_note(order_id, note))
        return rest_error(404, "woocommerce_rest_invalid_id", "Invalid resource ID.")


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------

FAULT_KINDS = (
    "status", "html", "truncated", "short_read", "slow", "malformed_json", "batch_item",
    "unchanged",
)
# Looked up by the update handlers per order, not by dispatch per request.
ITEM_FAULT_KINDS = ("batch_item", "unchanged")

BATCH_ITEM_DEFAULTS = {
    "status": 500,
    "code": "woocommerce_rest_cannot_edit",
    "message": "Sorry, you are not allowed to edit this resource.",
}


def parse_fault(spec):
    """Validate a fault object from POST /_fault; raises ValueError."""
    if not isinstance(spec, dict):
        raise ValueError("a fault is a JSON object")
    kind = spec.get("kind")
    if kind not in FAULT_KINDS:
        raise ValueError("kind must be one of %s" % ", ".join(FAULT_KINDS))
    status = spec.get("status")
    if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
        raise ValueError("status must be an HTTP status code")
    times = spec.get("times", 1)
    if not isinstance(times, int) or times == 0 or times < -1:
        raise ValueError("times must be a positive integer or -1")
    delay = spec.get("delay_ms", 0)
    if not isinstance(delay, int) or delay < 0:
        raise ValueError("delay_ms must be a non-negative integer")
    page = spec.get("page")
    if page is not None and (not isinstance(page, int) or page < 1):
        raise ValueError("page must be a positive integer")
    retry_after = spec.get("retry_after")
    if retry_after is not None:
        retry_after = str(retry_after)
    method = spec.get("method")
    try:
        regex = re.compile(spec.get("path_regex") or "")
    except re.error as err:
        raise ValueError("path_regex: %s" % err)
    order_id = spec.get("order_id")
    if order_id is not None:
        if kind not in ITEM_FAULT_KINDS:
            raise ValueError("order_id applies to %s faults only" % " and ".join(ITEM_FAULT_KINDS))
        if not isinstance(order_id, int) or isinstance(order_id, bool) or order_id < 1:
            raise ValueError("order_id must be a positive integer")
    if kind in ITEM_FAULT_KINDS and page is not None:
        raise ValueError("page does not apply to %s faults" % kind)
    fault = {
        "path_regex": spec.get("path_regex") or "",
        "regex": regex,
        "method": method.upper() if isinstance(method, str) and method else None,
        "kind": kind,
        "status": status,
        "retry_after": retry_after,
        "delay_ms": delay,
        "times": times,
        "page": page,
        "hits": 0,
    }
    if kind in ITEM_FAULT_KINDS:
        fault["order_id"] = order_id
    if kind == "batch_item":
        for key in ("code", "message"):
            value = spec.get(key, BATCH_ITEM_DEFAULTS[key])
            if not isinstance(value, str) or not value:
                raise ValueError("%s must be a non-empty string" % key)
            fault[key] = value
        if status is None:
            fault["status"] = BATCH_ITEM_DEFAULTS["status"]
    return fault


def fault_public(fault):
    return {k: v for k, v in fault.items() if k != "regex"}


def fault_answer(fault, path):
    """The answer of a "status" or "html" fault (before WordPress runs)."""
    status = fault["status"]
    if fault["kind"] == "html":
        resp = Response(status or 503, CRITICAL_ERROR_HTML, HTML_CTYPE)
    else:
        status = status or 500
        if status == 401:
            resp = auth_error("Consumer secret is invalid.")
        elif status == 403:
            resp = rest_error(403, "woocommerce_rest_cannot_view", CANNOT_LIST)
        elif status == 404:
            if ORDER_RE.match(path):
                resp = rest_error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
            else:
                resp = rest_error(404, "rest_no_route", NO_ROUTE)
        elif status == 413:
            resp = rest_error(
                413,
                "woocommerce_rest_request_entity_too_large",
                "Unable to accept more than %d items for this request." % BATCH_LIMIT,
            )
        elif status == 500:
            body = {
                "code": "internal_server_error",
                "message": "<p>There has been a critical error on this website.</p><p><a href=\""
                "https://wordpress.org/documentation/article/faq-troubleshooting/\">Learn more "
                "about troubleshooting WordPress.</a></p>",
                "data": {"status": 500},
                "additional_errors": [],
            }
            resp = rest_json(500, body)
        elif status in NGINX_REASONS:
            resp = Response(status, nginx_html(status), "text/html")
        elif status == 503:
            resp = Response(503, MAINTENANCE_HTML, HTML_CTYPE)
        else:
            message = "Simulated HTTP %d error." % status
            resp = rest_error(status, "standin_http_%d" % status, message)
    if fault["retry_after"] is not None:
        resp.set_header("Retry-After", fault["retry_after"])
    return resp


def mangle(fault, resp):
    """Apply a fault that changes the real answer."""
    kind = fault["kind"]
    if kind == "truncated":
        resp.body = resp.body[: len(resp.body) // 2]
    elif kind == "short_read":
        resp.mode = "short_read"
    elif kind == "malformed_json":
        resp.status = 200
        resp.body = PHP_WARNING.encode() + resp.body
        resp.set_header("Content-Type", JSON_CTYPE)
    if fault["retry_after"] is not None:
        resp.set_header("Retry-After", fault["retry_after"])
    return resp


# ---------------------------------------------------------------------------
# Control endpoints
# ---------------------------------------------------------------------------


def control(server, req):
    store, cfg = server.store, server.cfg
    path, method = req.path.rstrip("/") or "/", req.method
    try:
        body = json.loads(req.body.decode("utf-8")) if req.body.strip() else None
    except (UnicodeDecodeError, ValueError) as err:
        return control_json(400, {"error": "body is not JSON: %s" % err})

    if path == "/_health" and method == "GET":
        with store.lock:
            return control_json(200, {
                "ok": True,
                "orders": len(store.orders),
                "raw": len(store.raw),
                "port": server.server_address[1],
                "home_url": cfg.home_url,
            })
    if path == "/_orders":
        if method == "GET":
            with store.lock:
                return control_json(200, {"ids": sorted(store.orders), "raw": len(store.raw)})
        if method == "POST":
            if body is None:
                return control_json(400, {"error": "send an order or an array of orders"})
            entries = body if isinstance(body, list) else [body]
            added, replaced = store.put_entries(entries, stamp_new=True)
            return control_json(200, {"added": added, "replaced": replaced})
        if method == "DELETE":
            with store.lock:
                count = len(store.orders) + len(store.raw)
                store.orders.clear()
                store.raw.clear()
                store.notes.clear()
            return control_json(200, {"deleted": count})
    if path == "/_products":
        if method == "GET":
            return control_json(200, store.stock_snapshot())
        if method == "POST":
            try:
                return control_json(200, {"ids": store.add_products(body)})
            except ValueError as err:
                return control_json(400, {"error": str(err)})
        if method == "DELETE":
            with store.lock:
                count = len(store.products) + len(store.variations)
                store.products.clear()
                store.variations.clear()
            return control_json(200, {"deleted": count})
    match = re.match(r"^/_products/(\d+)$", path)
    if match and method == "DELETE":
        if not store.remove_product(int(match.group(1))):
            return control_json(404, {"error": "no product or variation %s" % match.group(1)})
        return control_json(200, {"deleted": 1})
    match = re.match(r"^/_orders/(\d+)(/touch)?$", path)
    if match:
        order_id = int(match.group(1))
        if match.group(2) and method == "POST":
            if body is not None and not isinstance(body, dict):
                return control_json(400, {"error": "send a JSON object"})
            order = store.touch(order_id, body or {})
            if order is None:
                return control_json(404, {"error": "no order %d" % order_id})
            return control_json(200, order)
        if not match.group(2) and method == "GET":
            with store.lock:
                order = copy.deepcopy(store.orders.get(order_id))
            if order is None:
                return control_json(404, {"error": "no order %d" % order_id})
            order["notes"] = store.notes_of(order_id)
            return control_json(200, order)
    if path == "/_fault":
        if method == "GET":
            with store.lock:
                return control_json(200, [fault_public(f) for f in store.faults])
        if method == "POST":
            specs = body if isinstance(body, list) else [body]
            try:
                faults = [parse_fault(spec) for spec in specs]
            except ValueError as err:
                return control_json(400, {"error": str(err)})
            with store.lock:
                store.faults.extend(faults)
            return control_json(200, [fault_public(f) for f in faults])
        if method == "DELETE":
            with store.lock:
                store.faults.clear()
            return control_json(200, {"cleared": True})
    if path == "/_hook":
        if method == "GET":
            with store.lock:
                return control_json(200, store.hooks)
        if method == "POST":
            specs = body if isinstance(body, list) else [body]
            hooks = []
            for spec in specs:
                if (not isinstance(spec, dict) or not isinstance(spec.get("on_page"), int)
                        or not isinstance(spec.get("touch_id"), int)):
                    return control_json(400, {"error": "a hook needs integer on_page and touch_id"})
                hook = dict(spec)
                hook.setdefault("times", 1)
                if not isinstance(hook["times"], int) or hook["times"] == 0 or hook["times"] < -1:
                    return control_json(400, {"error": "times must be a positive integer or -1"})
                hooks.append(hook)
            with store.lock:
                store.hooks.extend(hooks)
            return control_json(200, hooks)
        if method == "DELETE":
            with store.lock:
                store.hooks.clear()
            return control_json(200, {"cleared": True})
    if path == "/_clock" and method == "POST":
        offset = body.get("offset_seconds") if isinstance(body, dict) else None
        if not isinstance(offset, (int, float)) or isinstance(offset, bool):
            return control_json(400, {"error": "send {\"offset_seconds\": N}"})
        with store.lock:
            store.clock_offset = float(offset)
        return control_json(200, {"offset_seconds": offset, "now_gmt": fmt_dt(store.now_gmt())})
    if path == "/_latency":
        if method == "GET":
            return control_json(200, {"latency_ms": store.latency_ms, "workers": store.gate.limit})
        if method == "POST":
            if not isinstance(body, dict) or not ("latency_ms" in body or "workers" in body):
                return control_json(400, {"error": "send {\"latency_ms\": N, \"workers\": W}"})
            for key in ("latency_ms", "workers"):
                value = body.get(key, 0)
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    return control_json(400, {"error": "%s must be a non-negative integer" % key})
            if "latency_ms" in body:
                store.latency_ms = body["latency_ms"]
            if "workers" in body:
                store.gate.set_limit(body["workers"])
            return control_json(200, {"latency_ms": store.latency_ms, "workers": store.gate.limit})
    if path == "/_stats":
        if method == "GET":
            return control_json(200, store.stats_snapshot())
        if method == "DELETE":
            store.reset_stats()
            return control_json(200, {"cleared": True})
    if path == "/_requests":
        if method == "GET":
            with store.lock:
                return control_json(200, list(store.requests))
        if method == "DELETE":
            with store.lock:
                store.requests.clear()
            return control_json(200, {"cleared": True})
    return control_json(404, {"error": "no control endpoint %s %s" % (method, path)})


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------


class BodyError(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Small writes would otherwise wait for the client's delayed ACK (about
    # 40 ms a request with Nagle's algorithm on).
    disable_nagle_algorithm = True
    server_version = "Apache/2.4.71 (Debian)"
    sys_version = ""

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):  # noqa: N802 (stdlib name)
        if self.server.cfg.verbose:
            sys.stderr.write("woo_standin: %s\n" % (fmt % args))

    def do_GET(self):  # noqa: N802
        self.dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def read_body(self):
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            chunks, size = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    length = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BodyError("bad chunk size")
                if length == 0:
                    while self.rfile.readline(1024).strip():
                        pass  # trailers
                    return b"".join(chunks)
                size += length
                if size > MAX_BODY:
                    raise BodyError("body too large")
                chunks.append(self.rfile.read(length))
                self.rfile.readline(8)
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            length = int(length)
        except ValueError:
            raise BodyError("bad Content-Length")
        if length < 0 or length > MAX_BODY:
            raise BodyError("body too large")
        return self.rfile.read(length)

    def dispatch(self):
        server = self.server
        started = time.time()
        try:
            body = self.read_body()
        except BodyError as err:
            self.close_connection = True
            self.send(Response(400, "%s\n" % err, "text/plain"), close=True)
            return
        req = Request(self.command, self.path, self.headers, body)
        if req.path.startswith("/_"):
            try:
                resp = control(server, req)
            except Exception:  # a test tool must not die on a bad request
                traceback.print_exc()
                resp = control_json(500, {"error": traceback.format_exc()})
            self.send(resp)
            return
        route = server.api.route_path(req.path)
        api = route.startswith("/wp-json/")
        if api:
            server.store.count_request(req, route)  # on arrival, faults included
            server.store.gate.enter()  # wait for a worker (--workers)
        try:
            resp = self.answer(req, route, body, started)
        finally:
            if api:
                server.store.gate.leave()
        # Recorded (in answer) before the answer goes out, so a test that
        # reads /_requests or /_stats right after its response always finds
        # the request there.
        self.send(resp)

    def answer(self, req, route, body, started):
        """Latency, faults, the API and the request log of a non-control
        request. Returns the Response."""
        server = self.server
        if route.startswith("/wp-json/") and server.store.latency_ms:
            time.sleep(server.store.latency_ms / 1000.0)  # this worker only
        fault = server.store.take_fault(req.method, route, req.list_page())
        if fault and fault["delay_ms"]:
            time.sleep(fault["delay_ms"] / 1000.0)
        try:
            if fault and fault["kind"] in ("status", "html"):
                resp = fault_answer(fault, route)
            elif route.startswith("/wp-json/"):
                resp = server.api.handle(req)
            else:
                resp = Response(404, NOT_FOUND_HTML, HTML_CTYPE)
            if fault and fault["kind"] not in ("status", "html"):
                resp = mangle(fault, resp)
        except Exception:
            traceback.print_exc()
            resp = rest_error(500, "standin_exception", "The stand-in failed: see its stderr.")
        item_delay = sum(f["delay_ms"] for f in req.item_faults)
        if item_delay:
            time.sleep(item_delay / 1000.0)  # after the update, outside the store lock
        kind = fault["kind"] if fault else None
        if kind is None and req.item_faults:
            kind = ",".join(sorted(set(f["kind"] for f in req.item_faults)))
        headers = {}
        for key, value in self.headers.items():
            headers[key] = value if key not in headers else headers[key] + ", " + value
        server.store.record({
            "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "method": req.method,
            "path": req.path,
            "query": req.raw_query,
            "params": req.query,
            "headers": headers,
            "body": body.decode("utf-8", "replace"),
            "status": resp.status,
            "fault": kind,
            "ms": int((time.time() - started) * 1000),
        })
        return resp

    def send(self, resp, close=False):
        head_only = self.command == "HEAD"
        self.send_response(resp.status)
        for key, value in resp.headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(resp.body)))
        if resp.mode == "short_read" or close or resp.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if head_only:
            return
        try:
            if resp.mode == "short_read":
                self.wfile.write(resp.body[: len(resp.body) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_WR)
            else:
                self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


# ---------------------------------------------------------------------------
# Self-test and fixture check
# ---------------------------------------------------------------------------


def self_test():
    """Offline checks of the rules the server relies on. Returns 0/1."""
    failures = []

    def check(what, got, want):
        if got != want:
            failures.append("%s:\n  got  %r\n  want %r" % (what, got, want))

    # The reference OAuth test vector (woocommerce-api.md §8).
    params = php_parse_str("per_page=20&status=processing")
    params.update({
        "oauth_consumer_key": "ck_test",
        "oauth_timestamp": "1700000000",
        "oauth_nonce": "abcdef0123456789abcdef0123456789",
        "oauth_signature_method": "HMAC-SHA1",
    })
    base = oauth_base_string("get", "http://example.com/wp-json/wc/v3/orders", params)
    check(
        "OAuth base string",
        base,
        "GET&http%3A%2F%2Fexample.com%2Fwp-json%2Fwc%2Fv3%2Forders&oauth_consumer_key%3Dck_test%26"
        "oauth_nonce%3Dabcdef0123456789abcdef0123456789%26oauth_signature_method%3DHMAC-SHA1%26"
        "oauth_timestamp%3D1700000000%26per_page%3D20%26status%3Dprocessing",
    )
    signature = oauth_signature(base, "cs_test")
    check("OAuth HMAC-SHA1 signature", signature, "fH4DyLJn8OZ2AyCye9qeRFZrCVg=")
    direct = hmac.new(b"cs_test&", base.encode(), hashlib.sha1).digest()
    check("HMAC-SHA1 cross-check", signature, base64.b64encode(direct).decode())
    sha256 = base64.b64decode(oauth_signature(base, "cs_test", "HMAC-SHA256"))
    check("HMAC-SHA256 length", len(sha256), 32)

    # Array parameters are signed with indexes.
    arr = oauth_base_string("GET", "http://h/p", php_parse_str("status[]=a&status[]=b"))
    check("array params", arr,
          "GET&http%3A%2F%2Fh%2Fp&status%255B0%255D%3Da%26status%255B1%255D%3Db")
    check("RFC 3986", rfc3986("a b+c/~é*"), "a%20b%2Bc%2F~%C3%A9%2A")
    check("OAuth header", parse_oauth_header('OAuth oauth_nonce="x%2By", oauth_signature=ab%3D'),
          {"oauth_nonce": "x+y", "oauth_signature": "ab="})

    # Date filters with a UTC-8 site (woocommerce-api.md §4).
    off = datetime.timedelta(hours=-8)
    when, gmt = filter_value("2026-11-29T04:48:52", True, off)
    check("naive + gmt", (fmt_dt(when), gmt), ("2026-11-29T04:48:52", True))
    when, gmt = filter_value("2026-11-29T04:48:52", False, off)
    check("naive + local", (fmt_dt(when), gmt), ("2026-11-29T04:48:52", False))
    when, gmt = filter_value("2026-11-29T04:48:52Z", False, off)
    check("Z + local (correct)", (fmt_dt(when), gmt), ("2026-11-28T20:48:52", False))
    when, gmt = filter_value("2026-11-29T04:48:52+00:00", True, off)
    check("Z + gmt (the trap)", (fmt_dt(when), gmt), ("2026-11-28T20:48:52", True))
    when, gmt = filter_value("2026-11-29T06:48:52.75+02:00", False, off)
    check("+02:00 with fraction", fmt_dt(when), "2026-11-28T20:48:52")
    for bad in ("2026-11-29", "2026-11-29T04:48", "yesterday", "2026-11-29T04:48:52+0"):
        try:
            parse_wp_date(bad)
            failures.append("date %r accepted" % bad)
        except ValueError:
            pass

    # PHP-style JSON and query parsing.
    check("php_json", php_json({"a": "x/y é 🎉", "p": 8.906666666666666}),
          '{"a":"x\\/y \\u00e9 \\ud83c\\udf89","p":8.906666666666666}')
    check("parse_str", php_parse_str("a=1&a=2&s[]=x&s[]=y&t[k]=z&u=a+b"),
          {"a": "2", "s": {"0": "x", "1": "y"}, "t": {"k": "z"}, "u": "a b"})

    # /_stats route keys.
    check("route key PUT", route_key("PUT", "/wp-json/wc/v3/orders/5105/"), "PUT /orders/{id}")
    check("route key batch", route_key("POST", "/wp-json/wc/v3/orders/batch"),
          "POST /orders/batch")
    check("route key note", route_key("GET", "/wp-json/wc/v3/orders/7/notes/3"),
          "GET /orders/{id}/notes/{note_id}")
    check("route key other", route_key("GET", "/wp-json/wc/v2/orders/12"),
          "GET /wp-json/wc/v2/orders/{id}")

    # Item faults, in process: batch_item, unchanged, their use counts.
    cfg = parse_args([])
    cfg.home_url = "http://example.com"
    store = Store(cfg)
    api = Api(store, cfg)
    store.put_entries([{"id": n, "status": "processing"} for n in (1, 2, 3)])

    def call(handler, method, path, value, *args):
        req = Request(method, path, {"Content-Type": "application/json"},
                      json.dumps(value).encode())
        resp = handler(req, True, *args)
        return resp.status, json.loads(resp.body.decode())

    store.faults.extend(parse_fault(f) for f in [
        {"kind": "batch_item", "order_id": 2},
        {"kind": "unchanged", "order_id": 3, "times": 2},
    ])
    check("batch_item defaults", {k: store.faults[0][k] for k in ("status", "code", "message")},
          {"status": 500, "code": "woocommerce_rest_cannot_edit",
           "message": "Sorry, you are not allowed to edit this resource."})
    update = [{"id": n, "status": "completed"} for n in (1, 2, 3, 99)]
    status, out = call(api.batch, "POST", "/wp-json/wc/v3/orders/batch", {"update": update})
    check("batch status", status, 200)
    check("batch answers", [(i.get("id"), i.get("status"), (i.get("error") or {}).get("code"))
                            for i in out["update"]],
          [(1, "completed", None), (2, None, "woocommerce_rest_cannot_edit"),
           (3, "processing", None), (99, None, "woocommerce_rest_shop_order_invalid_id")])
    check("batch item error data", out["update"][1]["error"]["data"], {"status": 500})
    check("batch stored", [store.orders[n]["status"] for n in (1, 2, 3)],
          ["completed", "processing", "processing"])
    check("faults left", [(f["kind"], f["times"]) for f in store.faults], [("unchanged", 1)])
    status, out = call(api.update_order, "PUT", "/wp-json/wc/v3/orders/3",
                       {"status": "completed"}, 3)
    check("unchanged PUT", (status, out["status"], store.orders[3]["status"]),
          (200, "processing", "processing"))
    status, out = call(api.update_order, "PUT", "/wp-json/wc/v3/orders/3",
                       {"status": "completed"}, 3)
    check("PUT after unchanged", (status, out["status"], store.faults), (200, "completed", []))
    check("status_changes", store.stats["status_changes"], 2)
    for bad in ({"kind": "status", "order_id": 1}, {"kind": "unchanged", "page": 2},
                {"kind": "batch_item", "code": ""}, {"kind": "batch_item", "order_id": "5"}):
        try:
            parse_fault(bad)
            failures.append("fault %r accepted" % bad)
        except ValueError:
            pass

    # Products and variations with SKUs, their batches, in process.
    store.faults[:] = []
    ids = store.add_products({"seed": 250, "sku_prefix": "S", "variations": 3, "every": 50,
                              "stock_quantity": 5})
    check("seeded ids", (len(ids), len(store.products), len(store.variations)), (265, 250, 15))
    bad_products = ([{"sku": "S1"}], [{"sku": ""}], {"seed": -1},
                    [{"sku": "N", "stock_quantity": "x"}])
    for bad in bad_products:
        try:
            store.add_products(bad)
            failures.append("products %r accepted" % (bad,))
        except ValueError:
            pass
    check("nothing half-added", len(store.products), 250)

    def get(handler, path, *args):
        req = Request("GET", path, {}, b"")
        resp = handler(req, True, *args)
        return resp.status, json.loads(resp.body.decode()), dict(resp.headers)

    status, out, headers = get(api.list_products, "/wp-json/wc/v3/products?sku=S7,S50-2,S50")
    check("products by sku", (status, [p["sku"] for p in out], headers.get("X-WP-Total")),
          (200, ["S7", "S50"], "2"))
    check("variable product", (out[1]["type"], len(out[1]["variations"])), ("variable", 3))
    status, out, headers = get(api.list_variations, "/wp-json/wc/v3/products/%d/variations"
                               % ids["S50"], ids["S50"])
    check("variations", [v["sku"] for v in out], ["S50-1", "S50-2", "S50-3"])
    status, out, _ = get(api.list_products, "/wp-json/wc/v3/products?per_page=101")
    check("per_page 101", (status, out["code"]), (400, "rest_invalid_param"))
    store.faults.append(parse_fault({"kind": "batch_item", "order_id": ids["S3"]}))
    update = [{"id": ids["S%d" % n], "stock_quantity": n, "manage_stock": True}
              for n in (1, 2, 3)] + [{"id": 999999, "stock_quantity": 1}]
    status, out = call(api.product_batch, "POST", "/wp-json/wc/v3/products/batch",
                       {"update": update})
    check("product batch", (status, [(i["id"], i.get("stock_quantity"),
                                      (i.get("error") or {}).get("code")) for i in out["update"]]),
          (200, [(ids["S1"], 1, None), (ids["S2"], 2, None),
                 (ids["S3"], None, "woocommerce_rest_cannot_edit"),
                 (999999, None, "woocommerce_rest_product_invalid_id")]))
    check("invalid id error", out["update"][3]["error"],
          {"code": "woocommerce_rest_product_invalid_id", "message": "Invalid ID.",
           "data": {"status": 400}})
    check("stock stored", [store.products[ids["S%d" % n]]["stock_quantity"] for n in (1, 2, 3)],
          [1, 2, 5])
    status, out = call(api.product_batch, "POST", "/wp-json/wc/v3/products/batch",
                       {"update": [{"id": ids["S1"], "stock_quantity": 0}]})
    check("out of stock", store.products[ids["S1"]]["stock_status"], "outofstock")
    status, out = call(api.product_batch, "POST", "/wp-json/wc/v3/products/batch",
                       {"update": [{"id": ids["S%d" % n], "stock_quantity": 0}
                                   for n in range(1, 102)]})
    check("101 items", (status, out["code"]), (413, "woocommerce_rest_request_entity_too_large"))
    check("none applied", store.products[ids["S4"]]["stock_quantity"], 5)
    parent = ids["S100"]
    update = [{"id": ids["S100-1"], "stock_quantity": 7}, {"id": ids["S50-1"], "stock_quantity": 7},
              {"id": ids["S100-2"], "stock_quantity": 1.5}]
    status, out = call(api.variation_batch, "POST",
                       "/wp-json/wc/v3/products/%d/variations/batch" % parent,
                       {"update": update}, parent)
    check("variation batch", [(i.get("stock_quantity"), (i.get("error") or {}).get("code"))
                              for i in out["update"]],
          [(7, None), (None, "woocommerce_rest_product_variation_invalid_id"),
           (None, "rest_invalid_param")])
    store.add_products([{"sku": "U", "manage_stock": False}])
    unmanaged = store.stock_snapshot()["ids"]["U"]
    call(api.product_batch, "POST", "/wp-json/wc/v3/products/batch",
         {"update": [{"id": unmanaged, "stock_quantity": 3}]})
    check("unmanaged ignores quantity", store.products[unmanaged]["stock_quantity"], None)
    call(api.product_batch, "POST", "/wp-json/wc/v3/products/batch",
         {"update": [{"id": unmanaged, "stock_quantity": 3, "manage_stock": True}]})
    check("managed takes quantity", store.products[unmanaged]["stock_quantity"], 3)
    check("remove variation", (store.remove_product(ids["S100-3"]),
                               store.products[parent]["variations"]),
          (True, [ids["S100-1"], ids["S100-2"]]))
    check("remove product", (store.remove_product(parent), ids["S100-1"] in store.variations),
          (True, False))
    # Routing and authentication of the product routes (Basic over "HTTPS").
    cfg.https_mode = True
    basic = {"Authorization": "Basic " + base64.b64encode(b"ck_test:cs_test").decode(),
             "Content-Type": "application/json"}
    routed = []
    for method, path, value in [
        ("GET", "/wp-json/wc/v3/products?sku=S7", None),
        ("GET", "/wp-json/wc/v3/products/%d" % ids["S50-1"], None),
        ("GET", "/wp-json/wc/v3/products/%d/variations?sku=S50-3" % ids["S50"], None),
        ("POST", "/wp-json/wc/v3/products/batch",
         {"update": [{"id": ids["S7"], "stock_quantity": 70}]}),
        ("POST", "/wp-json/wc/v3/products/%d/variations/batch" % ids["S50"],
         {"update": [{"id": ids["S50-3"], "stock_quantity": 53}]}),
    ]:
        body = json.dumps(value).encode() if value is not None else b""
        resp = api.handle(Request(method, path, basic, body))
        answer = json.loads(resp.body.decode())
        routed.append((resp.status, answer["update"][0]["stock_quantity"]
                       if isinstance(answer, dict) and "update" in answer
                       else (answer[0] if isinstance(answer, list) else answer)["sku"]))
    check("product routes", routed, [(200, "S7"), (200, "S50-1"), (200, "S50-3"), (200, 70),
                                     (200, 53)])
    resp = api.handle(Request("GET", "/wp-json/wc/v3/products", {}, b""))
    check("products need credentials", resp.status, 401)
    check("route key products batch",
          route_key("POST", "/wp-json/wc/v3/products/12/variations/batch"),
          "POST /products/{id}/variations/batch")

    if failures:
        sys.stdout.write("FAILED\n" + "\n".join(failures) + "\n")
        return 1
    sys.stdout.write("OK\n")
    return 0


def check_fixtures(paths):
    """Print the money problems of every order in the given files or
    directories. Returns 0 when there are none."""
    bad = 0
    for path in paths:
        for entry in load_orders(path):
            problems = money_problems(entry)
            name = entry.get("id") if isinstance(entry, dict) else None
            if problems:
                bad += 1
                sys.stdout.write("%s: order %r:\n  %s\n" % (path, name, "\n  ".join(problems)))
            else:
                sys.stdout.write("%s: order %r: OK\n" % (path, name))
    return 1 if bad else 0


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description="WooCommerce REST API v3 stand-in for tests.")
    parser.add_argument("--port-file", help="write the port here (temp + rename) when ready")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: any free one)")
    parser.add_argument("--orders", action="append", default=[],
                        help="orders file or directory (repeatable)")
    parser.add_argument("--home-url", help="the store's home URL (default http://127.0.0.1:PORT)")
    parser.add_argument("--key", default="ck_test")
    parser.add_argument("--secret", default="cs_test")
    parser.add_argument("--permissions", default="read_write",
                        choices=["read", "write", "read_write"])
    parser.add_argument("--https-mode", action="store_true",
                        help="requests count as HTTPS (Basic auth works)")
    parser.add_argument("--utc-offset-hours", type=float, default=-8.0,
                        help="the site's UTC offset")
    parser.add_argument("--extra-status", action="append", default=[], help="a custom order status")
    parser.add_argument("--past-end-totals", choices=["real", "zero"], default="real",
                        help="X-WP-Total on a page past the end: the real totals (posts storage) "
                             "or 0/0 (as observed on a live store, woocommerce-api.md §12)")
    parser.add_argument("--unstable-ties", action="store_true",
                        help="orderby=date/modified ties come back in another order on even pages")
    parser.add_argument("--latency-ms", type=int, default=0, metavar="N",
                        help="every API request (/wp-json/) waits N ms before it is handled")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="at most N API requests handled at once (default 0: no limit)")
    parser.add_argument("--log", help="append every request as a JSON line to this file")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--self-test", action="store_true")
    parser.add_argument("--check-fixtures", nargs="+", metavar="PATH")
    return parser.parse_args(argv)


def write_port_file(path, port):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".port.", dir=directory)
    with os.fdopen(fd, "w") as handle:
        handle.write("%d\n" % port)
    os.rename(tmp, path)


def main(argv):
    cfg = parse_args(argv)
    if cfg.latency_ms < 0 or cfg.workers < 0:
        sys.stderr.write("woo_standin: --latency-ms and --workers must not be negative\n")
        return 2
    if cfg.self_test:
        return self_test()
    if cfg.check_fixtures:
        return check_fixtures(cfg.check_fixtures)
    server = Server(("127.0.0.1", cfg.port), Handler)
    port = server.server_address[1]
    if not cfg.home_url:
        cfg.home_url = "http://127.0.0.1:%d" % port
    cfg.home_url = cfg.home_url.rstrip("/")
    server.cfg = cfg
    server.store = Store(cfg)
    server.api = Api(server.store, cfg)
    for path in cfg.orders:
        server.store.put_entries(load_orders(path))

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    if cfg.port_file:
        write_port_file(cfg.port_file, port)
    if cfg.verbose:
        sys.stderr.write(
            "woo_standin: listening on 127.0.0.1:%d, %d orders\n" % (port, len(server.store.orders))
        )
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
