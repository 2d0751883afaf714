#!/usr/bin/python3
"""httpd.py — a generic scripted HTTP/1.1 server for the cpbridge tests.

Binds 127.0.0.1 on a free port, writes the port to --port-file (temp file
and rename: the file appears complete or not at all), speaks HTTPS when
given --tls-cert and --tls-key (PEM files), records every request
(method, path, query, headers, body as base64 and text) in memory and, with
--log FILE, as JSON lines, and stops cleanly on SIGTERM. Standard library
only; run it with /usr/bin/python3.

Control endpoints (not recorded):
  POST   /_script    {"path": "/x", "responses": [{"status": 503,
                      "headers": {"Retry-After": "1"}, "body": "...",
                      "body_b64": "...", "delay_ms": 0, "close": false}, ...]}
                     responses are used in order; the last one repeats
  DELETE /_script    forget every script
  GET    /_requests  the recorded requests as a JSON array (?path=/x filters)
  DELETE /_requests  clear the records
  GET    /_health    {"ok": true}

Built-in endpoints (recorded; a script for the same path wins):
  /echo              the request record as JSON
  /status/NNN        answers status NNN (3xx with a Location header)
  /slow?ms=N         waits N ms, then 200
  /big?bytes=N       N bytes of "x" (&chunked=1: chunked, no Content-Length)
  /html              an HTML error page with status 503
  /truncated         declares more Content-Length than it sends, then closes

Other helpers (a WooCommerce stand-in, a webhook receiver) may reuse this
structure: subclass Handler and extend route().
"""

import argparse
import base64
import json
import os
import signal
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 256 * 1024 * 1024  # largest request body accepted
MAX_SLOW_MS = 120000
MAX_BIG_BYTES = 512 * 1024 * 1024


class State:
    """Records and scripts shared by the handler threads."""

    def __init__(self, log_path):
        self.lock = threading.Lock()
        self.records = []
        self.scripts = {}
        self.seq = 0
        self.log_path = log_path

    def record(self, rec):
        with self.lock:
            self.seq += 1
            rec["seq"] = self.seq
            self.records.append(rec)
            if self.log_path:
                with open(self.log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(rec, sort_keys=True) + "\n")

    def requests(self, path=None):
        with self.lock:
            return [r for r in self.records if path is None or r["path"] == path]

    def clear(self):
        with self.lock:
            n = len(self.records)
            self.records = []
            return n

    def set_script(self, path, responses):
        with self.lock:
            self.scripts[path] = {"responses": responses, "next": 0}

    def clear_scripts(self):
        with self.lock:
            self.scripts = {}

    def next_scripted(self, path):
        with self.lock:
            s = self.scripts.get(path)
            if s is None:
                return None
            i = min(s["next"], len(s["responses"]) - 1)
            s["next"] += 1
            return s["responses"][i]


