#!/usr/bin/python3
"""smtpd.py - an SMTP receiver for cpbridge's notifier tests.

Built on Debian's python3-aiosmtpd (1.4); run it with /usr/bin/python3, not a
pyenv interpreter that cannot see Debian's packages.

    /usr/bin/python3 smtpd.py --port-file F [--dir D] [options]

Listens on 127.0.0.1, port 0 (the kernel picks it), and writes the port to F
(temporary file and rename) once it accepts connections. Each message is
saved in D (default: F's directory) as NNNN.eml, the raw bytes as received
after dot-unstuffing, and NNNN.json, the envelope:
    {"mail_from", "rcpt_tos", "auth_user" (null when no login), "tls"
     (true/false), "helo" (the EHLO name)}
both written to a temporary file and renamed, so a test can poll for them;
the .json is written after the .eml.

Options:
  --tls-cert PEM --tls-key PEM   offer STARTTLS with this certificate
  --require-starttls             530 for mail commands before STARTTLS
  --smtps                        implicit TLS on connect (needs the cert)
  --auth-user U --auth-password P
                                 AUTH PLAIN/LOGIN with this one login, and
                                 authentication required for mail; offered
                                 only after STARTTLS (or on --smtps, or on a
                                 server without TLS)
  --no-auth-advertise            never list AUTH in the EHLO reply
  --reject ADDR                  550 for this recipient (repeatable)
  --defer ADDR                   451 for this recipient (repeatable)
  --verbose                      aiosmtpd's log on stderr

  --parse FILE                   no server: parse a saved .eml with Python's
                                 email package (policy=default) and print
                                 JSON: headers, decoded subject, body text
                                 and every defect the parser found

SIGTERM (or SIGINT) stops it cleanly.
"""

import argparse
import asyncio
import email
import email.policy
import json
import logging
import os
import signal
import ssl
import sys
import tempfile
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def write_atomic(path, data):
    """Write bytes to path through a temporary file in the same directory."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Recorder:
    """aiosmtpd handler: filters EHLO, refuses chosen recipients, saves mail."""

    def __init__(self, directory, reject, defer, advertise_auth):
        self.directory = directory
        self.reject = {a.lower() for a in reject}
        self.defer = {a.lower() for a in defer}
        self.advertise_auth = advertise_auth
        self.count = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if not self.advertise_auth:
            responses = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if address.lower() in self.defer:
            return "451 4.2.0 <%s>: Recipient address deferred: try again later" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.directory, "%04d" % self.count)
        transport = server.transport
        tls = session.ssl is not None or (
            transport is not None and transport.get_extra_info("ssl_object") is not None)
        user = None
        if session.authenticated:
            user = session.auth_data if isinstance(session.auth_data, str) else None
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "auth_user": user,
            "tls": bool(tls),
            "helo": session.host_name,
        }
        content = envelope.original_content or b""
        write_atomic(base + ".eml", content)
        write_atomic(base + ".json", json.dumps(meta, indent=1).encode("utf-8"))
        return "250 2.0.0 Message accepted as %04d" % self.count


def make_authenticator(user, password):
    want_user = user.encode("utf-8")
    want_password = password.encode("utf-8")

    def authenticator(server, session, envelope, mechanism, auth_data):
        if (isinstance(auth_data, LoginPassword) and auth_data.login == want_user
                and auth_data.password == want_password):
            return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    return authenticator


def parse_eml(path):
    """What Python's email package makes of a saved message (for tests)."""
    with open(path, "rb") as f:
        raw = f.read()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    defects = [repr(d) for d in msg.defects]
    headers = {}
    for name in msg.keys():
        values = msg.get_all(name) or []
        headers.setdefault(name.lower(), [])
        for v in values:
            headers[name.lower()].append(str(v))
            defects.extend("%s: %r" % (name, d) for d in getattr(v, "defects", ()))
    out = {"headers": headers, "defects": defects}
    out["subject"] = str(msg["subject"]) if msg["subject"] is not None else None
    to = msg["to"]
    out["to"] = [a.addr_spec for a in to.addresses] if to is not None else []
    frm = msg["from"]
    out["from"] = [a.addr_spec for a in frm.addresses] if frm is not None else []
    date = msg["date"]
    out["date_epoch"] = date.datetime.timestamp() if date is not None and date.datetime else None
    out["content_type"] = msg.get_content_type()
    out["charset"] = msg.get_content_charset()
    try:
        out["body"] = msg.get_content()
    except Exception as e:  # a test wants to see why, not a traceback
        out["body"] = None
        defects.append("body: %r" % e)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port-file")
    ap.add_argument("--dir")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--require-starttls", action="store_true")
    ap.add_argument("--smtps", action="store_true")
    ap.add_argument("--auth-user")
    ap.add_argument("--auth-password")
    ap.add_argument("--no-auth-advertise", action="store_true")
    ap.add_argument("--reject", action="append", default=[])
    ap.add_argument("--defer", action="append", default=[])
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--parse")
    args = ap.parse_args()

    if args.parse:
        json.dump(parse_eml(args.parse), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    if not args.port_file:
        ap.error("--port-file is required")
    if (args.tls_cert is None) != (args.tls_key is None):
        ap.error("--tls-cert and --tls-key go together")
    if (args.smtps or args.require_starttls) and args.tls_cert is None:
        ap.error("--smtps and --require-starttls need --tls-cert and --tls-key")
    if (args.auth_user is None) != (args.auth_password is None):
        ap.error("--auth-user and --auth-password go together")
    directory = args.dir or os.path.dirname(os.path.abspath(args.port_file))
    os.makedirs(directory, exist_ok=True)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR,
                        stream=sys.stderr)
    if not args.verbose:
        # A failed TLS handshake is a test case here, not an incident.
        logging.getLogger("mail.log").setLevel(logging.CRITICAL)
        warnings.simplefilter("ignore")

    tls_context = None
    if args.tls_cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.tls_cert, args.tls_key)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handler = Recorder(directory, args.reject, args.defer, not args.no_auth_advertise)
    authenticator = None
    if args.auth_user is not None:
        authenticator = make_authenticator(args.auth_user, args.auth_password)
    # AUTH is offered only under TLS when the server has TLS; aiosmtpd counts
    # only STARTTLS as TLS, so implicit TLS needs auth_require_tls off.
    auth_require_tls = tls_context is not None and not args.smtps

    def factory():
        return SMTP(handler,
                    hostname="smtpd.test",
                    tls_context=None if args.smtps else tls_context,
                    require_starttls=args.require_starttls and not args.smtps,
                    authenticator=authenticator,
                    auth_required=authenticator is not None,
                    auth_require_tls=auth_require_tls,
                    decode_data=False,
                    loop=loop)

    server = loop.run_until_complete(
        loop.create_server(factory, host="127.0.0.1", port=0,
                           ssl=tls_context if args.smtps else None))
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    write_atomic(args.port_file, ("%d\n" % port).encode("ascii"))
    try:
        loop.run_until_complete(stop.wait())
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
