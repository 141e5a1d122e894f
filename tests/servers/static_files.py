"""Python's http.server serving a directory, as the app behind the sidecar in
tests/tests/real_servers.rs. It decodes %XX (including %2F) and drops empty segments, so
`//admin/secret.txt` and `/admin%2Fsecret.txt` are /admin/secret.txt to it.

Usage: python3 static_files.py PORT DIRECTORY
"""
import functools
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


if __name__ == "__main__":
    handler = functools.partial(Quiet, directory=sys.argv[2])
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), handler)
    print("ready", flush=True)
    server.serve_forever()