class BadRequest(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Small writes would otherwise wait for the client's delayed ACK (about
    # 40 ms a request with Nagle's algorithm on).
    disable_nagle_algorithm = True
    server_version = "cpbtest-httpd/1"

    # -- plumbing ----------------------------------------------------------

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("httpd: " + (fmt % args) + "\n")

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise BadRequest("truncated chunked body")
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise BadRequest("bad chunk size")
                if size == 0:
                    # trailers until the empty line
                    while True:
                        t = self.rfile.readline(8192)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                total += size
                if total > MAX_BODY:
                    raise BadRequest("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(16)
            return b"".join(chunks)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
        except ValueError:
            raise BadRequest("bad Content-Length")
        if n < 0 or n > MAX_BODY:
            raise BadRequest("bad Content-Length")
        return self.rfile.read(n)

    def send(self, status, body=b"", headers=None, content_type="text/plain"):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        names = {k.lower() for k in (headers or {})}
        if "content-type" not in names and content_type:
            self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            if isinstance(v, list):
                for item in v:
                    self.send_header(k, str(item))
            else:
                self.send_header(k, str(v))
        no_body = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        if not no_body or self.command == "HEAD":
            if "content-length" not in names:
                self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not no_body:
            self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status, obj):
        self.send(status, json.dumps(obj), content_type="application/json")

    # -- dispatch ----------------------------------------------------------

    def handle_any(self):
        url = urlsplit(self.path)
        path = url.path
        args = parse_qs(url.query, keep_blank_values=True)
        try:
            body = self.read_body()
        except BadRequest as e:
            self.close_connection = True
            self.send_json(400, {"error": str(e)})
            return
        try:
            if path.startswith("/_"):
                self.control(path, args, body)
                return
            rec = self.make_record(url, args, body)
            self.server.state.record(rec)
            self.route(path, args, rec)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def make_record(self, url, args, body):
        headers = {}
        header_list = []
        for k, v in self.headers.items():
            headers[k.lower()] = v
            header_list.append([k, v])
        return {
            "time": time.time(),
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "args": {k: v[-1] for k, v in args.items()},
            "headers": headers,
            "header_list": header_list,
            "body_b64": base64.b64encode(body).decode("ascii"),
            "body": body.decode("utf-8", errors="replace"),
            "body_len": len(body),
            "client_port": self.client_address[1],
        }

    def control(self, path, args, body):
        st = self.server.state
        if path == "/_health":
            self.send_json(200, {"ok": True})
        elif path == "/_requests" and self.command == "GET":
            want = args.get("path", [None])[-1]
            self.send_json(200, st.requests(want))
        elif path == "/_requests" and self.command == "DELETE":
            self.send_json(200, {"cleared": st.clear()})
        elif path == "/_script" and self.command == "POST":
            try:
                spec = json.loads(body.decode("utf-8"))
                target = spec["path"]
                responses = spec["responses"]
                if not isinstance(target, str) or not isinstance(responses, list) or not responses:
                    raise ValueError("path must be a string, responses a non-empty list")
                for r in responses:
                    if not isinstance(r, dict):
                        raise ValueError("each response must be an object")
            except (ValueError, KeyError, UnicodeDecodeError) as e:
                self.send_json(400, {"error": "bad script: %s" % e})
                return
            st.set_script(target, responses)
            self.send_json(200, {"ok": True})
        elif path == "/_script" and self.command == "DELETE":
            st.clear_scripts()
            self.send_json(200, {"ok": True})
        else:
            self.send_json(404, {"error": "no such control endpoint"})

    def route(self, path, args, rec):
        scripted = self.server.state.next_scripted(path)
        if scripted is not None:
            self.scripted(scripted)
            return
        if path == "/echo":
            self.send_json(200, rec)
        elif path.startswith("/status/"):
            self.status(path[len("/status/"):])
        elif path == "/slow":
            ms = self.int_arg(args, "ms", 1000, MAX_SLOW_MS)
            time.sleep(ms / 1000.0)
            self.send(200, "slow\n")
        elif path == "/big":
            self.big(self.int_arg(args, "bytes", 1024, MAX_BIG_BYTES),
                     args.get("chunked", ["0"])[-1] == "1")
        elif path == "/html":
            page = ("<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>"
                    "<body><h1>Service Unavailable</h1><p>The server is temporarily busy.</p>"
                    "</body></html>\n")
            self.send(503, page, content_type="text/html; charset=UTF-8")
        elif path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only part ")
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_json(404, {"error": "no such path", "path": path})

    @staticmethod
    def int_arg(args, name, default, limit):
        try:
            v = int(args.get(name, [str(default)])[-1])
        except ValueError:
            v = default
        return max(0, min(v, limit))

    def status(self, text):
        try:
            code = int(text)
        except ValueError:
            code = 0
        if not 100 <= code <= 999:
            self.send_json(400, {"error": "bad status"})
            return
        headers = {}
        if 300 <= code <= 399:
            headers["Location"] = "/echo?redirected=1"
        self.send(code, "status %d\n" % code, headers)

    def big(self, n, chunked):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(n))
        self.end_headers()
        if self.command == "HEAD":
            return
        block = b"x" * 65536
        left = n
        while left > 0:
            part = block[:min(left, len(block))]
            if chunked:
                self.wfile.write(b"%x\r\n" % len(part) + part + b"\r\n")
            else:
                self.wfile.write(part)
            left -= len(part)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def scripted(self, r):
        delay = r.get("delay_ms", 0)
        if isinstance(delay, (int, float)) and delay > 0:
            time.sleep(min(delay, MAX_SLOW_MS) / 1000.0)
        if "body_b64" in r:
            body = base64.b64decode(r["body_b64"])
        else:
            body = r.get("body", "")
        status = r.get("status", 200)
        if r.get("close"):
            self.close_connection = True
        self.send(int(status), body, r.get("headers") or {},
                  content_type=r.get("content_type", "text/plain"))

    do_GET = handle_any
    do_POST = handle_any
    do_PUT = handle_any
    do_PATCH = handle_any
    do_DELETE = handle_any
    do_HEAD = handle_any
    do_OPTIONS = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="ascii") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def main(argv=None, handler=Handler):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port-file", required=True, help="write the bound port here")
    ap.add_argument("--log", help="append every request as a JSON line to this file")
    ap.add_argument("--verbose", action="store_true", help="log each request on stderr")
    ap.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (chain)")
    ap.add_argument("--tls-key", help="the PEM private key of --tls-cert")
    opts = ap.parse_args(argv)
    if bool(opts.tls_cert) != bool(opts.tls_key):
        ap.error("--tls-cert and --tls-key go together")

    server = Server(("127.0.0.1", 0), handler)
    if opts.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(opts.tls_cert, opts.tls_key)
        # A failed handshake raises in accept(), which socketserver ignores.
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.state = State(opts.log)
    server.verbose = opts.verbose

    def on_term(signum, frame):
        # shutdown() waits for serve_forever to return: call it elsewhere.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    write_port_file(opts.port_file, server.server_address[1])
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
