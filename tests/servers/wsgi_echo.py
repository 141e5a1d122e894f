"""A WSGI app on Python's reference server (wsgiref), as the app behind the sidecar in
tests/tests/real_servers.rs. wsgiref, like CGI, PHP and Rack, exposes a header as HTTP_<NAME>
with '-' read as '_', so `Cf_Access_Authenticated_User_Email` and the real header are the same
variable, and it decodes %2F in PATH_INFO. The app answers what it was given as JSON; a request
whose PATH_INFO is under /admin gets the protected body.

Usage: python3 wsgi_echo.py PORT
"""
import json
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    body = {
        "path_info": path,
        "email": environ.get("HTTP_CF_ACCESS_AUTHENTICATED_USER_EMAIL", ""),
        "assertion": environ.get("HTTP_CF_ACCESS_JWT_ASSERTION", ""),
        "host": environ.get("HTTP_HOST", ""),
        "forwarded_host": environ.get("HTTP_X_FORWARDED_HOST", ""),
        "secret": "TOP SECRET" if path == "/admin" or path.startswith("/admin/") else "",
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = make_server("127.0.0.1", int(sys.argv[1]), app, handler_class=Quiet)
    print("ready", flush=True)
    server.serve_forever()
